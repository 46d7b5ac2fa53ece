"""MoE routing kernels: top-k gating softmax, the expert sort (count + prefix sum + stable scatter),
and the top-k sum.

* :func:`topk_gating_softmax`: ``softmax(logits)`` in fp32, the ``k`` largest probabilities in
  descending order (ties to the lower expert index) and optionally renormalized, one pass per row.
* :func:`moe_align_block_size`: vLLM's padded layout: expert segments in ascending expert order,
  each padded to a multiple of ``block_size`` with the sentinel ``T*k``, the expert of each block
  and ``num_tokens_post_pad``. Only entries below ``num_tokens_post_pad`` are written.
* :func:`moe_count_and_sort`: the compact layout: the flat slots stably sorted by expert, the
  counts and their (unpadded) exclusive prefix sum.
* :func:`moe_sum_reduce`: ``out[t] = scale * sum_j x[t, j]`` with fp32 accumulation.

The sort is one kernel for small inputs (histogram, prefix sum and scatter in one program) and
two for larger ones (per-chunk histograms, then every chunk scatters from the prefix over the
chunks before it); nothing is read back to the host, so CUDA graphs capture it. The order inside
a segment is the slot order (stable), unlike vLLM's atomics.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from solbench.kernels.common import (as_rows, check_disjoint, check_dtype, check_out, kernel_op, next_pow2,
                                     require_device)

# ---- top-k gating softmax ------------------------------------------------------------------------


@triton.jit
def _topk_softmax_kernel(x_ptr, x_stride, w_ptr, ids_ptr, T, E,
                         TOP_K: tl.constexpr, KP: tl.constexpr, RENORM: tl.constexpr, BLOCK_T: tl.constexpr,
                         BLOCK_E: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_E)
    kc = tl.arange(0, KP)
    rmask = rows < T
    mask = rmask[:, None] & (cols[None, :] < E)
    # Rows past T load zeros (finite, no NaN from -inf - -inf); padded experts are -inf.
    x = tl.load(x_ptr + rows[:, None].to(tl.int64) * x_stride + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    x = tl.where(cols[None, :] < E, x, float("-inf"))
    mx = tl.max(x, axis=1)
    inv = 1.0 / tl.sum(tl.exp(x - mx[:, None]), axis=1)
    # Select on the logits (exp can merge two logits into one probability); the lowest index
    # wins a tie, as vLLM's kernel picks it.
    sel = x
    w = tl.zeros([BLOCK_T, KP], dtype=tl.float32)
    ids = tl.zeros([BLOCK_T, KP], dtype=tl.int32)
    for j in tl.static_range(TOP_K):
        best = tl.max(sel, axis=1)
        idx = tl.min(tl.where(sel == best[:, None], cols[None, :], BLOCK_E), axis=1)
        w = tl.where(kc[None, :] == j, (tl.exp(best - mx) * inv)[:, None], w)
        ids = tl.where(kc[None, :] == j, idx[:, None], ids)
        sel = tl.where(cols[None, :] == idx[:, None], float("-inf"), sel)
    if RENORM:
        w = w / tl.sum(w, axis=1)[:, None]
    omask = rmask[:, None] & (kc[None, :] < TOP_K)
    off = rows[:, None].to(tl.int64) * TOP_K + kc[None, :]
    tl.store(w_ptr + off, w, mask=omask)
    tl.store(ids_ptr + off, ids, mask=omask)


@kernel_op("solbench::moe_topk_softmax_", mutates_args=("topk_weights", "topk_ids"))
def _topk_softmax_op(gating_output: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor,
                     renormalize: bool) -> None:
    check_disjoint("topk_gating_softmax", (("topk_weights", topk_weights), ("topk_ids", topk_ids)),
                   (("gating_output", gating_output),))
    t, e = gating_output.shape
    k = topk_ids.shape[1]
    if t == 0:
        return
    be = next_pow2(e)
    # About 4k logits per program: whole rows, several rows per program on small E.
    bt = max(1, min(next_pow2(t), 4096 // be))
    _topk_softmax_kernel[(triton.cdiv(t, bt),)](gating_output, gating_output.stride(0), topk_weights, topk_ids, t, e,
                                                 TOP_K=k, KP=next_pow2(k), RENORM=renormalize, BLOCK_T=bt, BLOCK_E=be,
                                                 num_warps=4 if bt * be >= 2048 else 2)


@_topk_softmax_op.register_fake
def _topk_softmax_fake(gating_output, topk_weights, topk_ids, renormalize) -> None:
    return None


#: Largest expert count a row of the gating kernel holds in registers.
MAX_GATING_EXPERTS = 4096


def topk_gating_softmax(gating_output: torch.Tensor, top_k: int, renormalize: bool = False,
                        out: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(topk_weights fp32 [T, k], topk_ids int32 [T, k])``: ``p = softmax(gating_output[t])`` in
    fp32, the ``top_k`` largest ``p`` in descending order (equal logits: the lower expert index
    first), divided by their sum when ``renormalize``. ``gating_output`` is ``[T, E]`` (or any
    leading dims) in fp32, bf16 or fp16. ``out`` = (weights, ids) to write into."""
    what = "topk_gating_softmax"
    check_dtype(gating_output, (torch.float32, torch.bfloat16, torch.float16), what, "gating_output")
    x = as_rows(gating_output, what, "gating_output")
    t, e = x.shape
    if not 1 <= int(top_k) <= min(e, 64):
        raise ValueError(f"{what}: top_k={top_k} must be in [1, min(num_experts={e}, 64)]")
    if e > MAX_GATING_EXPERTS:
        raise ValueError(f"{what}: num_experts={e} is above the supported {MAX_GATING_EXPERTS}")
    shape = (*gating_output.shape[:-1], int(top_k))
    if out is None:
        out = (torch.empty(shape, dtype=torch.float32, device=x.device),
               torch.empty(shape, dtype=torch.int32, device=x.device))
    w, ids = out
    check_out(w, shape, torch.float32, x.device, what, "topk_weights")
    check_out(ids, shape, torch.int32, x.device, what, "topk_ids")
    if not (w.is_contiguous() and ids.is_contiguous()):
        raise ValueError(f"{what}: topk_weights and topk_ids must be contiguous")
    require_device(x, what)
    _topk_softmax_op(x, w.view(t, int(top_k)), ids.view(t, int(top_k)), bool(renormalize))
    return w, ids


