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

The sort is one kernel up to ~16k slots (every program histograms all the slots, prefix-sums
the padded counts and scatters its own chunk) and two above (per-chunk histograms first); no
torch fill runs beside them and nothing is read back to the host, so CUDA graphs capture it.
The order inside a segment is the slot order (stable), unlike vLLM's atomics.

Custom ops ``torch.ops.solbench.topk_gating_softmax``, ``moe_align_block_size``,
``moe_count_and_sort`` and ``moe_sum_reduce`` (functional) with their ``.out`` forms; off CUDA they
compute with torch. The Triton kernels are in ``_routing_triton`` (imported at the first launch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from solbench.kernels.common import (as_rows, check_disjoint, check_dtype, check_out, check_warps, env_fields,
                                     functional_op, kernel_op, next_pow2)

# ---- top-k gating softmax ------------------------------------------------------------------------


def _topk_softmax_eager(gating_output, topk_weights, topk_ids, top_k, renormalize) -> None:
    """The torch formulation (off CUDA): select on the fp32 logits, equal logits to the lower
    expert index (a stable descending sort), as the kernel does."""
    check_disjoint("topk_gating_softmax", (("topk_weights", topk_weights), ("topk_ids", topk_ids)),
                   (("gating_output", gating_output),))
    x = gating_output.float()
    idx = torch.sort(x, dim=-1, descending=True, stable=True).indices[:, :top_k]
    w = torch.softmax(x, dim=-1).gather(1, idx)
    if renormalize:
        w = w / w.sum(dim=-1, keepdim=True)
    topk_weights.copy_(w)
    topk_ids.copy_(idx)


@kernel_op("solbench::topk_gating_softmax.out", mutates_args=("topk_weights", "topk_ids"), eager=_topk_softmax_eager)
def _topk_softmax_op(gating_output: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor, top_k: int,
                     renormalize: bool) -> None:
    from solbench.kernels.moe._routing_triton import launch_topk_softmax

    check_disjoint("topk_gating_softmax", (("topk_weights", topk_weights), ("topk_ids", topk_ids)),
                   (("gating_output", gating_output),))
    launch_topk_softmax(gating_output, topk_weights, topk_ids, renormalize)


@_topk_softmax_op.register_fake
def _topk_softmax_fake(gating_output, topk_weights, topk_ids, top_k, renormalize) -> None:
    return None


functional_op("solbench::topk_gating_softmax", _topk_softmax_op,
              lambda x, top_k, renormalize: (x.new_empty((x.shape[0], top_k), dtype=torch.float32),
                                             x.new_empty((x.shape[0], top_k), dtype=torch.int32)))


#: Largest expert count a row of the gating kernel holds in registers.
MAX_GATING_EXPERTS = 4096
#: The launch fields ``SOLBENCH_TOPK_SOFTMAX`` sets.
TOPK_SOFTMAX_FIELDS = ("block_t", "num_warps")


def topk_softmax_launch(num_tokens: int, experts_padded: int) -> tuple[int, int]:
    """(rows per program, warps) of the gating kernel for ``num_tokens`` rows of
    ``experts_padded`` (a power of two) logits. A warp per row (the k rounds are a latency chain
    of warp reductions): up to 4096 tokens of at most 128 experts, four rows in four warps; past
    that, or from 256 experts (to 512), one row in a one-warp program. In a program of several
    warps, Triton's layout puts 128 columns in a warp (4 fp32 a thread), so a row of 256 spans two
    warps and every round reduces through shared memory (21 barriers on sm_90, none in one warp);
    several rows a warp serialise their chains (docs/DECISIONS.md has the measurements). Past 512
    experts, up to 2048 logits a program over up to 8 warps. ``SOLBENCH_TOPK_SOFTMAX=block_t,num_warps``
    overrides it for GPU A/B runs (read at each call)."""
    forced = env_fields("SOLBENCH_TOPK_SOFTMAX", TOPK_SOFTMAX_FIELDS, complete=True)
    if forced:
        bt = forced["block_t"]
        if not (bt >= 1 and bt & (bt - 1) == 0):
            raise ValueError(f"SOLBENCH_TOPK_SOFTMAX: block_t must be a power of two >= 1 (got {bt})")
        return bt, check_warps("SOLBENCH_TOPK_SOFTMAX", forced["num_warps"])
    if experts_padded <= 512 and (num_tokens > 4096 or experts_padded >= 256):
        return 1, 1
    bt = max(1, min(next_pow2(num_tokens), 4, 2048 // experts_padded))
    return bt, max(1, min(8 if experts_padded >= 1024 else 4, bt * experts_padded // 128))


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
    _topk_softmax_op(x, w.view(t, int(top_k)), ids.view(t, int(top_k)), int(top_k), bool(renormalize))
    return w, ids


# ---- expert sort: histogram, prefix sum, stable scatter --------------------------------------------


@dataclass(frozen=True)
class SortOptions:
    """Launch shape of the expert sort. ``chunk``: slots per program (at most ~128 programs);
    ``sub``: slots ranked at once by a [sub, sub] comparison. ``single``: one launch, every
    program histograms all the slots itself, ``hsub`` per load (cheap up to ~16k slots); else a
    first launch writes per-chunk histograms that every program of the second one reads."""

    sub: int
    chunk: int
    single: bool
    num_warps: int
    hsub: int = 8192

    @staticmethod
    def pick(numel: int, num_experts: int) -> "SortOptions":
        sub = max(16, min(64, next_pow2(numel)))
        chunk = max(sub, next_pow2(-(-numel // 128)))
        return SortOptions(sub=sub, chunk=chunk, single=numel <= 16384, num_warps=4 if numel <= 4096 else 8,
                           hsub=max(16, min(8192, next_pow2(numel))))


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


def _expert_sort(topk_ids, num_experts: int, block_size: int):
    """The sort in torch: ``(order, key, counts, offsets)``: the flat slots stably sorted by expert
    (ids outside [0, E) keyed E, last), each slot's key, the counts [E] and the exclusive prefix
    sum [E+1] of the counts padded to ``block_size``."""
    flat = topk_ids.reshape(-1).long()
    key = torch.where((flat >= 0) & (flat < num_experts), flat, num_experts)
    counts = torch.zeros(num_experts + 1, dtype=torch.long, device=flat.device)
    counts = counts.scatter_add_(0, key, torch.ones_like(key))[:num_experts]
    offsets = torch.zeros(num_experts + 1, dtype=torch.long, device=flat.device)
    offsets[1:] = torch.cumsum((counts + block_size - 1) // block_size * block_size, 0)
    return torch.sort(key, stable=True).indices, key, counts, offsets


def _align_eager(topk_ids, num_experts, block_size, sorted_token_ids, expert_ids, num_tokens_post_pad) -> None:
    """The torch formulation (off CUDA); it also fills what the kernel leaves unwritten (the
    sentinel past ``num_tokens_post_pad``, expert 0 for the blocks there)."""
    check_disjoint("moe_align_block_size", (("sorted_token_ids", sorted_token_ids), ("expert_ids", expert_ids),
                                            ("num_tokens_post_pad", num_tokens_post_pad)), (("topk_ids", topk_ids),))
    order, key, counts, offsets = _expert_sort(topk_ids, num_experts, block_size)
    n = key.numel()
    starts = torch.zeros(num_experts + 2, dtype=torch.long, device=key.device)
    starts[1:-1] = torch.cumsum(counts, 0)
    ks = key[order]
    keep = ks < num_experts
    dest = offsets[ks] + torch.arange(n, device=key.device) - starts[ks]
    sorted_token_ids.fill_(n)
    sorted_token_ids[dest[keep]] = order[keep].to(torch.int32)
    total = offsets[num_experts]
    block_start = torch.arange(expert_ids.numel(), device=key.device) * block_size
    owner = torch.searchsorted(offsets[1:], block_start, right=True)
    expert_ids.copy_(torch.where(block_start < total, owner, 0))
    num_tokens_post_pad.copy_(offsets[num_experts:])


@kernel_op("solbench::moe_align_block_size.out", mutates_args=("sorted_token_ids", "expert_ids",
                                                               "num_tokens_post_pad"), eager=_align_eager)
def _align_op(topk_ids: torch.Tensor, num_experts: int, block_size: int, sorted_token_ids: torch.Tensor,
              expert_ids: torch.Tensor, num_tokens_post_pad: torch.Tensor) -> None:
    from solbench.kernels.moe._routing_triton import launch_sort

    check_disjoint("moe_align_block_size", (("sorted_token_ids", sorted_token_ids), ("expert_ids", expert_ids),
                                            ("num_tokens_post_pad", num_tokens_post_pad)), (("topk_ids", topk_ids),))
    launch_sort(topk_ids, num_experts, block_size, sorted_token_ids, expert_ids=expert_ids, ntpp=num_tokens_post_pad)


@_align_op.register_fake
def _align_fake(topk_ids, num_experts, block_size, sorted_token_ids, expert_ids, num_tokens_post_pad) -> None:
    return None


def _align_shapes(topk_ids, num_experts: int, block_size: int):
    cap = aligned_capacity(topk_ids.numel(), num_experts, block_size)
    return (cap,), (-(-cap // block_size),), (1,)


functional_op("solbench::moe_align_block_size", _align_op,
              lambda ids, e, bs: tuple(ids.new_empty(s) for s in _align_shapes(ids, e, bs)))


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
    shapes = _align_shapes(topk_ids, int(num_experts), int(block_size))
    if out is None:
        out = tuple(torch.empty(s, dtype=torch.int32, device=topk_ids.device) for s in shapes)
    for t, s, name in zip(out, shapes, ("sorted_token_ids", "expert_ids", "num_tokens_post_pad")):
        check_out(t, s, torch.int32, topk_ids.device, what, name)
        if not t.is_contiguous():
            raise ValueError(f"{what}: {name} must be contiguous")
    _align_op(topk_ids, int(num_experts), int(block_size), *out)
    return out


def _count_sort_eager(topk_ids, num_experts, sorted_token_ids, expert_token_counts, cumsum) -> None:
    """The torch formulation (off CUDA); the dropped slots (ids outside [0, E)) fill the tail."""
    check_disjoint("moe_count_and_sort", (("sorted_token_ids", sorted_token_ids), ("expert_token_counts",
                                          expert_token_counts), ("cumsum", cumsum)), (("topk_ids", topk_ids),))
    order, _, counts, offsets = _expert_sort(topk_ids, num_experts, 1)
    sorted_token_ids.copy_(order)
    expert_token_counts.copy_(counts)
    cumsum.copy_(offsets)


@kernel_op("solbench::moe_count_and_sort.out", mutates_args=("sorted_token_ids", "expert_token_counts", "cumsum"),
           eager=_count_sort_eager)
def _count_sort_op(topk_ids: torch.Tensor, num_experts: int, sorted_token_ids: torch.Tensor,
                   expert_token_counts: torch.Tensor, cumsum: torch.Tensor) -> None:
    from solbench.kernels.moe._routing_triton import launch_sort

    check_disjoint("moe_count_and_sort", (("sorted_token_ids", sorted_token_ids), ("expert_token_counts",
                                          expert_token_counts), ("cumsum", cumsum)), (("topk_ids", topk_ids),))
    launch_sort(topk_ids, num_experts, 1, sorted_token_ids, counts=expert_token_counts, cumsum=cumsum)


@_count_sort_op.register_fake
def _count_sort_fake(topk_ids, num_experts, sorted_token_ids, expert_token_counts, cumsum) -> None:
    return None


functional_op("solbench::moe_count_and_sort", _count_sort_op,
              lambda ids, e: (ids.new_empty(ids.numel()), ids.new_empty(e), ids.new_empty(e + 1)))


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


def _sum_reduce_eager(x, out, scale) -> None:
    """The torch formulation (off CUDA): fp32 sum and scale, one rounding."""
    check_disjoint("moe_sum_reduce", (("out", out),), (("expert_outputs", x),))
    out.copy_(x.float().sum(1) * scale)


@kernel_op("solbench::moe_sum_reduce.out", mutates_args=("out",), eager=_sum_reduce_eager)
def _sum_reduce_op(x: torch.Tensor, out: torch.Tensor, scale: float) -> None:
    from solbench.kernels.moe._routing_triton import launch_sum_reduce

    check_disjoint("moe_sum_reduce", (("out", out),), (("expert_outputs", x),))
    launch_sum_reduce(x, out, scale)


@_sum_reduce_op.register_fake
def _sum_reduce_fake(x, out, scale) -> None:
    return None


functional_op("solbench::moe_sum_reduce", _sum_reduce_op,
              lambda x, scale: (x.new_empty((x.shape[0], x.shape[2])),))


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
    _sum_reduce_op(expert_outputs, out, float(routed_scaling_factor))
    return out
