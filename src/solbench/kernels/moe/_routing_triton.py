"""The Triton kernels behind :mod:`solbench.kernels.moe.routing` (imported at the first launch, so
``import solbench`` decorates no Triton kernel): the top-k gating softmax, the expert sort and the
top-k sum, with their launchers."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from solbench.kernels.common import next_pow2
from solbench.kernels.moe.routing import SortOptions, aligned_capacity, topk_softmax_launch


_INT64_MIN: tl.constexpr = tl.constexpr(-(2 ** 63))


@triton.jit
def _logit_of(key):
    """The fp32 logit in the high half of a selection key (the inverse of the order map)."""
    hi = (key >> 32).to(tl.int32)
    return tl.where(hi >= 0, hi, hi ^ 0x7FFFFFFF).to(tl.float32, bitcast=True)


@triton.jit
def _topk_softmax_kernel(x_ptr, x_stride, w_ptr, ids_ptr, T, E,
                         TOP_K: tl.constexpr, KP: tl.constexpr, RENORM: tl.constexpr, BLOCK_T: tl.constexpr,
                         BLOCK_E: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_E)
    kc = tl.arange(0, KP)
    rmask = rows < T
    cmask = cols < E
    # Rows past T load zeros (finite, no NaN from -inf - -inf); padded experts never win.
    x = tl.load(x_ptr + rows[:, None].to(tl.int64) * x_stride + cols[None, :],
                mask=rmask[:, None] & cmask[None, :], other=0.0).to(tl.float32)
    # One int64 key per logit: an order-preserving image of the fp32 bits above, BLOCK_E-1-col
    # below. Keys are unique, so each of the k rounds is a single max and the lower expert index
    # wins a tie (as vLLM's kernel picks it). -0.0 is keyed as +0.0, an equal logit.
    bits = x.to(tl.int32, bitcast=True)
    bits = tl.where(x == 0.0, 0, tl.where(bits >= 0, bits, bits ^ 0x7FFFFFFF))
    key = (bits.to(tl.int64) << 32) | (BLOCK_E - 1 - cols)[None, :].to(tl.int64)
    key = tl.where(cmask[None, :], key, _INT64_MIN)
    # Round 0 gives the row max, so the softmax denominator overlaps the later rounds.
    best = tl.max(key, axis=1)
    mx = _logit_of(best)
    inv = 1.0 / tl.sum(tl.exp(tl.where(cmask[None, :], x, float("-inf")) - mx[:, None]), axis=1)
    lg = tl.zeros([BLOCK_T, KP], dtype=tl.float32) + mx[:, None]
    ids = tl.zeros([BLOCK_T, KP], dtype=tl.int32) + (BLOCK_E - 1 - (best & 0xFFFFFFFF).to(tl.int32))[:, None]
    for j in tl.static_range(1, TOP_K):
        key = tl.where(key == best[:, None], _INT64_MIN, key)
        best = tl.max(key, axis=1)
        lg = tl.where(kc[None, :] == j, _logit_of(best)[:, None], lg)
        ids = tl.where(kc[None, :] == j, (BLOCK_E - 1 - (best & 0xFFFFFFFF).to(tl.int32))[:, None], ids)
    w = tl.exp(lg - mx[:, None]) * inv[:, None]
    if RENORM:
        w = w / tl.sum(tl.where(kc[None, :] < TOP_K, w, 0.0), axis=1)[:, None]
    omask = rmask[:, None] & (kc[None, :] < TOP_K)
    off = rows[:, None].to(tl.int64) * TOP_K + kc[None, :]
    tl.store(w_ptr + off, w, mask=omask)
    tl.store(ids_ptr + off, ids, mask=omask)


def launch_topk_softmax(x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor, renormalize: bool) -> None:
    """``x [T, E]`` (a row stride of its own) into contiguous ``weights``/``ids [T, k]``."""
    t, e = x.shape
    k = ids.shape[1]
    if t == 0:
        return
    be = next_pow2(e)
    bt, num_warps = topk_softmax_launch(t, be)
    _topk_softmax_kernel[(triton.cdiv(t, bt),)](x, x.stride(0), weights, ids, t, e, TOP_K=k, KP=next_pow2(k),
                                                 RENORM=renormalize, BLOCK_T=bt, BLOCK_E=be, num_warps=num_warps)


# ---- expert sort: histogram, prefix sum, stable scatter --------------------------------------------


@triton.jit
def _chunk_histogram_kernel(ids_ptr, n, hist_ptr, E, EP: tl.constexpr, CHUNK: tl.constexpr):
    offs = tl.program_id(0) * CHUNK + tl.arange(0, CHUNK)
    ids = tl.load(ids_ptr + offs, mask=offs < n, other=-1)
    tl.store(hist_ptr + tl.program_id(0) * EP + tl.arange(0, EP),
             tl.histogram(ids, EP, mask=(offs < n) & (ids >= 0) & (ids < E)))


@triton.jit
def _sort_scatter_kernel(ids_ptr, n, hist_ptr, nchunks, sorted_ptr, expert_ids_ptr, counts_ptr, cumsum_ptr,
                         ntpp_ptr, E, BS: tl.constexpr, BSP: tl.constexpr, EP: tl.constexpr, CHUNK: tl.constexpr,
                         SUB: tl.constexpr, HSUB: tl.constexpr, SINGLE: tl.constexpr, CB: tl.constexpr,
                         BB: tl.constexpr, WRITE_EXPERT_IDS: tl.constexpr, WRITE_COUNTS: tl.constexpr,
                         WRITE_CUMSUM: tl.constexpr, WRITE_NTPP: tl.constexpr):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    e = tl.arange(0, EP)
    emask = e < E
    lo = pid * CHUNK
    # before: this chunk's predecessors' slots per expert; counts: all of them. One launch: every
    # program histograms the ids itself (cheap below ~16k slots); else from per-chunk histograms.
    counts = tl.zeros([EP], dtype=tl.int32)
    before = tl.zeros([EP], dtype=tl.int32)
    if SINGLE:
        # Bin 2*id + (slot in or after this chunk): both histograms in one pass, HSUB slots a
        # load so a few thousand slots cost one memory latency.
        for s0 in range(0, n, HSUB):
            offs = s0 + tl.arange(0, HSUB)
            ids = tl.load(ids_ptr + offs, mask=offs < n, other=-1)
            h = tl.histogram(ids * 2 + (offs >= lo).to(tl.int32), 2 * EP,
                             mask=(offs < n) & (ids >= 0) & (ids < E))
            pre, post = tl.split(tl.reshape(h, [EP, 2]))
            before += pre
            counts += pre + post
    else:
        for c0 in range(0, nchunks, CB):
            c = c0 + tl.arange(0, CB)
            h = tl.load(hist_ptr + c[:, None] * EP + e[None, :], mask=(c < nchunks)[:, None], other=0)
            counts += tl.sum(h, axis=0)
            before += tl.sum(tl.where((c < pid)[:, None], h, 0), axis=0)
    padded = (counts + BS - 1) // BS * BS
    ends = tl.cumsum(padded, axis=0)
    starts = ends - padded
    total = tl.sum(padded, axis=0)
    # Stable scatter: a slot lands at its expert's next free position (base) plus its rank among
    # the same expert's slots earlier in its SUB tile (a [SUB, SUB] comparison).
    base = starts + before
    j = tl.arange(0, SUB)
    # The next tile is loaded before this one is ranked, so its latency overlaps.
    nxt = tl.load(ids_ptr + lo + j, mask=lo + j < n, other=-1)
    for s in range(0, CHUNK, SUB):
        offs = lo + s + j
        ids = nxt
        nxt = tl.load(ids_ptr + offs + SUB, mask=(offs + SUB < n) & (s + SUB < CHUNK), other=-1)
        ok = (offs < n) & (ids >= 0) & (ids < E)
        same = (ids[:, None] == ids[None, :]) & (j[None, :] < j[:, None]) & ok[None, :]
        rank = tl.sum(same.to(tl.int32), axis=1)
        dest = tl.gather(base, tl.where(ok, ids, 0), 0) + rank
        tl.store(sorted_ptr + dest, offs, mask=ok)
        base += tl.histogram(ids, EP, mask=ok)
    if BS > 1:
        # Blocks shared among the programs: block b belongs to the expert whose segment holds
        # b*BS (the number of segment ends at or below it); its positions past that expert's
        # last slot hold the sentinel n.
        fill = starts + counts
        used = total // BS
        col = tl.arange(0, BSP)
        for b0 in range(pid * BB, used, nprog * BB):
            b = b0 + tl.arange(0, BB)
            bm = b < used
            owner = tl.sum(((ends[None, :] <= b[:, None] * BS) & emask[None, :]).to(tl.int32), axis=1)
            if WRITE_EXPERT_IDS:
                tl.store(expert_ids_ptr + b, owner, mask=bm)
            pos = b[:, None] * BS + col[None, :]
            first = tl.gather(fill, tl.minimum(owner, EP - 1), 0)
            tl.store(sorted_ptr + pos, tl.zeros([BB, BSP], dtype=tl.int32) + n,
                     mask=bm[:, None] & (col < BS)[None, :] & (pos >= first[:, None]))
    if pid == 0:
        if WRITE_COUNTS:
            tl.store(counts_ptr + e, counts, mask=emask)
        if WRITE_CUMSUM:
            tl.store(cumsum_ptr + 1 + e, ends, mask=emask)
            tl.store(cumsum_ptr + e, 0, mask=e == 0)
        if WRITE_NTPP:
            tl.store(ntpp_ptr + e, total, mask=e == 0)


def launch_sort(topk_ids: torch.Tensor, num_experts: int, block_size: int, sorted_ids: torch.Tensor,
                expert_ids: torch.Tensor | None = None, counts: torch.Tensor | None = None,
                cumsum: torch.Tensor | None = None, ntpp: torch.Tensor | None = None,
                options: SortOptions | None = None) -> None:
    """Sort the flat slots of ``topk_ids`` by expert into ``sorted_ids`` (segments padded to
    ``block_size`` with the sentinel ``numel``) and write whichever of ``expert_ids`` (per block),
    ``counts`` [E], ``cumsum`` [E+1] (exclusive prefix sum of the padded counts, then the total)
    and ``ntpp`` [1] (the padded total) are given. Slots whose id is outside [0, E) are dropped."""
    flat = topk_ids.reshape(-1)
    n = flat.numel()
    opt = options or SortOptions.pick(n, num_experts)
    ep = max(32, next_pow2(num_experts))
    nchunks = max(1, triton.cdiv(n, opt.chunk))
    dummy = sorted_ids
    if opt.single:
        hist = dummy
    else:
        hist = torch.empty((nchunks, ep), dtype=torch.int32, device=flat.device)
        _chunk_histogram_kernel[(nchunks,)](flat, n, hist, num_experts, EP=ep, CHUNK=opt.chunk,
                                            num_warps=opt.num_warps)
    bsp = next_pow2(block_size)
    # Blocks each program covers: the capacity's blocks over the programs, a tile of <= 8k values.
    blocks = triton.cdiv(aligned_capacity(n, num_experts, block_size), block_size)
    bb = max(1, min(next_pow2(triton.cdiv(blocks, nchunks)), 8192 // max(bsp, ep)))
    _sort_scatter_kernel[(nchunks,)](
        flat, n, hist, nchunks, sorted_ids, dummy if expert_ids is None else expert_ids,
        dummy if counts is None else counts, dummy if cumsum is None else cumsum, dummy if ntpp is None else ntpp,
        num_experts, BS=block_size, BSP=bsp, EP=ep, CHUNK=opt.chunk, SUB=opt.sub,
        HSUB=opt.hsub, SINGLE=opt.single,
        CB=max(1, min(next_pow2(nchunks), 16384 // ep)), BB=bb, WRITE_EXPERT_IDS=expert_ids is not None,
        WRITE_COUNTS=counts is not None, WRITE_CUMSUM=cumsum is not None, WRITE_NTPP=ntpp is not None,
        num_warps=opt.num_warps)


# ---- top-k sum -----------------------------------------------------------------------------------


@triton.jit
def _sum_reduce_kernel(x_ptr, x_s0, x_s1, out_ptr, out_s0, T, H, K, scale,
                       BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = (rows < T)[:, None] & (cols < H)[None, :]
    p = x_ptr + rows[:, None].to(tl.int64) * x_s0 + cols[None, :]
    acc = tl.zeros([BLOCK_T, BLOCK_H], dtype=tl.float32)
    for j in range(K):
        acc += tl.load(p + j * x_s1, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + rows[:, None].to(tl.int64) * out_s0 + cols[None, :],
             (acc * scale).to(out_ptr.dtype.element_ty), mask=mask)


def launch_sum_reduce(x: torch.Tensor, out: torch.Tensor, scale: float) -> None:
    """``out [T, H] = scale * x.sum(1)`` for ``x [T, k, H]`` (hidden dims contiguous)."""
    t, k, h = x.shape
    if t == 0 or h == 0:
        return
    bh = min(1024, next_pow2(h))
    bt = max(1, min(next_pow2(t), 2048 // bh))
    _sum_reduce_kernel[(triton.cdiv(t, bt), triton.cdiv(h, bh))](x, x.stride(0), x.stride(1), out, out.stride(0),
                                                                 t, h, k, float(scale), BLOCK_T=bt, BLOCK_H=bh,
                                                                 num_warps=4)
