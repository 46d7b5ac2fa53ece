"""Flash attention over packed (varlen) queries and a dense or paged KV cache, in Triton.

One kernel serves three call sites:

* :func:`unified_attention`: vLLM's ``unified_attention`` contract: queries packed by
  ``cu_seqlens_q``, keys and values in a paged ``nhd`` cache ``[num_blocks, block_size, H_kv, D]``
  read through ``block_table``, ``seqused_k`` keys per sequence, causal aligned bottom-right (the
  queries are the last ``L_q`` of the sequence's ``L_k`` tokens: chunked prefill and decode);
* :func:`varlen_attention`: ``flash_attn_varlen_func``: dense packed K/V by ``cu_seqlens_k``;
* :func:`paged_attention_decode`: one query per sequence over vLLM's original ``x_split`` cache
  (key ``[num_blocks, H_kv, D / x, block_size, x]``, value ``[num_blocks, H_kv, D, block_size]``).

    out[t, h] = sum_j softmax_j(scale * q[t, h] . k[j, h // G]) v[j, h // G],   G = H / H_kv

over the keys j of t's sequence (and, when causal, j <= i + L_k - L_q for t the sequence's
query i). A query that sees no key gets 0.

Design. A program owns one KV head of one sequence and ``BLOCK_M`` rows of the flattened
(query token, query head of that KV head's group) space, so the G query heads that share a KV
head share every K/V tile it loads, and a decode step (one token, G heads) still fills a
tensor-core tile. Key tiles wholly visible to every row run without masks; only the tiles on the
causal diagonal or past ``L_k`` are masked, and tiles past the diagonal are never visited.
Programs are laid out sequence after sequence with a bound that needs no device-side prefix sum
(``(cu_q[s] * G) // BLOCK_M + s``), found by a binary search over ``cu_seqlens_q``, and issued
last-block-first so the longest causal rows start first. Nothing syncs with the host: the grid
comes from host ints (token count, batch size, ``max_seqlen_q``), so CUDA graphs capture it.
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import check_dtype, check_out, gpu_codegen, interpreting, kernel_op, next_pow2

try:
    import triton
    import triton.language as tl
except ImportError:  # the library imports without Triton; calling a kernel then raises
    triton = None

DTYPES = (torch.bfloat16, torch.float16)
_LOG2E = 1.4426950408889634


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Launch options of the attention kernel. ``block_m`` rows of (token, head) pairs per
    program, ``block_n`` keys per tile."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


def default_config(head_dim_padded: int, rows_per_seq: int, is_cuda: bool) -> AttentionConfig:
    """First-principles tiles: 128 x 128 with 8 warps (two warpgroups of 64 rows) and three
    stages for long prefills at D <= 128; half the key tile and two stages at D = 256 so the K
    and V stages fit shared memory; a smaller M when a sequence has few rows (decode: G rows)."""
    bm = 128 if rows_per_seq >= 128 else max(16, next_pow2(rows_per_seq))
    if not is_cuda:
        return AttentionConfig(bm, 64 if head_dim_padded <= 128 else 32, 4, 1)
    if bm < 128:
        return AttentionConfig(bm, 64 if head_dim_padded <= 128 else 32, 4, 3 if head_dim_padded <= 128 else 2)
    if head_dim_padded <= 128:
        return AttentionConfig(128, 128, 8, 3)
    return AttentionConfig(128, 64, 8, 2)


def head_dim_chunks(d: int) -> tuple[int, int]:
    """head_size as one or two power-of-two column chunks, the second padded in registers:
    72 -> (64, 16), 80 -> (64, 16), 96 -> (64, 32), 192 -> (128, 64), 128 -> (128, 0)."""
    a = max(16, 1 << (int(d).bit_length() - 1))
    rest = int(d) - a
    return a, (0 if rest <= 0 else max(16, next_pow2(rest)))


def tiles_override() -> AttentionConfig | None:
    """``SOLBENCH_ATTENTION_TILES=block_m,block_n,num_warps,num_stages``: one config for every
    launch, for A/B runs from the command line (read at each call)."""
    import os

    value = os.environ.get("SOLBENCH_ATTENTION_TILES")
    if not value:
        return None
    try:
        bm, bn, warps, stages = (int(x) for x in value.split(","))
    except ValueError:
        raise ValueError(f"SOLBENCH_ATTENTION_TILES={value!r}: expected block_m,block_n,num_warps,num_stages") from None
    return AttentionConfig(bm, bn, warps, stages)


if triton is not None:

    @triton.jit
    def _load_kv_tile(base, page_row, j, n_mask, offs_d, d_mask, stride_page, stride_tok, stride_x,
                      PAGE: tl.constexpr, X: tl.constexpr, MASKED: tl.constexpr):
        """A [BLOCK_N, len(offs_d)] tile of keys or values j (``page_row``: this sequence's block-table
        row, unused when dense). Element d of token j sits at page * stride_page + (j % PAGE) *
        stride_tok + d * stride_x, or with an x-split head_size (X > 0) at ... + (d // X) *
        stride_x + d % X."""
        if PAGE > 0:
            if MASKED:
                page = tl.load(page_row + j // PAGE, mask=n_mask, other=0)
            else:
                page = tl.load(page_row + j // PAGE)
            row = page.to(tl.int64) * stride_page + (j % PAGE).to(tl.int64) * stride_tok
        else:
            row = j.to(tl.int64) * stride_tok
        if X == 0:  # head_size contiguous (stride_x is its stride)
            col = offs_d * stride_x
        else:
            col = (offs_d // X) * stride_x + offs_d % X
        ptrs = base + row[:, None] + col[None, :]
        if MASKED:
            return tl.load(ptrs, mask=n_mask[:, None] & d_mask[None, :], other=0.0)
        return tl.load(ptrs, mask=d_mask[None, :], other=0.0)

    @triton.jit
    def _attend_tiles(acc, acc_b, l_i, m_i, q, q_b, k_base, v_base, page_row, n_lo, n_hi, k_len, t_row, diag,
                      offs_n, offs_d, d_mask, offs_db, db_mask, qk_scale,
                      stride_kp, stride_kt, stride_kx, stride_vp, stride_vt, stride_vd,
                      PAGE: tl.constexpr, KX: tl.constexpr, CAUSAL: tl.constexpr, MASKED: tl.constexpr,
                      BLOCK_N: tl.constexpr, D_B: tl.constexpr, DOT_FP32: tl.constexpr):
        """Online softmax over key tiles [n_lo, n_hi). Unmasked tiles (every key visible to every
        row) skip the masks and the empty-row guard. A head_size that is not a power of two runs
        as two column chunks (``acc`` and, when D_B > 0, ``acc_b``): 72 = 64 + 16 (8 masked)
        multiplies 80 columns instead of 128."""
        for n in range(n_lo, n_hi, BLOCK_N):
            j = n + offs_n
            n_mask = j < k_len
            k = _load_kv_tile(k_base, page_row, j, n_mask, offs_d, d_mask, stride_kp, stride_kt, stride_kx,
                              PAGE, KX, MASKED)
            if DOT_FP32:
                k = k.to(tl.float32)
            qk = tl.dot(q, tl.trans(k))
            if D_B > 0:
                k_b = _load_kv_tile(k_base, page_row, j, n_mask, offs_db, db_mask, stride_kp, stride_kt, stride_kx,
                                    PAGE, KX, MASKED)
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
            v = _load_kv_tile(v_base, page_row, j, n_mask, offs_d, d_mask, stride_vp, stride_vt, stride_vd,
                              PAGE, 0, MASKED)
            if DOT_FP32:
                v = v.to(tl.float32)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
            if D_B > 0:
                v_b = _load_kv_tile(v_base, page_row, j, n_mask, offs_db, db_mask, stride_vp, stride_vt, stride_vd,
                                    PAGE, 0, MASKED)
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
                       BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, VEC: tl.constexpr, DOT_FP32: tl.constexpr):
        # Strides arrive divided by VEC: multiplied back here, the compiler knows every row start
        # is VEC-aligned (72-wide heads: 144 B) and issues 16-byte vector loads.
        stride_qt *= VEC
        stride_qh *= VEC
        stride_ot *= VEC
        stride_oh *= VEC
        stride_kp *= VEC
        stride_kt *= VEC
        stride_kh *= VEC
        stride_vp *= VEC
        stride_vt *= VEC
        stride_vh *= VEC
        kvh = tl.program_id(1)
        pid = tl.num_programs(0) - 1 - tl.program_id(0)  # last blocks (longest causal rows) first
        if DECODE:
            # One query per sequence: program s owns sequence s, rows = its G heads.
            s = pid
            q_start = pid
            q_len = 1
            row0 = 0
        else:
            # Sequence s owns program slots from (cu_q[s] * G) // BLOCK_M + s on: a bound on the
            # blocks before it that needs no prefix sum over the batch.
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
        n_rows = q_len * G
        if row0 >= n_rows:
            return
        k_base = K + kvh.to(tl.int64) * stride_kh
        v_base = V + kvh.to(tl.int64) * stride_vh
        if PAGE > 0:
            k_len = tl.load(seqused_k + s)
        else:
            k_start = tl.load(cu_k + s)
            k_len = tl.load(cu_k + s + 1) - k_start
            k_base += k_start.to(tl.int64) * stride_kt
            v_base += k_start.to(tl.int64) * stride_vt
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

        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, D_A], tl.float32)
        acc_b = tl.zeros([BLOCK_M, 16 if D_B == 0 else D_B], tl.float32)
        acc, acc_b, l_i, m_i = _attend_tiles(acc, acc_b, l_i, m_i, q, q_b, k_base, v_base, page_row, 0, n_full,
                                             k_len, t_row, diag, offs_n, offs_d, d_mask, offs_db, db_mask, qk_scale,
                                             stride_kp, stride_kt, stride_kx, stride_vp, stride_vt, stride_vd,
                                             PAGE, KX, CAUSAL, False, BLOCK_N, D_B, DOT_FP32)
        acc, acc_b, l_i, m_i = _attend_tiles(acc, acc_b, l_i, m_i, q, q_b, k_base, v_base, page_row, n_full,
                                             n_end, k_len, t_row, diag, offs_n, offs_d, d_mask, offs_db, db_mask,
                                             qk_scale, stride_kp, stride_kt, stride_kx, stride_vp, stride_vt,
                                             stride_vd, PAGE, KX, CAUSAL, True, BLOCK_N, D_B, DOT_FP32)
        l_i = tl.where(l_i > 0.0, l_i, 1.0)
        o_rows = O + tok[:, None] * stride_ot + head[:, None] * stride_oh
        tl.store(o_rows + offs_d[None, :], (acc / l_i[:, None]).to(O.dtype.element_ty),
                 mask=m_mask[:, None] & d_mask[None, :])
        if D_B > 0:
            tl.store(o_rows + offs_db[None, :], (acc_b / l_i[:, None]).to(O.dtype.element_ty),
                     mask=m_mask[:, None] & db_mask[None, :])


# ---- the custom op ------------------------------------------------------------------------------

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


@kernel_op("solbench::attention_fwd_", mutates_args=("out",))
def _attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                  cu_seqlens_q: torch.Tensor | None, cu_seqlens_k: torch.Tensor | None,
                  seqused_k: torch.Tensor | None, block_table: torch.Tensor | None,
                  max_seqlen_q: int, scale: float, causal: bool) -> None:
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
    cfg = tiles_override() or default_config(d_pad, max(1, int(max_seqlen_q)) * g, gpu)
    blocks = num_seqs if decode else total * g // cfg.block_m + num_seqs
    dummy = q.new_empty(0, dtype=torch.int32)
    row_strides = (q.stride(0), q.stride(1), out.stride(0), out.stride(1), ks[0], ks[1], ks[2], vs[0], vs[1], vs[2])
    vec = 16 // q.element_size()
    vec = vec if all(st % vec == 0 for st in row_strides) else 1
    qt, qh, ot, oh, kp, kt, kh, vp, vt, vh = (st // vec for st in row_strides)
    _attention_fwd[(blocks, hkv)](
        q, k, v, out,
        dummy if decode else cu_seqlens_q, dummy if cu_seqlens_k is None else cu_seqlens_k,
        dummy if seqused_k is None else seqused_k, dummy if block_table is None else block_table,
        float(scale) * _LOG2E, num_seqs, qt, qh, ot, oh, kp, kt, kh, ks[3], vp, vt, vh, vs[3],
        block_table.stride(0) if paged else 0,
        G=g, D=d, D_A=d_a, D_B=d_b, KX=x, PAGE=page, CAUSAL=bool(causal), DECODE=decode,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, VEC=vec, DOT_FP32=not gpu,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)


@_attention_op.register_fake
def _attention_fake(q, k, v, out, cu_seqlens_q, cu_seqlens_k, seqused_k, block_table, max_seqlen_q, scale,
                    causal) -> None:
    return None


# ---- public functions ---------------------------------------------------------------------------

def _require_runnable(q, what: str) -> None:
    if triton is None:
        raise RuntimeError(f"{what}: Triton is not importable here")
    if q.device.type != "cuda" and not (q.device.type == "cpu" and interpreting()):
        raise RuntimeError(f"{what}: tensors on {q.device} are supported only under TRITON_INTERPRET=1; "
                           "use a CUDA device")


def _check_q(q, what: str, arg: str = "q"):
    check_dtype(q, DTYPES, what, arg)
    if q.dim() != 3:
        raise ValueError(f"{what}: {arg} must be [tokens, heads, head_size], got shape {tuple(q.shape)}")
    if q.shape[-1] > 1 and q.stride(-1) != 1:
        raise ValueError(f"{what}: {arg} must be contiguous in head_size (stride {q.stride(-1)})")


def _check_same(t, q, what: str, arg: str):
    if t.dtype != q.dtype:
        raise TypeError(f"{what}: {arg} has dtype {t.dtype}, q has {q.dtype}; they must match")
    if t.device != q.device:
        raise ValueError(f"{what}: {arg} is on {t.device}, q on {q.device}")


def _check_index(t, n: int | None, what: str, arg: str, dims: int = 1):
    if t.dtype != torch.int32:
        raise TypeError(f"{what}: {arg} must be int32, got {t.dtype}")
    if t.dim() != dims or (n is not None and t.shape[0] != n):
        want = f"[{n}]" if dims == 1 else f"{dims}-D with {n} rows"
        raise ValueError(f"{what}: {arg} must be {want}, got shape {tuple(t.shape)}")
    if t.stride(-1) != 1:
        raise ValueError(f"{what}: {arg} must be contiguous in its last dimension")


def _check_heads(h: int, hkv: int, d_q: int, d: int, what: str):
    if hkv < 1 or h % hkv:
        raise ValueError(f"{what}: {h} query heads is not a multiple of {hkv} kv heads")
    if d_q != d:
        raise ValueError(f"{what}: q has head_size {d_q}, the cache {d}; they must match")
    if d > 256:
        raise ValueError(f"{what}: head_size {d} is not supported (at most 256)")


def _output(out, q, what: str):
    if out is None:
        return torch.empty_like(q)
    check_out(out, q.shape, q.dtype, q.device, what)
    if out.stride(-1) != 1:
        raise ValueError(f"{what}: out must be contiguous in head_size")
    return out


def unified_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                      cu_seqlens_q: torch.Tensor, seqused_k: torch.Tensor, block_table: torch.Tensor,
                      max_seqlen_q: int, softmax_scale: float | None = None, causal: bool = True,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """Paged varlen attention (vLLM ``unified_attention``), prefill, chunked prefill and decode.

    ``q`` [total_q, H, D] bf16/fp16 packed by ``cu_seqlens_q`` (int32 [B + 1]); ``k_cache`` /
    ``v_cache`` [num_blocks, block_size, H_kv, D] (vLLM's ``nhd`` layout, rows may be strided);
    ``block_table`` [B, max_blocks] int32; ``seqused_k`` [B] int32 keys per sequence (context
    included, >= the sequence's queries when causal); ``max_seqlen_q`` the host-side bound on
    queries per sequence (it sizes the tiles; nothing syncs). ``softmax_scale`` defaults to
    1/sqrt(D). Causal masks align bottom-right. Returns ``out`` [total_q, H, D] in q's dtype.
    """
    what = "unified_attention"
    _check_q(q, what)
    for name, t in (("k_cache", k_cache), ("v_cache", v_cache)):
        _check_same(t, q, what, name)
        if t.dim() != 4 or t.stride(-1) != 1:
            raise ValueError(f"{what}: {name} must be [num_blocks, block_size, num_kv_heads, head_size] "
                             f"(vLLM's nhd layout) with a contiguous last dim, got shape {tuple(t.shape)}")
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"{what}: k_cache {tuple(k_cache.shape)} and v_cache {tuple(v_cache.shape)} differ")
    _check_heads(q.shape[1], k_cache.shape[2], q.shape[2], k_cache.shape[3], what)
    _check_index(cu_seqlens_q, None, what, "cu_seqlens_q")
    b = cu_seqlens_q.shape[0] - 1
    _check_index(seqused_k, b, what, "seqused_k")
    _check_index(block_table, b, what, "block_table", dims=2)
    out = _output(out, q, what)
    _require_runnable(q, what)
    scale = q.shape[2] ** -0.5 if softmax_scale is None else float(softmax_scale)
    _attention_op(q, k_cache, v_cache, out, cu_seqlens_q, None, seqused_k, block_table, int(max_seqlen_q),
                  scale, bool(causal))
    return out


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
                     cu_seqlens_k: torch.Tensor, max_seqlen_q: int, softmax_scale: float | None = None,
                     causal: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
    """Dense varlen attention (``flash_attn_varlen_func``).

    ``q`` [total_q, H, D], ``k`` / ``v`` [total_k, H_kv, D] bf16/fp16 packed by ``cu_seqlens_q`` /
    ``cu_seqlens_k`` (int32 [B + 1]); ``max_seqlen_q`` host-side. Causal masks align bottom-right.
    Returns ``out`` [total_q, H, D] in q's dtype.
    """
    what = "varlen_attention"
    _check_q(q, what)
    for name, t in (("k", k), ("v", v)):
        _check_q(t, what, name)
        _check_same(t, q, what, name)
    if k.shape != v.shape:
        raise ValueError(f"{what}: k {tuple(k.shape)} and v {tuple(v.shape)} differ")
    _check_heads(q.shape[1], k.shape[1], q.shape[2], k.shape[2], what)
    _check_index(cu_seqlens_q, None, what, "cu_seqlens_q")
    _check_index(cu_seqlens_k, cu_seqlens_q.shape[0], what, "cu_seqlens_k")
    out = _output(out, q, what)
    _require_runnable(q, what)
    scale = q.shape[2] ** -0.5 if softmax_scale is None else float(softmax_scale)
    _attention_op(q, k, v, out, cu_seqlens_q, cu_seqlens_k, None, None, int(max_seqlen_q), scale, bool(causal))
    return out


def paged_attention_decode(query: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, seq_lens: torch.Tensor, scale: float | None = None,
                           out: torch.Tensor | None = None) -> torch.Tensor:
    """One decode step per sequence over vLLM's original paged layout (``paged_attention_v1``).

    ``query`` [B, H, D] bf16/fp16; ``k_cache`` [num_blocks, H_kv, D / x, block_size, x] with
    x = 16 bytes / element size; ``v_cache`` [num_blocks, H_kv, D, block_size];
    ``block_tables`` [B, max_blocks] int32; ``seq_lens`` [B] int32 keys per sequence. Returns
    ``out`` [B, H, D] in query's dtype.
    """
    what = "paged_attention_decode"
    _check_q(query, what, "query")
    for name, t, dims in (("k_cache", k_cache, 5), ("v_cache", v_cache, 4)):
        _check_same(t, query, what, name)
        if t.dim() != dims:
            raise ValueError(f"{what}: {name} must be {dims}-D (vLLM's x-split layout), got shape {tuple(t.shape)}")
    nb, hkv, dx, bs, x = k_cache.shape
    if tuple(v_cache.shape) != (nb, hkv, dx * x, bs):
        raise ValueError(f"{what}: v_cache has shape {tuple(v_cache.shape)}, expected {(nb, hkv, dx * x, bs)} "
                         f"for k_cache {tuple(k_cache.shape)}")
    if k_cache.stride(-1) != 1:
        raise ValueError(f"{what}: k_cache must be contiguous in its last (x) dimension")
    _check_heads(query.shape[1], hkv, query.shape[2], dx * x, what)
    b = query.shape[0]
    _check_index(seq_lens, b, what, "seq_lens")
    _check_index(block_tables, b, what, "block_tables", dims=2)
    out = _output(out, query, what)
    _require_runnable(query, what)
    scale = query.shape[2] ** -0.5 if scale is None else float(scale)
    _attention_op(query, k_cache, v_cache, out, None, None, seq_lens, block_tables, 1, scale, False)
    return out


__all__ = ["AttentionConfig", "default_config", "unified_attention", "varlen_attention", "paged_attention_decode"]