# ---- expert sort: histogram, prefix sum, stable scatter --------------------------------------------


@dataclass(frozen=True)
class SortOptions:
    """Launch shape of the expert sort. ``sub``: slots ranked at once (a [sub, E] one-hot is built
    and scanned); ``chunk``: slots per program (a multiple of ``sub``); one program does
    everything when the input fits ``single_max`` slots."""

    sub: int
    chunk: int
    single: bool
    num_warps: int

    @staticmethod
    def pick(numel: int, num_experts: int) -> "SortOptions":
        ep = next_pow2(num_experts)
        # The one-hot and its running sum hold sub * E_pow2 int32 values each: ~8k keeps them in
        # registers (32k spilled on sm_90: 255 registers and 400 B of local memory).
        sub = max(16, min(256, 8192 // ep))
        sub = min(sub, max(16, next_pow2(numel)))
        single = numel <= 4 * sub
        # At most ~128 programs: each one reads the whole [chunks, E] histogram for its prefix.
        chunk = sub if single else max(sub, next_pow2(triton.cdiv(numel, 128)))
        return SortOptions(sub=sub, chunk=chunk, single=single, num_warps=8 if sub * ep >= 8192 else 4)


@triton.jit
def _onehot(ids, valid, ep: tl.constexpr):
    e = tl.arange(0, ep)
    return ((ids[:, None] == e[None, :]) & valid[:, None]).to(tl.int32)


@triton.jit
def _chunk_histogram_kernel(ids_ptr, n, hist_ptr, E, chunk, EP: tl.constexpr, SUB: tl.constexpr):
    pid = tl.program_id(0)
    acc = tl.zeros([EP], dtype=tl.int32)
    for s in range(0, chunk, SUB):
        offs = pid * chunk + s + tl.arange(0, SUB)
        ids = tl.load(ids_ptr + offs, mask=offs < n, other=-1)
        acc += tl.sum(_onehot(ids, (offs < n) & (ids >= 0) & (ids < E), EP), axis=0)
    tl.store(hist_ptr + pid * EP + tl.arange(0, EP), acc)


@triton.jit
def _sort_scatter_kernel(ids_ptr, n, hist_ptr, nchunks, sorted_ptr, expert_ids_ptr, counts_ptr, cumsum_ptr,
                         ntpp_ptr, E, chunk, BS: tl.constexpr, EP: tl.constexpr, SUB: tl.constexpr,
                         SINGLE: tl.constexpr, CB: tl.constexpr, JB: tl.constexpr, BB: tl.constexpr,
                         WRITE_EXPERT_IDS: tl.constexpr, WRITE_COUNTS: tl.constexpr, WRITE_CUMSUM: tl.constexpr,
                         WRITE_NTPP: tl.constexpr):
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    e = tl.arange(0, EP)
    emask = e < E
    # counts: every routed slot per expert; base: those of the chunks before this one.
    counts = tl.zeros([EP], dtype=tl.int32)
    base = tl.zeros([EP], dtype=tl.int32)
    if SINGLE:
        for s in range(0, n, SUB):
            offs = s + tl.arange(0, SUB)
            ids = tl.load(ids_ptr + offs, mask=offs < n, other=-1)
            counts += tl.sum(_onehot(ids, (offs < n) & (ids >= 0) & (ids < E), EP), axis=0)
    else:
        for c0 in range(0, nchunks, CB):
            c = c0 + tl.arange(0, CB)
            h = tl.load(hist_ptr + c[:, None] * EP + e[None, :], mask=(c < nchunks)[:, None], other=0)
            counts += tl.sum(h, axis=0)
            base += tl.sum(tl.where((c < pid)[:, None], h, 0), axis=0)
    padded = (counts + BS - 1) // BS * BS
    ends = tl.cumsum(padded, axis=0)
    starts = ends - padded
    total = tl.sum(padded, axis=0)
    # Stable scatter: a slot's rank among its expert's slots is its position in a running
    # one-hot prefix sum (slots of earlier sub-chunks counted in base).
    for s in range(0, chunk, SUB):
        offs = pid * chunk + s + tl.arange(0, SUB)
        inb = offs < n
        ids = tl.load(ids_ptr + offs, mask=inb, other=-1)
        oh = _onehot(ids, inb & (ids >= 0) & (ids < E), EP)
        rank = tl.sum(tl.cumsum(oh, axis=0) * oh, axis=1) - 1
        dest = tl.sum(oh * (starts + base)[None, :], axis=1) + rank
        tl.store(sorted_ptr + dest, offs, mask=tl.sum(oh, axis=1) > 0)
        base += tl.sum(oh, axis=0)
    if BS > 1:
        # Segment padding, experts shared round-robin among the programs: positions
        # starts[e] + counts[e] + j for j < padded[e] - counts[e] hold the sentinel n. The
        # [E, JB] tiles keep about 8k values live.
        mine = emask & (e % nprog == pid)
        pad = tl.where(mine, padded - counts, 0)
        for j0 in range(0, BS, JB):
            j = j0 + tl.arange(0, JB)
            tl.store(sorted_ptr + (starts + counts)[:, None] + j[None, :], tl.zeros([EP, JB], dtype=tl.int32) + n,
                     mask=j[None, :] < pad[:, None])
    if WRITE_EXPERT_IDS:
        # Block b belongs to the expert whose segment holds position b*BS: the number of segment
        # ends at or below it.
        used = total // BS
        for b0 in range(pid * BB, used, nprog * BB):
            b = b0 + tl.arange(0, BB)
            owner = tl.sum(((ends[None, :] <= b[:, None] * BS) & emask[None, :]).to(tl.int32), axis=1)
            tl.store(expert_ids_ptr + b, owner, mask=b < used)
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
    ep = next_pow2(num_experts)
    dummy = sorted_ids
    if opt.single:
        nchunks, hist = 1, dummy
    else:
        nchunks = triton.cdiv(n, opt.chunk)
        hist = torch.empty((nchunks, ep), dtype=torch.int32, device=flat.device)
        _chunk_histogram_kernel[(nchunks,)](flat, n, hist, num_experts, opt.chunk, EP=ep, SUB=opt.sub,
                                            num_warps=opt.num_warps)
    _sort_scatter_kernel[(nchunks,)](
        flat, n, hist, nchunks, sorted_ids, dummy if expert_ids is None else expert_ids,
        dummy if counts is None else counts, dummy if cumsum is None else cumsum, dummy if ntpp is None else ntpp,
        num_experts, max(n, 1) if opt.single else opt.chunk, BS=block_size, EP=ep, SUB=opt.sub, SINGLE=opt.single,
        CB=max(1, min(32, 8192 // ep)), JB=max(1, min(next_pow2(block_size), 8192 // ep)),
        BB=max(16, 8192 // ep), WRITE_EXPERT_IDS=expert_ids is not None,
        WRITE_COUNTS=counts is not None, WRITE_CUMSUM=cumsum is not None, WRITE_NTPP=ntpp is not None,
        num_warps=opt.num_warps)


def aligned_capacity(numel: int, num_experts: int, block_size: int) -> int:
    """Length of the padded ``sorted_token_ids`` (vLLM's cap): every expert pads at most
    block_size - 1 slots, and no layout is longer than one block per slot."""
    return min(numel * block_size, numel + num_experts * (block_size - 1))


#: Most experts the sort supports: per-expert counts and offsets live in one program's registers.
MAX_EXPERTS = 1024


def _check_ids(topk_ids, num_experts, block_size, what):
    check_dtype(topk_ids, (torch.int32,), what, "topk_ids")
    if not topk_ids.is_contiguous():
        raise ValueError(f"{what}: topk_ids must be contiguous")
    if not 1 <= int(num_experts) <= MAX_EXPERTS:
        raise ValueError(f"{what}: num_experts={num_experts} must be in [1, {MAX_EXPERTS}]")
    if not 1 <= int(block_size) <= 1024:
        raise ValueError(f"{what}: block_size={block_size} must be in [1, 1024]")
    if topk_ids.numel() >= 2 ** 31 - int(num_experts) * int(block_size):
        raise ValueError(f"{what}: {topk_ids.numel()} slots do not fit int32 positions")
    require_device(topk_ids, what)


@kernel_op("solbench::moe_align_block_size_", mutates_args=("sorted_token_ids", "expert_ids", "num_tokens_post_pad"))
def _align_op(topk_ids: torch.Tensor, num_experts: int, block_size: int, sorted_token_ids: torch.Tensor,
              expert_ids: torch.Tensor, num_tokens_post_pad: torch.Tensor) -> None:
    check_disjoint("moe_align_block_size", (("sorted_token_ids", sorted_token_ids), ("expert_ids", expert_ids),
                                            ("num_tokens_post_pad", num_tokens_post_pad)), (("topk_ids", topk_ids),))
    launch_sort(topk_ids, num_experts, block_size, sorted_token_ids, expert_ids=expert_ids, ntpp=num_tokens_post_pad)


@_align_op.register_fake
def _align_fake(topk_ids, num_experts, block_size, sorted_token_ids, expert_ids, num_tokens_post_pad) -> None:
    return None


def moe_align_block_size(topk_ids: torch.Tensor, num_experts: int, block_size: int,
                         out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
    """vLLM's aligned layout of ``topk_ids [T, k]`` int32: ``(sorted_token_ids, expert_ids,
    num_tokens_post_pad)`` int32 of lengths :func:`aligned_capacity`, ceil(that / block_size), 1.

    Expert e's flat slots (t*k + j, in increasing order) fill its segment, segments in ascending
    expert order, each padded with the sentinel ``T*k`` to a multiple of ``block_size``;
    ``expert_ids[b]`` is the expert of block b. Entries at or past ``num_tokens_post_pad`` (and
    the blocks there) are left unwritten: no consumer reads them."""
    what = "moe_align_block_size"
    _check_ids(topk_ids, num_experts, block_size, what)
    cap = aligned_capacity(topk_ids.numel(), int(num_experts), int(block_size))
    shapes = ((cap,), (triton.cdiv(cap, int(block_size)),), (1,))
    if out is None:
        out = tuple(torch.empty(s, dtype=torch.int32, device=topk_ids.device) for s in shapes)
    for t, s, name in zip(out, shapes, ("sorted_token_ids", "expert_ids", "num_tokens_post_pad")):
        check_out(t, s, torch.int32, topk_ids.device, what, name)
        if not t.is_contiguous():
            raise ValueError(f"{what}: {name} must be contiguous")
    _align_op(topk_ids, int(num_experts), int(block_size), *out)
    return out


@kernel_op("solbench::moe_count_and_sort_", mutates_args=("sorted_token_ids", "expert_token_counts", "cumsum"))
def _count_sort_op(topk_ids: torch.Tensor, num_experts: int, sorted_token_ids: torch.Tensor,
                   expert_token_counts: torch.Tensor, cumsum: torch.Tensor) -> None:
    check_disjoint("moe_count_and_sort", (("sorted_token_ids", sorted_token_ids), ("expert_token_counts",
                                          expert_token_counts), ("cumsum", cumsum)), (("topk_ids", topk_ids),))
    launch_sort(topk_ids, num_experts, 1, sorted_token_ids, counts=expert_token_counts, cumsum=cumsum)


@_count_sort_op.register_fake
def _count_sort_fake(topk_ids, num_experts, sorted_token_ids, expert_token_counts, cumsum) -> None:
    return None


def moe_count_and_sort(topk_ids: torch.Tensor, num_experts: int,
                       out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None):
    """The compact expert sort of ``topk_ids [T, k]`` int32: ``(sorted_token_ids [T*k],
    expert_token_counts [E], cumsum [E+1])`` int32. ``sorted_token_ids`` lists the flat slots
    t*k + j stably sorted by expert; ``cumsum`` is the exclusive prefix sum of the counts, its
    last entry T*k (ids outside [0, E) are dropped and leave the tail of sorted_token_ids
    unwritten)."""
    what = "moe_count_and_sort"
    _check_ids(topk_ids, num_experts, 1, what)
    e = int(num_experts)
    shapes = ((topk_ids.numel(),), (e,), (e + 1,))
    if out is None:
        out = tuple(torch.empty(s, dtype=torch.int32, device=topk_ids.device) for s in shapes)
    for t, s, name in zip(out, shapes, ("sorted_token_ids", "expert_token_counts", "cumsum")):
        check_out(t, s, torch.int32, topk_ids.device, what, name)
        if not t.is_contiguous():
            raise ValueError(f"{what}: {name} must be contiguous")
    _count_sort_op(topk_ids, e, *out)
    return out


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


@kernel_op("solbench::moe_sum_reduce_", mutates_args=("out",))
def _sum_reduce_op(x: torch.Tensor, out: torch.Tensor, scale: float) -> None:
    check_disjoint("moe_sum_reduce", (("out", out),), (("expert_outputs", x),))
    t, k, h = x.shape
    if t == 0 or h == 0:
        return
    bh = min(1024, next_pow2(h))
    bt = max(1, min(next_pow2(t), 2048 // bh))
    _sum_reduce_kernel[(triton.cdiv(t, bt), triton.cdiv(h, bh))](x, x.stride(0), x.stride(1), out, out.stride(0),
                                                                 t, h, k, float(scale), BLOCK_T=bt, BLOCK_H=bh,
                                                                 num_warps=4)


@_sum_reduce_op.register_fake
def _sum_reduce_fake(x, out, scale) -> None:
    return None


def moe_sum_reduce(expert_outputs: torch.Tensor, routed_scaling_factor: float = 1.0,
                   out: torch.Tensor | None = None) -> torch.Tensor:
    """``out[t] = routed_scaling_factor * sum_j expert_outputs[t, j]`` for ``expert_outputs
    [T, k, H]`` (bf16, fp16 or fp32; the hidden dim contiguous), fp32 accumulation, one rounding
    to ``out``'s dtype (default: the input's)."""
    what = "moe_sum_reduce"
    check_dtype(expert_outputs, (torch.bfloat16, torch.float16, torch.float32), what, "expert_outputs")
    if expert_outputs.dim() != 3:
        raise ValueError(f"{what}: expert_outputs must be [tokens, top_k, hidden], got {tuple(expert_outputs.shape)}")
    t, k, h = expert_outputs.shape
    if h > 1 and expert_outputs.stride(2) != 1:
        raise ValueError(f"{what}: expert_outputs must be contiguous in its hidden dim")
    if out is None:
        out = torch.empty((t, h), dtype=expert_outputs.dtype, device=expert_outputs.device)
    else:
        check_out(out, (t, h), out.dtype, expert_outputs.device, what)
        check_dtype(out, (torch.bfloat16, torch.float16, torch.float32), what, "out")
        if h > 1 and out.stride(1) != 1:
            raise ValueError(f"{what}: out must be contiguous in its hidden dim")
    require_device(expert_outputs, what)
    _sum_reduce_op(expert_outputs, out, float(routed_scaling_factor))
    return out
