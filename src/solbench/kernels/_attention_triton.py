"""The Triton kernel behind :mod:`solbench.kernels.attention` (imported at the first launch, so
``import solbench`` decorates no Triton kernel)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from solbench.kernels._decode_split_triton import _partial_row, _split_range, _store_partial, combine, split_workspace
from solbench.kernels.attention import LOG2E, decode_plan, direct_grid, head_dim_chunks, launch_config, stage_keys
from solbench.kernels.common import gpu_codegen, next_pow2, sm_count


@triton.jit
def _token_rows(page, j, stride_page, stride_tok, PAGE: tl.constexpr):
    """Offsets of keys j: slot j % PAGE of page ``page``, or row j of a dense tensor."""
    if PAGE > 0:
        return page.to(tl.int64) * stride_page + (j % PAGE).to(tl.int64) * stride_tok
    return j.to(tl.int64) * stride_tok


@triton.jit
def _times(a, b, c, VEC: tl.constexpr):
    """Three strides that arrived divided by VEC (:func:`_vector_strides`), multiplied back."""
    return a * VEC, b * VEC, c * VEC


@triton.jit
def _page_of(page_row, j, k_len, PAGE: tl.constexpr, MASKED: tl.constexpr):
    """Block-table entries of keys j (unused when dense)."""
    if PAGE == 0:
        return tl.zeros_like(j)
    page = j // PAGE
    if MASKED:
        # Pages past the sequence read as page 0 (a real page). The mask is per page, so the
        # compiler still sees one page for each PAGE-aligned run of keys (token-major value
        # loads stay 16-byte vectors).
        return tl.load(page_row + page, mask=page * PAGE < k_len, other=0)
    return tl.load(page_row + page)


@triton.jit
def _load_kv_tile(base, row, n_mask, offs_d, d_mask, stride_x, X: tl.constexpr, MASKED: tl.constexpr):
    """A [BLOCK_N, len(offs_d)] tile of keys or values at token offsets ``row``. Element d sits at
    row + d * stride_x, or with an x-split head_size (X > 0) at row + (d // X) * stride_x + d % X."""
    if X == 0:  # head_size contiguous (stride_x is its stride)
        col = offs_d * stride_x
    else:
        col = (offs_d // X) * stride_x + offs_d % X
    ptrs = base + row[:, None] + col[None, :]
    if MASKED:
        return tl.load(ptrs, mask=n_mask[:, None] & d_mask[None, :], other=0.0)
    return tl.load(ptrs, mask=d_mask[None, :], other=0.0)


@triton.jit
def _load_v_token_major(base, row, n_mask, offs_d, d_mask, stride_d, MASKED: tl.constexpr):
    """A [BLOCK_N, len(offs_d)] value tile from a cache whose tokens are contiguous within a page
    (vLLM's x-split value cache ``[num_blocks, H_kv, D, block_size]``). A key-major tile would read
    2-byte elements 2 * block_size bytes apart, one load instruction each and none of them
    asynchronous; loaded [D, BLOCK_N], each thread reads runs of one page's tokens as 16-byte
    vectors, and the transpose goes to the dot's shared-memory operand. The compiler sees the runs
    because tiles start page-aligned (:func:`_split_range` floors its bound) and the block-table
    mask is per page (:func:`_page_of`), so a masked tile loads whole runs and zeroes the keys
    past the sequence after the load."""
    vt = tl.load(base + offs_d[:, None] * stride_d + row[None, :], mask=d_mask[:, None], other=0.0)
    if MASKED:
        vt = tl.where(n_mask[None, :], vt, 0.0)
    return tl.trans(vt)


@triton.jit
def _attend_tiles(acc, acc_b, l_i, m_i, q, q_b, k_base, v_base, page_row, n_lo, n_hi, k_len, t_row, diag,
                  offs_n, offs_d, d_mask, offs_db, db_mask, qk_scale,
                  stride_kp, stride_kt, stride_kx, stride_vp, stride_vt, stride_vd,
                  PAGE: tl.constexpr, KX: tl.constexpr, CAUSAL: tl.constexpr, MASKED: tl.constexpr,
                  BLOCK_N: tl.constexpr, D_B: tl.constexpr, DOT_FP32: tl.constexpr, V_RUN: tl.constexpr):
    """Online softmax over key tiles [n_lo, n_hi). Unmasked tiles (every key visible to every
    row) skip the masks and the empty-row guard. A head_size that is not a power of two runs
    as two column chunks (``acc`` and, when D_B > 0, ``acc_b``): 72 = 64 + 16 (8 masked)
    multiplies 80 columns instead of 128. V_RUN > 0: the value cache is token-major
    (:func:`_load_v_token_major`)."""
    for n in range(n_lo, n_hi, BLOCK_N):
        j = n + offs_n
        n_mask = j < k_len
        cur = _page_of(page_row, j, k_len, PAGE, MASKED)
        k_row = _token_rows(cur, j, stride_kp, stride_kt, PAGE)
        v_row = _token_rows(cur, j, stride_vp, stride_vt, PAGE)
        k = _load_kv_tile(k_base, k_row, n_mask, offs_d, d_mask, stride_kx, KX, MASKED)
        if DOT_FP32:
            k = k.to(tl.float32)
        qk = tl.dot(q, tl.trans(k))
        if D_B > 0:
            k_b = _load_kv_tile(k_base, k_row, n_mask, offs_db, db_mask, stride_kx, KX, MASKED)
            if DOT_FP32:
                k_b = k_b.to(tl.float32)
            qk += tl.dot(q_b, tl.trans(k_b))
        if MASKED:
            visible = n_mask[None, :]
            if CAUSAL:
                visible = visible & (j[None, :] <= (t_row + diag)[:, None])
            s = tl.where(visible, qk * qk_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            # A row that has seen no key yet keeps m = -inf; subtract 0 instead so it stays 0.
            m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        else:
            # The scale folds into the exponent's argument: one FMA per score.
            m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            m_ref = m_new
            s = qk * qk_scale
        p = tl.math.exp2(s - m_ref[:, None])
        alpha = tl.math.exp2(m_i - m_ref)
        l_i = l_i * alpha + tl.sum(p, 1)
        if V_RUN > 0:
            v = _load_v_token_major(v_base, v_row, n_mask, offs_d, d_mask, stride_vd, MASKED)
        else:
            v = _load_kv_tile(v_base, v_row, n_mask, offs_d, d_mask, stride_vd, 0, MASKED)
        if DOT_FP32:
            v = v.to(tl.float32)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        if D_B > 0:
            if V_RUN > 0:
                v_b = _load_v_token_major(v_base, v_row, n_mask, offs_db, db_mask, stride_vd, MASKED)
            else:
                v_b = _load_kv_tile(v_base, v_row, n_mask, offs_db, db_mask, stride_vd, 0, MASKED)
            if DOT_FP32:
                v_b = v_b.to(tl.float32)
            acc_b = acc_b * alpha[:, None] + tl.dot(p.to(v_b.dtype), v_b)
        m_i = m_new
    return acc, acc_b, l_i, m_i

@triton.jit
def _attention_fwd(Q, K, V, O, cu_q, cu_k, seqused_k, block_table, qk_scale, num_seqs,
                   stride_qt, stride_qh, stride_ot, stride_oh,
                   stride_kp, stride_kt, stride_kh, stride_kx,
                   stride_vp, stride_vt, stride_vh, stride_vd, stride_bt,
                   G: tl.constexpr, D: tl.constexpr, D_A: tl.constexpr, D_B: tl.constexpr, KX: tl.constexpr,
                   PAGE: tl.constexpr, CAUSAL: tl.constexpr, DECODE: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, VEC: tl.constexpr, DOT_FP32: tl.constexpr,
                   VEC_K: tl.constexpr, VEC_V: tl.constexpr,
                   PART_O, PART_ML, SPLIT: tl.constexpr,
                   tiles_per_seq, stage_rows, STAGED: tl.constexpr, V_RUN: tl.constexpr):
    # Strides arrive divided by VEC (VEC_K, VEC_V for the caches): multiplied back here, the
    # compiler knows every row start is VEC-aligned (72-wide heads: 144 B) and issues 16-byte
    # vector loads. Per tensor: the x-split value cache's token stride 1 must not cost the keys theirs.
    stride_qt, stride_qh, stride_ot = _times(stride_qt, stride_qh, stride_ot, VEC)
    stride_oh *= VEC
    stride_kp, stride_kt, stride_kh = _times(stride_kp, stride_kt, stride_kh, VEC_K)
    stride_vp, stride_vt, stride_vh = _times(stride_vp, stride_vt, stride_vh, VEC_V)
    kvh = tl.program_id(1)
    pid = tl.num_programs(0) - 1 - tl.program_id(0)  # last blocks (longest causal rows) first
    if DECODE:
        # One query per sequence: program s owns sequence s, rows = its G heads (and with SPLIT,
        # program (s, kvh, i) the i-th range of its keys: flash-decoding).
        s = pid
        q_start = pid
        q_len = 1
        row0 = 0
    elif tiles_per_seq > 0:
        # Direct grid: program slots [s * tiles_per_seq, (s + 1) * tiles_per_seq) belong to
        # sequence s (tiles_per_seq from the host's max_seqlen_q); slots past a shorter
        # sequence's rows return at once.
        s = pid // tiles_per_seq
        q_start = tl.load(cu_q + s)
        q_len = tl.load(cu_q + s + 1) - q_start
        row0 = (pid % tiles_per_seq) * BLOCK_M
    else:
        # Packed grid: sequence s owns program slots from (cu_q[s] * G) // BLOCK_M + s on: a
        # bound on the blocks before it that needs no prefix sum over the batch.
        lo = 0
        hi = num_seqs
        while lo < hi:
            mid = (lo + hi) // 2
            first = tl.load(cu_q + mid) * G // BLOCK_M + mid
            if first <= pid:
                lo = mid + 1
            else:
                hi = mid
        s = lo - 1
        q_start = tl.load(cu_q + s)
        q_len = tl.load(cu_q + s + 1) - q_start
        row0 = (pid - (q_start * G // BLOCK_M + s)) * BLOCK_M
    # The sequence's key count is loaded before the early exit below, beside cu_seqlens_q: after
    # it, it would be a second dependent round trip before the first block-table load. The exit
    # tests it (a count is never negative) so that the compiler cannot sink the load past it.
    k_base = K + kvh.to(tl.int64) * stride_kh
    v_base = V + kvh.to(tl.int64) * stride_vh
    if PAGE > 0:
        k_len = tl.load(seqused_k + s)
    elif STAGED:
        # Keys staged dense by _stage_kv: sequence s at rows [s * stage_rows, + seqused_k[s]),
        # stage_rows being the host's bound on keys per sequence (max_seqlen_k).
        k_len = tl.minimum(tl.load(seqused_k + s), stage_rows)
        k_base += (s.to(tl.int64) * stage_rows) * stride_kt
        v_base += (s.to(tl.int64) * stage_rows) * stride_vt
    else:
        k_start = tl.load(cu_k + s)
        k_len = tl.load(cu_k + s + 1) - k_start
        k_base += k_start.to(tl.int64) * stride_kt
        v_base += k_start.to(tl.int64) * stride_vt
    n_rows = q_len * G
    if (row0 >= n_rows) | (k_len < 0):
        return
    diag = k_len - q_len

    offs_m = row0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D_A)
    d_mask = offs_d < D
    offs_db = D_A + tl.arange(0, 16 if D_B == 0 else D_B)
    db_mask = offs_db < D
    m_mask = offs_m < n_rows
    t_row = offs_m // G
    head = kvh * G + offs_m % G
    tok = (q_start + t_row).to(tl.int64)
    q_rows = Q + tok[:, None] * stride_qt + head[:, None] * stride_qh
    q = tl.load(q_rows + offs_d[None, :], mask=m_mask[:, None] & d_mask[None, :], other=0.0)
    q_b = tl.load(q_rows + offs_db[None, :], mask=m_mask[:, None] & db_mask[None, :], other=0.0)
    if DOT_FP32:
        q = q.to(tl.float32)
        q_b = q_b.to(tl.float32)

    page_row = block_table + s.to(tl.int64) * stride_bt

    t_first = row0 // G
    t_last = (tl.minimum(row0 + BLOCK_M, n_rows) - 1) // G
    if CAUSAL:
        n_end = tl.minimum(k_len, t_last + diag + 1)
        n_full = tl.maximum(tl.minimum(k_len, t_first + diag + 1), 0) // BLOCK_N * BLOCK_N
    else:
        n_end = k_len
        n_full = k_len // BLOCK_N * BLOCK_N

    n_lo = 0
    if SPLIT:
        n_lo, n_full, n_end = _split_range(n_full, n_end, BLOCK_N)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_A], tl.float32)
    acc_b = tl.zeros([BLOCK_M, 16 if D_B == 0 else D_B], tl.float32)
    acc, acc_b, l_i, m_i = _attend_tiles(acc, acc_b, l_i, m_i, q, q_b, k_base, v_base, page_row, n_lo, n_full,
                                         k_len, t_row, diag, offs_n, offs_d, d_mask, offs_db, db_mask, qk_scale,
                                         stride_kp, stride_kt, stride_kx, stride_vp, stride_vt, stride_vd,
                                         PAGE, KX, CAUSAL, False, BLOCK_N, D_B, DOT_FP32, V_RUN)
    acc, acc_b, l_i, m_i = _attend_tiles(acc, acc_b, l_i, m_i, q, q_b, k_base, v_base, page_row, n_full,
                                         n_end, k_len, t_row, diag, offs_n, offs_d, d_mask, offs_db, db_mask,
                                         qk_scale, stride_kp, stride_kt, stride_kx, stride_vp, stride_vt,
                                         stride_vd, PAGE, KX, CAUSAL, True, BLOCK_N, D_B, DOT_FP32, V_RUN)
    if SPLIT:
        row = _partial_row(s, head, G * tl.num_programs(1))
        _store_partial(PART_O, PART_ML, row, acc, m_i, l_i, m_mask, offs_d, d_mask, D)
        if D_B > 0:
            tl.store(PART_O + row[:, None] * D + offs_db[None, :], acc_b, mask=m_mask[:, None] & db_mask[None, :])
        return
    l_i = tl.where(l_i > 0.0, l_i, 1.0)
    o_rows = O + tok[:, None] * stride_ot + head[:, None] * stride_oh
    tl.store(o_rows + offs_d[None, :], (acc / l_i[:, None]).to(O.dtype.element_ty),
             mask=m_mask[:, None] & d_mask[None, :])
    if D_B > 0:
        tl.store(o_rows + offs_db[None, :], (acc_b / l_i[:, None]).to(O.dtype.element_ty),
                 mask=m_mask[:, None] & db_mask[None, :])


@triton.jit
def _stage_kv(K, V, KS, VS, seqused_k, block_table, stride_bt, stride_kp, stride_kt, stride_kh,
              stride_vp, stride_vt, stride_vh, stage_rows,
              PAGE: tl.constexpr, HKV: tl.constexpr, D: tl.constexpr, D_P: tl.constexpr, ROWS: tl.constexpr,
              VEC: tl.constexpr):
    """Copies page ``program_id(1)`` of sequence ``program_id(0)``, as far as its first
    ``seqused_k`` keys (at most ``stage_rows``) reach, from the nhd caches into the dense
    ``KS``/``VS`` [num_seqs * stage_rows, HKV, D], sequence s at row s * stage_rows. A page is
    PAGE * HKV rows of D contiguous elements, copied ROWS rows at a time. The cache strides
    arrive divided by VEC, as in :func:`_attention_fwd`: a 72-wide head's stride is then known
    16-byte aligned and the loads are 16-byte vectors."""
    stride_kp, stride_kt, stride_kh = _times(stride_kp, stride_kt, stride_kh, VEC)
    stride_vp, stride_vt, stride_vh = _times(stride_vp, stride_vt, stride_vh, VEC)
    s = tl.program_id(0)
    p = tl.program_id(1)
    k_len = tl.minimum(tl.load(seqused_k + s), stage_rows)
    if p * PAGE >= k_len:
        return
    offs_r = tl.arange(0, ROWS)
    offs_d = tl.arange(0, D_P)
    d_mask = offs_d < D
    page = tl.load(block_table + s.to(tl.int64) * stride_bt + p).to(tl.int64)
    dst_row0 = (s.to(tl.int64) * stage_rows + p * PAGE) * HKV
    for r0 in range(0, PAGE * HKV, ROWS):
        r = r0 + offs_r
        t = (r // HKV).to(tl.int64)
        h = (r % HKV).to(tl.int64)
        r_mask = ((r < PAGE * HKV) & (p * PAGE + t < k_len))[:, None] & d_mask[None, :]
        dst = (dst_row0 + r)[:, None] * D + offs_d[None, :]
        # Both loads before either store: twice the bytes in flight per thread.
        k = tl.load(K + (page * stride_kp + t * stride_kt + h * stride_kh)[:, None] + offs_d[None, :], mask=r_mask)
        v = tl.load(V + (page * stride_vp + t * stride_vt + h * stride_vh)[:, None] + offs_d[None, :], mask=r_mask)
        tl.store(KS + dst, k, mask=r_mask)
        tl.store(VS + dst, v, mask=r_mask)


def _vector_strides(strides, element_size: int) -> tuple[int, list[int]]:
    """(VEC, the strides divided by it): VEC is the 16-byte vector's elements when every stride
    is a multiple of it, else 1. The kernels multiply the strides back by the constexpr VEC, so
    the compiler knows each row start is 16-byte aligned (a runtime stride like 72 carries no
    alignment) and issues 16-byte loads."""
    widest = 16 // element_size
    vec = widest if all(st % widest == 0 for st in strides) else 1
    return vec, [st // vec for st in strides]


def _stage(k, v, seqused_k, block_table, stage_rows: int):
    """The nhd caches' keys and values of every sequence, dense: [num_seqs * stage_rows, H_kv, D].
    One page a program, up to 8192 elements of K and of V a step (64 a thread), so a single long
    prefill has every page's loads in flight at once."""
    num_seqs = block_table.shape[0]
    _, page, hkv, d = k.shape
    ks = k.new_empty(num_seqs * stage_rows, hkv, d)
    vs = v.new_empty(num_seqs * stage_rows, hkv, d)
    pages = min(block_table.shape[1], -(-stage_rows // page))
    rows = min(next_pow2(page * hkv), max(1, 8192 // next_pow2(d)))
    vec, strides = _vector_strides((*k.stride()[:3], *v.stride()[:3]), k.element_size())
    _stage_kv[(num_seqs, pages)](
        k, v, ks, vs, seqused_k, block_table, block_table.stride(0), *strides, stage_rows,
        PAGE=page, HKV=hkv, D=d, D_P=next_pow2(d), ROWS=rows, VEC=vec, num_warps=4)
    return ks, vs


def stage_bound(block_table, page: int, max_seqlen_k: int) -> int:
    """Rows a sequence gets when its keys are staged dense: the block table's reach, or the
    host's max_seqlen_k when that is tighter."""
    key_bound = block_table.shape[1] * page
    return min(key_bound, int(max_seqlen_k)) if max_seqlen_k else key_bound


def stage_dense(k, v, seqused_k, block_table, max_seqlen_k: int):
    """(dense K, dense V, rows a sequence) of nhd caches: the staged form the CUDA backend reads."""
    stage_rows = stage_bound(block_table, k.shape[1], max_seqlen_k)
    k, v = _stage(k, v, seqused_k, block_table, stage_rows)
    return k, v, stage_rows


def _kv_geometry(k, v, paged: bool):
    """(H_kv, D, page size (0: dense), x (0: head_size not split), key strides (page, token, head,
    d or x-split), value strides (page, token, head, d)) for the three cache layouts."""
    if not paged:  # dense packed [T, H_kv, D]
        return (k.shape[1], k.shape[2], 0, 0, (0, k.stride(0), k.stride(1), k.stride(2)),
                (0, v.stride(0), v.stride(1), v.stride(2)))
    if k.dim() == 4:  # nhd [num_blocks, block_size, H_kv, D]
        return (k.shape[2], k.shape[3], k.shape[1], 0, (k.stride(0), k.stride(1), k.stride(2), k.stride(3)),
                (v.stride(0), v.stride(1), v.stride(2), v.stride(3)))
    # x_split key [num_blocks, H_kv, D / x, block_size, x], value [num_blocks, H_kv, D, block_size]
    x = k.shape[4]
    return (k.shape[1], k.shape[2] * x, k.shape[3], x, (k.stride(0), k.stride(3), k.stride(1), k.stride(2)),
            (v.stride(0), v.stride(3), v.stride(1), v.stride(2)))


def launch(q, k, v, out, cu_seqlens_q, cu_seqlens_k, seqused_k, block_table, max_seqlen_q: int, scale: float,
           causal: bool, max_seqlen_k: int = 0) -> None:
    """Launch on validated tensors: dense K/V when ``block_table`` is None, paged otherwise (nhd
    4-D or x-split 5-D key); one query per sequence when ``cu_seqlens_q`` is None.
    ``max_seqlen_k`` (host-side, 0: unknown) bounds a paged sequence's keys more tightly than
    the block table's width when the keys are staged (:func:`stage_keys`)."""
    paged = block_table is not None
    total, h, d_q = q.shape
    decode = cu_seqlens_q is None
    num_seqs = total if decode else cu_seqlens_q.shape[0] - 1
    if total == 0 or num_seqs == 0:
        return
    hkv, d, page, x, ks, vs = _kv_geometry(k, v, paged)
    g = h // hkv
    d_a, d_b = head_dim_chunks(d)
    d_pad = d_a + d_b
    gpu = gpu_codegen(q)
    rows_per_seq = max(1, int(max_seqlen_q)) * g
    cfg = launch_config(d_pad, rows_per_seq, gpu, g, bool(causal))
    stage_rows = 0  # > 0: keys staged dense, this many rows per sequence
    if paged and not decode and x == 0:
        key_bound = stage_bound(block_table, page, max_seqlen_k)
        if stage_keys(total * g, num_seqs, num_seqs * key_bound * hkv * d * k.element_size() * 2):
            stage_rows = key_bound
            k, v = _stage(k, v, seqused_k, block_table, stage_rows)
            hkv, d, page, x, ks, vs = _kv_geometry(k, v, False)
            paged = False
    tiles_per_seq = 0
    if decode:
        blocks = num_seqs
    else:
        packed = total * g // cfg.block_m + num_seqs
        tiles_per_seq = -(-rows_per_seq // cfg.block_m)
        if direct_grid(num_seqs, tiles_per_seq, packed):
            blocks = num_seqs * tiles_per_seq
        else:
            blocks, tiles_per_seq = packed, 0
    dummy = q.new_empty(0, dtype=torch.int32)
    splits = 1
    if decode:
        # Host-side bound on a sequence's keys: the block table's width (nothing reads seq_lens).
        keys = block_table.shape[1] * page if paged else k.shape[0]
        cfg, splits = decode_plan(d_pad, rows_per_seq, keys, num_seqs * hkv, sm_count(q), gpu)
    part_o, part_ml = split_workspace(num_seqs, h, splits, d, q.device) if splits > 1 else (dummy, dummy)
    # Per tensor: the x-split value cache's token stride 1 must not cost the keys theirs.
    vec, (qt, qh, ot, oh) = _vector_strides((q.stride(0), q.stride(1), out.stride(0), out.stride(1)),
                                            q.element_size())
    vec_k, (kp, kt, kh) = _vector_strides(ks[:3], k.element_size())
    vec_v, (vp, vt, vh) = _vector_strides(vs[:3], v.element_size())
    # Token-major value loads (vLLM's x-split value cache: tokens contiguous within a page) in
    # 16-byte runs of min(page, block_n) tokens, where the run starts and the d stride keep them aligned.
    v_run = min(page, cfg.block_n) if x > 0 and vs[1] == 1 else 0
    if v_run and not (v_run * v.element_size() >= 16 and all(st % v_run == 0 for st in (vs[0], vs[2], vs[3]))
                      and v.data_ptr() % 16 == 0):
        v_run = 0
    args = (q, k, v, out,
            dummy if decode else cu_seqlens_q, dummy if cu_seqlens_k is None else cu_seqlens_k,
            dummy if seqused_k is None else seqused_k, dummy if block_table is None else block_table,
            float(scale) * LOG2E, num_seqs, qt, qh, ot, oh, kp, kt, kh, ks[3], vp, vt, vh, vs[3],
            block_table.stride(0) if paged else 0)
    # DOT_FP32: Triton's CPU interpreter multiplies bf16 dot operands wrongly, so tiles are upcast there only.
    meta = dict(G=g, D=d, D_A=d_a, D_B=d_b, KX=x, PAGE=page, CAUSAL=bool(causal), DECODE=decode,
                BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, VEC=vec, VEC_K=vec_k, VEC_V=vec_v, DOT_FP32=not gpu,
                num_warps=cfg.num_warps, SPLIT=splits > 1,
                STAGED=stage_rows > 0, V_RUN=v_run)
    key = tuple(sorted(meta.items())) + (cfg.num_stages, q.dtype)
    stages = _STAGES_THAT_FIT.get(key, cfg.num_stages)
    while True:
        try:
            _attention_fwd[(blocks, hkv, splits)](*args, PART_O=part_o, PART_ML=part_ml, tiles_per_seq=tiles_per_seq,
                                                  stage_rows=stage_rows, **meta, num_stages=stages)
            break
        except triton.runtime.errors.OutOfResources:
            # A compiler that lays out more shared memory than this one was measured with: one
            # stage fewer (remembered for the config), rather than a failed launch.
            if stages <= 1:
                raise
            stages -= 1
    _STAGES_THAT_FIT[key] = stages
    if splits > 1:
        combine(part_o, part_ml, out)


#: Pipeline depth that fit shared memory, per launch config that needed fewer stages than asked.
_STAGES_THAT_FIT: dict = {}
