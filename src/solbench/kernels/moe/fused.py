"""The MoE expert FFN as sorted-token grouped GEMMs (the vLLM / SGLang ``fused_moe`` design), in
bf16 and in DeepSeek-style block-scaled fp8.

    out[t] = sum_j topk_weights[t, j] * W2[e] (silu(g) * u),   [g | u] = W1[e] x[t],  e = topk_ids[t, j]

Pipeline (no host sync; the grids are sized by the worst case and idle blocks exit):

1. sort: the T*k flat slots grouped by expert into ``block_m``-padded segments
   (the launcher of :func:`~solbench.kernels.moe.routing.moe_align_block_size`), with each block's expert;
2. GEMM1: each program multiplies ``block_m`` gathered rows of x by the gate and the up columns
   of its expert's w1 (two accumulators, or with ``GemmConfig.gate_up_tile`` one B tile holding
   both, interleaved) and writes ``silu(g) * u`` per slot (fp8: quantized per 1x128 group in the
   epilogue, so GEMM2 runs on fp8 tensor cores);
3. GEMM2: the slot rows times w2, scaled by the router weight, then either added atomically into
   an fp32 ``out`` or stored per slot and summed over the top-k by
   :func:`~solbench.kernels.moe.routing.moe_sum_reduce`.

The sorted path's tiles come from the tuned table for the layer shape and rows-per-expert bucket
where ``solbench tune`` wrote one for this GPU (:func:`tuned_options`), else from the bucket rule
(:func:`default_options`). Decode (a handful of tokens) skips the sort: every slot is its own one-row block reading its
expert's weights directly (``direct``), so two GEMM launches stream the touched experts' weights.

Custom ops ``torch.ops.solbench.fused_moe`` / ``fp8_block_fused_moe`` (functional: fp32 / bf16
``out``) and their ``.out`` forms; off CUDA they compute with torch in fp32, as the operators'
references do. The Triton kernels are in ``_fused_triton`` (imported at the first launch).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn.functional as F

from solbench.kernels.common import (check_disjoint, check_dtype, check_out, env_replaced, functional_op,
                                     kernel_op, next_pow2, sm_count)
from solbench.kernels.moe.routing import MAX_EXPERTS, _expert_sort

#: fp8 block size of the weights (128x128) and of the activation groups (1x128).
FP8_BLOCK = 128
FP8_MAX = 448.0


@dataclass(frozen=True)
class GemmConfig:
    """One GEMM's tiles. ``gate_up_tile`` (GEMM1 on tensor-core tiles): the gate and up columns
    as one interleaved B tile, one product twice as wide a K step instead of two (1), or two
    products (0). ``persistent`` (sorted path): that many programs an SM (1-4) walk the tiles, each
    as one software pipeline over every (tile, K step), so the next tile's first loads are in
    flight during this tile's epilogue, as the block-fp8 GEMM's flattened loop does; 0: one
    program a tile. Off until a GPU A/B (``SOLBENCH_MOE_GEMM1=persistent=1``)."""

    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3
    gate_up_tile: int = 0
    persistent: int = 0


@dataclass(frozen=True)
class FusedMoeOptions:
    """Launch options of the fused MoE.

    ``direct`` (decode): no sort; GEMM1 runs one program per (slot, N tile) and GEMM2 one per
    (token, N tile), the latter summing the token's top-k experts in registers, so the whole
    layer is two launches and writes ``out`` once. ``block_m`` is then 1.
    Otherwise ``combine`` says how GEMM2 sums the top-k: ``"sum"`` (vLLM's design) stores
    per-slot rows in the activation dtype and runs the top-k sum; ``"atomic"`` adds into an fp32
    target (``out`` itself when fp32, else a scratch cast at the end) that GEMM1's programs zero:
    no per-slot round trip, but T*k*H atomic adds."""

    gemm1: GemmConfig
    gemm2: GemmConfig
    direct: bool = False
    combine: str = "atomic"

    def __post_init__(self):
        if self.combine not in ("atomic", "sum"):
            raise ValueError(f"FusedMoeOptions.combine={self.combine!r}: expected 'atomic' or 'sum'")
        if self.gemm1.block_m != self.gemm2.block_m:
            raise ValueError("FusedMoeOptions: both GEMMs share the sorted layout, so block_m must match")
        if self.direct != (self.gemm1.block_m == 1):
            raise ValueError("FusedMoeOptions: block_m=1 is the direct (decode) path and only it")
        for g in (self.gemm1, self.gemm2):
            if g.block_m not in (1, 16, 32, 64, 128, 256) or min(g.block_n, g.block_k) < 16 \
                    or g.block_n & (g.block_n - 1) or g.block_k & (g.block_k - 1):
                raise ValueError(f"FusedMoeOptions: {g} needs block_m 1 (direct) or a power of two in [16, 256] "
                                 "(tensor-core tiles) and power-of-two block_n, block_k >= 16")
            if g.gate_up_tile not in (0, 1) or not 0 <= g.persistent <= 4:
                raise ValueError(f"FusedMoeOptions: {g}: gate_up_tile is 0 or 1, persistent 0 (off) to 4 "
                                 "(programs an SM)")
            if g.persistent and self.direct:
                raise ValueError(f"FusedMoeOptions: {g}: persistent tiles are the sorted path's (not direct)")


#: Token counts up to this take the direct path: with a handful of tokens a top-k rarely names an
#: expert twice, so streaming per slot reads each touched expert about once, and the sort's
#: launches are saved.
DIRECT_MAX_TOKENS = 4


def _narrow_for_sms(block_n: int, rows: int, n: int, sm_count: int | None, floor: int = 16) -> int:
    """Halve a decode launch's N tile while it has fewer than two programs per SM: a
    bandwidth-bound launch needs every SM loading."""
    while sm_count and block_n > floor and rows * -(-n // block_n) < 2 * sm_count:
        block_n //= 2
    return block_n


def _decode_k(block_n: int, k: int, elements: int = 8192) -> int:
    return max(128, min(1024, elements // block_n, next_pow2(k)))


def default_options(num_tokens: int, num_experts: int, hidden: int, inter: int, top_k: int, fp8: bool,
                    sm_count: int | None = None) -> FusedMoeOptions:
    """Tiles per (E, N, K, token bucket). The bucket is the mean routed rows per expert, which sets
    how tall a useful block is; fp8 takes 128-wide K steps (one scale per step) and, on the sorted
    path, 128-wide GEMM1 columns (one activation group per tile, quantized in the epilogue)."""
    combine = "sum"  # the atomic combine measured 1.33x slower on fp8 MoE #0 (docs/DECISIONS.md)
    if num_tokens <= DIRECT_MAX_TOKENS:
        # Decode: N tiles narrow enough to give every SM programs, K tiles long enough that each
        # weight load moves ~8k elements (several 128-groups on fp8).
        n_slots = num_tokens * top_k
        bn1 = _narrow_for_sms(64, n_slots, inter, sm_count)
        bn2 = _narrow_for_sms(128, num_tokens, hidden, sm_count)
        # fp8: GEMM1 in 4 warps (more programs per SM) and GEMM2 loads of 16k one-byte weights,
        # the same bytes per load as bf16 (docs/DECISIONS.md: fp8 decode A/B).
        g1 = GemmConfig(1, bn1, _decode_k(bn1, hidden), group_m=1, num_warps=4 if fp8 else 8, num_stages=3)
        g2 = GemmConfig(1, bn2, _decode_k(bn2, inter, 16384 if fp8 else 8192), group_m=1, num_warps=4,
                        num_stages=3)
        return FusedMoeOptions(g1, g2, direct=True, combine=combine)
    per_expert = num_tokens * top_k / num_experts
    if fp8:
        # 64 rows at most: GEMM1 holds two 128-wide accumulators plus each K step's scaled
        # partial product; 128-wide K steps carry one scale each.
        bm = 16 if per_expert <= 16 else 32 if per_expert <= 48 else 64
        warps = 4 if bm <= 32 else 8
        # One B tile for gate and up: each K step's block-scaled product must finish before its
        # rescale, so two products meant two waits a step (sm_90 code).
        g1 = GemmConfig(bm, FP8_BLOCK, FP8_BLOCK, group_m=1, num_warps=warps, num_stages=3, gate_up_tile=1)
        g2 = GemmConfig(bm, 128, FP8_BLOCK, group_m=1, num_warps=warps, num_stages=3)
        return FusedMoeOptions(g1, g2, direct=False, combine=combine)
    # (block_m, GEMM1 N tile per accumulator, GEMM2 N tile, block_k, warps, stages) by the mean
    # rows per expert: taller and wider tiles as experts fill up (the shape of vLLM's tuned H100
    # tables). GEMM1's two accumulators (gate, up) make its N tile half of GEMM2's; K tiles are 64
    # where a stage would pass ~40 KB of shared memory.
    if per_expert <= 8:
        bm, bn1, bn2, bk, warps, stages = 16, 32, 64, 128, 4, 4
    elif per_expert <= 24:
        bm, bn1, bn2, bk, warps, stages = 16, 64, 128, 128, 4, 3
    elif per_expert <= 48:
        bm, bn1, bn2, bk, warps, stages = 32, 128, 256, 64, 8, 3
    elif per_expert <= 96:
        bm, bn1, bn2, bk, warps, stages = 64, 128, 256, 64, 8, 4
    else:
        bm, bn1, bn2, bk, warps, stages = 128, 128, 256, 64, 8, 4
    g1 = GemmConfig(bm, bn1, bk, group_m=1, num_warps=warps, num_stages=stages)
    g2 = GemmConfig(bm, bn2, bk, group_m=1, num_warps=warps, num_stages=stages)
    return FusedMoeOptions(g1, g2, direct=False, combine=combine)


# ---- validation ------------------------------------------------------------------------------------

def _check_routing(what, topk_weights, topk_ids, t, dev):
    check_dtype(topk_ids, (torch.int32,), what, "topk_ids")
    check_dtype(topk_weights, (torch.float32,), what, "topk_weights")
    if topk_ids.dim() != 2 or topk_ids.shape[0] != t or tuple(topk_weights.shape) != tuple(topk_ids.shape):
        raise ValueError(f"{what}: topk_ids and topk_weights must both be [T={t}, top_k], got "
                         f"{tuple(topk_ids.shape)} and {tuple(topk_weights.shape)}")
    for name, v in (("topk_ids", topk_ids), ("topk_weights", topk_weights)):
        if not v.is_contiguous() or v.device != dev:
            raise ValueError(f"{what}: {name} must be contiguous and on {dev}")


def _check_weights(what, x, w1, w2):
    if x.dim() != 2 or w1.dim() != 3 or w2.dim() != 3:
        raise ValueError(f"{what}: expected hidden_states [T, H], w1 [E, 2I, H], w2 [E, H, I], got "
                         f"{tuple(x.shape)}, {tuple(w1.shape)}, {tuple(w2.shape)}")
    e, two_i, h = w1.shape
    if h != x.shape[1] or two_i % 2 or tuple(w2.shape) != (e, h, two_i // 2):
        raise ValueError(f"{what}: shapes do not agree: hidden_states {tuple(x.shape)}, w1 {tuple(w1.shape)} "
                         f"(needs [E, 2I, H]), w2 {tuple(w2.shape)} (needs [E, H, I])")
    for name, v in (("hidden_states", x), ("w1", w1), ("w2", w2)):
        if v.numel() and v.stride(-1) != 1:
            raise ValueError(f"{what}: {name} must be contiguous in its last dimension")
    if not 1 <= e <= MAX_EXPERTS:
        raise ValueError(f"{what}: num_experts={e} must be in [1, {MAX_EXPERTS}] (the expert sort keeps one "
                         f"count per expert in registers)")


#: ``SOLBENCH_MOE_GEMM1`` / ``SOLBENCH_MOE_GEMM2`` (sorted path) and ``SOLBENCH_MOE_DECODE1`` /
#: ``SOLBENCH_MOE_DECODE2`` (direct decode path) ``= name=value,...``: fields of :class:`GemmConfig`
#: that replace the launch's (the tuned table's or the heuristic's) for that GEMM of that path in
#: every call without explicit options,
#: so one run can A/B both paths from the command line (read at each call). block_m must still
#: agree between the GEMMs and stay 1 on the direct path (:class:`FusedMoeOptions` checks).
GEMM_ENVS = {False: ("SOLBENCH_MOE_GEMM1", "SOLBENCH_MOE_GEMM2"), True: ("SOLBENCH_MOE_DECODE1", "SOLBENCH_MOE_DECODE2")}


def env_override(opt: FusedMoeOptions) -> FusedMoeOptions:
    """``opt`` with the GEMM fields its path's :data:`GEMM_ENVS` set (unchanged when unset)."""
    g1, g2 = (env_replaced(env, g) for env, g in zip(GEMM_ENVS[opt.direct], (opt.gemm1, opt.gemm2)))
    if (g1, g2) == (opt.gemm1, opt.gemm2):
        return opt
    return FusedMoeOptions(g1, g2, direct=opt.direct, combine=opt.combine)


# ---- tuned tables (solbench tune) ------------------------------------------------------------------

def tuned_key(num_experts: int, hidden: int, inter: int, top_k: int, fp8: bool) -> str:
    """The tuned table's kernel key of one MoE layer shape; its ``n`` is the bucket of routed rows
    per expert (:func:`rows_bucket`). Each key is its own ``solbench tune`` family, whose
    candidates (:func:`tune_candidates`) need the layer's dimensions."""
    return f"fused_moe:{'fp8' if fp8 else 'bf16'}:E{num_experts}:H{hidden}:I{inter}:k{top_k}"


def rows_bucket(num_tokens: int, top_k: int, num_experts: int) -> int:
    """Mean routed rows per expert, rounded up to a power of two: the quantity the tiles follow."""
    return next_pow2(-(-num_tokens * top_k // num_experts))


def options_config(opt: FusedMoeOptions) -> dict:
    """``opt`` as a tuned table's config (JSON)."""
    return {"gemm1": asdict(opt.gemm1), "gemm2": asdict(opt.gemm2), "combine": opt.combine}


def options_of_config(cfg: dict) -> FusedMoeOptions:
    """A tuned table's config as the sorted path's options (validated as any options are)."""
    return FusedMoeOptions(GemmConfig(**cfg["gemm1"]), GemmConfig(**cfg["gemm2"]), direct=False,
                           combine=cfg.get("combine", "sum"))


def tune_candidates(bucket: int, num_experts: int, hidden: int, inter: int, top_k: int, fp8: bool,
                    sm_count: int | None = None) -> list[FusedMoeOptions]:
    """Sorted-path launches worth timing against :func:`default_options` for a rows-per-expert
    bucket: half and double the rows a block, one stage more or less, 4 warps, the gate and up
    columns as one tile (bf16; fp8 has it already), GEMM2's N tile halved, each GEMM persistent,
    and the atomic top-k combine. Invalid combinations are left out."""
    tokens = max(DIRECT_MAX_TOKENS + 1, -(-bucket * num_experts // top_k))
    base = default_options(tokens, num_experts, hidden, inter, top_k, fp8, sm_count)
    g1, g2 = base.gemm1, base.gemm2
    out = []

    def add(a: GemmConfig, b: GemmConfig, combine: str = base.combine):
        try:
            out.append(FusedMoeOptions(a, b, direct=False, combine=combine))
        except ValueError:
            pass

    for bm in (g1.block_m // 2, g1.block_m * 2):
        if 16 <= bm <= (64 if fp8 else 128):
            add(replace(g1, block_m=bm), replace(g2, block_m=bm))
    for d in (-1, 1):
        if g1.num_stages + d >= 2:
            add(replace(g1, num_stages=g1.num_stages + d), replace(g2, num_stages=g2.num_stages + d))
    add(replace(g1, num_warps=4), replace(g2, num_warps=4))
    if not fp8:
        add(replace(g1, gate_up_tile=1), g2)
    if g2.block_n >= 32:
        add(g1, replace(g2, block_n=g2.block_n // 2))
    add(replace(g1, persistent=1, num_stages=min(g1.num_stages, 3)), g2)
    add(g1, replace(g2, persistent=2, num_stages=min(g2.num_stages, 3), block_n=min(g2.block_n, 128)))
    add(g1, g2, "atomic" if base.combine == "sum" else "sum")
    unique = []
    for o in out:
        if o != base and o not in unique:
            unique.append(o)
    return unique


def tuned_options(num_tokens: int, num_experts: int, hidden: int, inter: int, top_k: int, fp8: bool,
                  sm_count: int | None) -> FusedMoeOptions:
    """The launch of a call: on the sorted path, the tuned table's entry for its layer shape and
    rows-per-expert bucket when this device has one (``solbench tune``), else :func:`default_options`."""
    base = default_options(num_tokens, num_experts, hidden, inter, top_k, fp8, sm_count)
    if base.direct:
        return base
    from solbench.runtime import tuning

    def generate(bucket: int, *_) -> list[dict]:
        return [options_config(o) for o in tune_candidates(bucket, num_experts, hidden, inter, top_k, fp8,
                                                           tuning.sm_count())]

    opt = tuning.lookup_config(tuned_key(num_experts, hidden, inter, top_k, fp8),
                               rows_bucket(num_tokens, top_k, num_experts), lambda **c: options_of_config(c),
                               generate, elem_bytes=1 if fp8 else 2)
    return opt if opt is not None else base


def _options(opt, t, e, h, inter, k, fp8, out):
    return opt or env_override(tuned_options(t, e, h, inter, k, fp8, sm_count(out)))


# ---- bf16 ----------------------------------------------------------------------------------------

def _moe_eager(x, num_experts, w1_of, w2_of, topk_weights, topk_ids, out) -> None:
    """The torch formulation (off CUDA), the math of the operators' references: fp32 throughout,
    one expert at a time over its routed rows (``w1_of(e)``, ``w2_of(e)``: its fp32 weights), one
    rounding to ``out``."""
    t, k = topk_ids.shape
    order, _, counts, offsets = _expert_sort(topk_ids, num_experts, 1)
    wflat = topk_weights.reshape(-1).float()
    acc = torch.zeros(out.shape, dtype=torch.float32, device=out.device)
    for j, (c, s) in enumerate(zip(counts.tolist(), offsets.tolist())):
        if c == 0:
            continue
        rows = order[s:s + c]
        tok = rows // k
        g = x[tok] @ w1_of(j).T
        i = g.shape[1] // 2
        acc.index_add_(0, tok, ((F.silu(g[:, :i]) * g[:, i:]) @ w2_of(j).T) * wflat[rows, None])
    out.copy_(acc)


def _fused_moe_eager(hidden_states, w1, w2, topk_weights, topk_ids, out, tiles, direct, combine) -> None:
    check_disjoint("fused_moe", (("out", out),), (("hidden_states", hidden_states), ("w1", w1), ("w2", w2),
                                                  ("topk_weights", topk_weights), ("topk_ids", topk_ids)))
    _moe_eager(hidden_states.float(), w1.shape[0], lambda j: w1[j].float(), lambda j: w2[j].float(), topk_weights,
               topk_ids, out)


@kernel_op("solbench::fused_moe.out", mutates_args=("out",), eager=_fused_moe_eager)
def _fused_moe_op(hidden_states: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
                  topk_ids: torch.Tensor, out: torch.Tensor, tiles: list[int], direct: bool, combine: str) -> None:
    from solbench.kernels.moe._fused_triton import run

    check_disjoint("fused_moe", (("out", out),), (("hidden_states", hidden_states), ("w1", w1), ("w2", w2),
                                                  ("topk_weights", topk_weights), ("topk_ids", topk_ids)))
    run(hidden_states, None, w1, None, w2, None, topk_weights, topk_ids, out, _unpack(tiles, direct, combine))


@_fused_moe_op.register_fake
def _fused_moe_fake(hidden_states, w1, w2, topk_weights, topk_ids, out, tiles, direct, combine) -> None:
    return None


functional_op("solbench::fused_moe", _fused_moe_op,
              lambda x, w1, w2, tw, ti, tiles, direct, combine: (x.new_empty(x.shape, dtype=torch.float32),))


def _pack(opt: FusedMoeOptions) -> list[int]:
    return [getattr(g, f.name) for g in (opt.gemm1, opt.gemm2) for f in fields(GemmConfig)]


def _unpack(tiles, direct, combine) -> FusedMoeOptions:
    n = len(fields(GemmConfig))
    return FusedMoeOptions(GemmConfig(*tiles[:n]), GemmConfig(*tiles[n:]), direct=direct, combine=combine)


def fused_moe(hidden_states: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
              topk_ids: torch.Tensor, out: torch.Tensor | None = None, out_dtype: torch.dtype | None = None,
              options: FusedMoeOptions | None = None) -> torch.Tensor:
    """MoE expert FFN for routed tokens: ``out[t] = sum_j topk_weights[t, j] * w2[e] @ (silu(g) * u)``
    with ``[g | u] = w1[e] @ hidden_states[t]`` and ``e = topk_ids[t, j]``.

    ``hidden_states [T, H]``, ``w1 [E, 2I, H]`` (gate rows, then up rows) and ``w2 [E, H, I]`` in
    bf16 or fp16; ``topk_weights`` fp32 and ``topk_ids`` int32 ``[T, k]`` (ids in [0, E); a token
    may name an expert twice). fp32 accumulation; the activation is rounded once to the input
    dtype between the GEMMs, and with the ``"sum"`` combine each expert's weighted output once
    more before the fp32 top-k sum. ``out [T, H]`` fp32 (default) or the input dtype."""
    what = "fused_moe"
    check_dtype(hidden_states, (torch.bfloat16, torch.float16), what, "hidden_states")
    _check_weights(what, hidden_states, w1, w2)
    for name, v in (("w1", w1), ("w2", w2)):
        if v.dtype != hidden_states.dtype:
            raise TypeError(f"{what}: {name} has dtype {v.dtype}; it must match hidden_states ({hidden_states.dtype})")
    t, h = hidden_states.shape
    _check_routing(what, topk_weights, topk_ids, t, hidden_states.device)
    if out is None:
        out = torch.empty((t, h), dtype=out_dtype or torch.float32, device=hidden_states.device)
    else:
        check_dtype(out, (torch.float32, hidden_states.dtype), what, "out")
        check_out(out, (t, h), out.dtype, hidden_states.device, what)
    if not out.is_contiguous():
        raise ValueError(f"{what}: out must be contiguous")
    e, two_i, _ = w1.shape
    opt = _options(options, t, e, h, two_i // 2, topk_ids.shape[1], False, out)
    _fused_moe_op(hidden_states, w1, w2, topk_weights, topk_ids, out, _pack(opt), opt.direct, opt.combine)
    return out


# ---- block-scaled fp8 ----------------------------------------------------------------------------------

def _dequant(q, s, row_block: int):
    """``q`` (e4m3) times the scale of its block in fp32: ``s`` holds one scale per
    ``row_block`` rows and 128 columns."""
    return q.float() * s.repeat_interleave(row_block, 0).repeat_interleave(FP8_BLOCK, 1)


def _fp8_moe_eager(hidden_states, w1, w2, topk_weights, topk_ids, a_scale, w1_scale, w2_scale, out, tiles, direct,
                   combine) -> None:
    check_disjoint("fp8_block_fused_moe", (("out", out),), (("hidden_states", hidden_states), ("w1", w1), ("w2", w2),
                                                            ("topk_weights", topk_weights), ("topk_ids", topk_ids)))
    b = FP8_BLOCK
    _moe_eager(_dequant(hidden_states, a_scale, 1), w1.shape[0], lambda j: _dequant(w1[j], w1_scale[j], b),
               lambda j: _dequant(w2[j], w2_scale[j], b), topk_weights, topk_ids, out)


@kernel_op("solbench::fp8_block_fused_moe.out", mutates_args=("out",), eager=_fp8_moe_eager)
def _fp8_moe_op(hidden_states: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
                topk_ids: torch.Tensor, a_scale: torch.Tensor, w1_scale: torch.Tensor, w2_scale: torch.Tensor,
                out: torch.Tensor, tiles: list[int], direct: bool, combine: str) -> None:
    from solbench.kernels.moe._fused_triton import run

    check_disjoint("fp8_block_fused_moe", (("out", out),), (("hidden_states", hidden_states), ("w1", w1), ("w2", w2),
                                                            ("topk_weights", topk_weights), ("topk_ids", topk_ids)))
    run(hidden_states, a_scale, w1, w1_scale, w2, w2_scale, topk_weights, topk_ids, out,
        _unpack(tiles, direct, combine))


@_fp8_moe_op.register_fake
def _fp8_moe_fake(hidden_states, w1, w2, topk_weights, topk_ids, a_scale, w1_scale, w2_scale, out, tiles, direct,
                  combine) -> None:
    return None


functional_op("solbench::fp8_block_fused_moe", _fp8_moe_op,
              lambda x, w1, w2, tw, ti, xs, s1, s2, tiles, direct, combine:
              (x.new_empty(x.shape, dtype=torch.bfloat16),))


def fp8_block_fused_moe(hidden_states: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
                        topk_ids: torch.Tensor, a_scale: torch.Tensor, w1_scale: torch.Tensor,
                        w2_scale: torch.Tensor, out: torch.Tensor | None = None,
                        options: FusedMoeOptions | None = None) -> torch.Tensor:
    """The MoE expert FFN of :func:`fused_moe` on DeepSeek-style block-scaled fp8 (e4m3fn):
    ``hidden_states [T, H]`` with per-token-group scales ``a_scale [T, H/128]``, ``w1 [E, 2I, H]``
    and ``w2 [E, H, I]`` with 128x128 block scales ``w1_scale [E, 2I/128, H/128]``, ``w2_scale
    [E, H/128, I/128]`` (fp32; H and I multiples of 128). Both GEMMs run on fp8 with fp32
    accumulation, each partial product scaled once per 128-wide K step; the activation
    ``silu(g) * u`` is requantized per 1x128 group (scale = amax / 448) in GEMM1's epilogue.
    ``out [T, H]`` bf16 (default) or fp32."""
    what = "fp8_block_fused_moe"
    f8 = torch.float8_e4m3fn
    for name, v in (("hidden_states", hidden_states), ("w1", w1), ("w2", w2)):
        check_dtype(v, (f8,), what, name)
    _check_weights(what, hidden_states, w1, w2)
    t, h = hidden_states.shape
    e, two_i, _ = w1.shape
    inter = two_i // 2
    if h % FP8_BLOCK or inter % FP8_BLOCK:
        raise ValueError(f"{what}: hidden_size={h} and intermediate_size={inter} must be multiples of {FP8_BLOCK}")
    b = FP8_BLOCK
    for name, v, shape in (("a_scale", a_scale, (t, h // b)), ("w1_scale", w1_scale, (e, two_i // b, h // b)),
                           ("w2_scale", w2_scale, (e, h // b, inter // b))):
        check_dtype(v, (torch.float32,), what, name)
        if tuple(v.shape) != shape or v.device != hidden_states.device:
            raise ValueError(f"{what}: {name} must be {shape} on {hidden_states.device}, got {tuple(v.shape)}")
        if v.numel() and v.stride(-1) != 1 and v.shape[-1] > 1:
            raise ValueError(f"{what}: {name} must be contiguous in its last dimension")
    _check_routing(what, topk_weights, topk_ids, t, hidden_states.device)
    if out is None:
        out = torch.empty((t, h), dtype=torch.bfloat16, device=hidden_states.device)
    else:
        check_dtype(out, (torch.bfloat16, torch.float32), what, "out")
        check_out(out, (t, h), out.dtype, hidden_states.device, what)
    if not out.is_contiguous():
        raise ValueError(f"{what}: out must be contiguous")
    opt = _options(options, t, e, h, inter, topk_ids.shape[1], True, out)
    ks = (opt.gemm1.block_k, opt.gemm2.block_k)
    if opt.direct:
        bad = any(bk % FP8_BLOCK and FP8_BLOCK % bk for bk in ks)
    else:
        bad = opt.gemm1.block_n != FP8_BLOCK or any(FP8_BLOCK % bk for bk in ks)
    if bad:
        raise ValueError(f"{what}: on the sorted path GEMM1 block_n must be {FP8_BLOCK} (one activation group per "
                         f"tile) and block_k must divide {FP8_BLOCK}; on the direct path block_k must divide or be "
                         f"a multiple of {FP8_BLOCK}")
    _fp8_moe_op(hidden_states, w1, w2, topk_weights, topk_ids, a_scale, w1_scale, w2_scale, out, _pack(opt),
                opt.direct, opt.combine)
    return out
