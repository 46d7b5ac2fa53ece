"""The MoE expert FFN as sorted-token grouped GEMMs (the vLLM / SGLang ``fused_moe`` design), in
bf16 and in DeepSeek-style block-scaled fp8.

    out[t] = sum_j topk_weights[t, j] * W2[e] (silu(g) * u),   [g | u] = W1[e] x[t],  e = topk_ids[t, j]

Pipeline (no host sync; the grids are sized by the worst case and idle blocks exit):

1. sort: the T*k flat slots grouped by expert into ``block_m``-padded segments
   (:func:`~solbench.kernels.moe.routing.launch_sort`), with each block's expert;
2. GEMM1: each program multiplies ``block_m`` gathered rows of x by the gate and the up columns
   of its expert's w1 (two accumulators) and writes ``silu(g) * u`` per slot (fp8: quantized
   per 1x128 group in the epilogue, so GEMM2 runs on fp8 tensor cores);
3. GEMM2: the slot rows times w2, scaled by the router weight, then either added atomically into
   an fp32 ``out`` or stored per slot and summed over the top-k by
   :func:`~solbench.kernels.moe.routing.moe_sum_reduce`.

Decode (a handful of tokens) skips the sort: every slot is its own one-row block reading its
expert's weights directly (``direct``), so two GEMM launches stream the touched experts' weights.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from solbench.kernels.common import check_disjoint, check_dtype, check_out, gpu_codegen, kernel_op, require_device
from solbench.kernels.moe.routing import aligned_capacity, launch_sort, moe_sum_reduce

#: fp8 block size of the weights (128x128) and of the activation groups (1x128).
FP8_BLOCK = 128
FP8_MAX = 448.0
_F8MAX = tl.constexpr(FP8_MAX)


@dataclass(frozen=True)
class GemmConfig:
    block_m: int
    block_n: int
    block_k: int
    group_m: int = 8
    num_warps: int = 4
    num_stages: int = 3


@dataclass(frozen=True)
class FusedMoeOptions:
    """Launch options of the fused MoE. ``direct``: one slot per one-row block, no sort (decode);
    then ``block_m`` is 1. ``combine``: ``"atomic"`` (GEMM2 adds into an fp32 out) or ``"sum"``
    (per-slot rows, then the top-k sum)."""

    gemm1: GemmConfig
    gemm2: GemmConfig
    direct: bool = False
    combine: str = "atomic"

    def __post_init__(self):
        if self.combine not in ("atomic", "sum"):
            raise ValueError(f"FusedMoeOptions.combine={self.combine!r}: expected 'atomic' or 'sum'")
        if self.gemm1.block_m != self.gemm2.block_m:
            raise ValueError("FusedMoeOptions: both GEMMs share the sorted layout, so block_m must match")
        if self.direct and self.gemm1.block_m != 1:
            raise ValueError("FusedMoeOptions: the direct (decode) path runs one-row blocks (block_m=1)")


def default_options(num_tokens: int, num_experts: int, hidden: int, inter: int, top_k: int, fp8: bool,
                    out_fp32: bool) -> FusedMoeOptions:
    """Tiles per (E, N, K, token bucket). The bucket is the mean routed rows per expert, which sets
    how tall a useful block is; fp8 takes 128-wide K steps (one scale per step) and 128-wide GEMM1
    columns (one activation group per tile, quantized in the epilogue)."""
    combine = "atomic" if out_fp32 else "sum"
    if num_tokens <= 4:
        # Decode: every slot streams its expert's weights; narrow N tiles give enough programs to
        # keep every SM loading, and the K loop stays long.
        bn1 = FP8_BLOCK if fp8 else 64
        g = GemmConfig(1, bn1, 128, group_m=1, num_warps=4, num_stages=4)
        return FusedMoeOptions(g, replace(g, block_n=64), direct=True, combine=combine)
    per_expert = num_tokens * top_k / num_experts
    if per_expert <= 16:
        bm, warps, stages = 16, 4, 4
    elif per_expert <= 48:
        bm, warps, stages = 32, 4, 4
    elif per_expert <= 160:
        bm, warps, stages = 64, 4, 3
    else:
        bm, warps, stages = 128, 8, 3
    if fp8:
        g1 = GemmConfig(bm, FP8_BLOCK, FP8_BLOCK, group_m=16 if bm >= 64 else 1, num_warps=warps, num_stages=stages)
        g2 = replace(g1, block_n=128)
    else:
        # GEMM1 holds two accumulators (gate and up), so its N tile is half of GEMM2's.
        g1 = GemmConfig(bm, 64 if bm >= 64 else 32 if per_expert <= 4 else 64, 64,
                        group_m=8 if bm >= 64 else 1, num_warps=warps, num_stages=stages)
        g2 = GemmConfig(bm, 128 if bm >= 64 else 64, 64, group_m=8 if bm >= 64 else 1, num_warps=warps,
                        num_stages=stages)
    return FusedMoeOptions(g1, g2, direct=False, combine=combine)


@triton.jit
def _mma(acc, a, b, USE_DOT: tl.constexpr, UPCAST: tl.constexpr):
    if USE_DOT:
        if UPCAST:
            # Triton's CPU interpreter multiplies bf16 dot operands wrongly; fp32 holds them (and
            # fp8) exactly.
            return tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
        return tl.dot(a, b, acc)
    else:
        # One-row blocks (decode): a broadcast product, no tensor-core tile to fill.
        return acc + tl.sum(a.to(tl.float32)[:, :, None] * b.to(tl.float32)[None, :, :], axis=1)


@triton.jit
def _fp8_grid(v, SOFT: tl.constexpr):
    """``v`` (|v| <= 448) rounded to the nearest e4m3fn value, ties to even, still fp32. ``SOFT``:
    in integer arithmetic, because the CPU interpreter's fp32 -> fp8 cast does not round to
    nearest; a GPU's ``cvt.rn`` does, so there the cast alone is used."""
    if SOFT:
        b = v.to(tl.int32, bitcast=True)
        a = b & 0x7FFFFFFF
        # Normal range: keep 3 mantissa bits, round half to even (a carry moves the exponent).
        rn = ((a + 0x7FFFF + ((a >> 20) & 1)) & -0x100000).to(tl.float32, bitcast=True)
        # Subnormals are multiples of 2^-9.
        x = a.to(tl.float32, bitcast=True) * 512.0
        m = tl.floor(x)
        up = ((x - m) > 0.5) | (((x - m) == 0.5) & ((m.to(tl.int32) & 1) == 1))
        rs = (m + up.to(tl.float32)) * (1.0 / 512.0)
        r = tl.where(a >= 0x3C800000, rn, rs)
        return tl.where(b < 0, -r, r)
    else:
        return v


@triton.jit
def _moe_gemm_kernel(
        a_ptr, a_stride, as_ptr, as_stride,
        w_ptr, w_se, w_sn, ws_ptr, ws_se, ws_sn, ws_sk,
        c_ptr, c_stride, cs_ptr, cs_stride,
        sorted_ptr, expert_ptr, ntpp_ptr, topk_w_ptr,
        N, K, num_slots, top_k, num_m,
        GATED: tl.constexpr, A_BY_TOKEN: tl.constexpr, ROUTER_W: tl.constexpr, ATOMIC: tl.constexpr,
        FP8: tl.constexpr, QUANT_OUT: tl.constexpr, DIRECT: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
        QBLOCK: tl.constexpr, UPCAST: tl.constexpr):
    # UPCAST: running in the CPU interpreter (see _mma and _fp8_grid).
    pid = tl.program_id(0)
    num_n = tl.cdiv(N, BLOCK_N)
    # Grouped order: GROUP_M row blocks sweep the N tiles together, so an expert's weight tiles
    # are reused from L2 by the blocks of the same expert.
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    gsize = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % gsize
    pid_n = (pid % per_group) // gsize

    if DIRECT:
        slots = pid_m + tl.arange(0, BLOCK_M)
        expert = tl.load(sorted_ptr + pid_m).to(tl.int64)      # sorted_ptr holds topk_ids here
    else:
        if pid_m * BLOCK_M >= tl.load(ntpp_ptr):
            return
        slots = tl.load(sorted_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
        expert = tl.load(expert_ptr + pid_m).to(tl.int64)
    valid = slots < num_slots
    arow = (slots // top_k) if A_BY_TOKEN else slots
    arow = tl.where(valid, arow, 0).to(tl.int64)

    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = offs_n < N
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + arow[:, None] * a_stride + offs_k[None, :]
    b_ptrs = w_ptr + expert * w_se + offs_n[None, :].to(tl.int64) * w_sn + offs_k[:, None]
    if FP8:
        as_ptrs = as_ptr + arow * as_stride
        bs_ptrs = ws_ptr + expert * ws_se + (offs_n // QBLOCK) * ws_sn
        if GATED:
            bs2_ptrs = bs_ptrs + (N // QBLOCK) * ws_sn
    USE_DOT: tl.constexpr = BLOCK_M >= 16
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    if GATED:
        acc2 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        kmask = offs_k < K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=valid[:, None] & kmask[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=kmask[:, None] & nmask[None, :], other=0.0)
        if GATED:
            b2 = tl.load(b_ptrs + N * w_sn, mask=kmask[:, None] & nmask[None, :], other=0.0)
        if FP8:
            # One K step lies inside one 128-group: scale the step's partial product once.
            kg = (kb * BLOCK_K) // QBLOCK
            sa = tl.load(as_ptrs + kg, mask=valid, other=0.0)
            sb = tl.load(bs_ptrs + kg * ws_sk, mask=nmask, other=0.0)
            acc += _mma(tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32), a, b, USE_DOT, UPCAST) * sa[:, None] * sb[None, :]
            if GATED:
                sb2 = tl.load(bs2_ptrs + kg * ws_sk, mask=nmask, other=0.0)
                acc2 += _mma(tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32), a, b2, USE_DOT, UPCAST) * sa[:, None] * sb2[None, :]
        else:
            acc = _mma(acc, a, b, USE_DOT, UPCAST)
            if GATED:
                acc2 = _mma(acc2, a, b2, USE_DOT, UPCAST)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K

    crow = slots.to(tl.int64)
    if GATED:
        acc = acc / (1.0 + tl.exp(-acc)) * acc2
    if ROUTER_W:
        acc = acc * tl.load(topk_w_ptr + slots, mask=valid, other=0.0)[:, None]
    cmask = valid[:, None] & nmask[None, :]
    if QUANT_OUT:
        # Per-token-group fp8 of the activation (BLOCK_N is the group): scale = amax / 448.
        s = tl.maximum(tl.max(tl.abs(acc), axis=1), 1e-10) / _F8MAX
        q = _fp8_grid(tl.minimum(tl.maximum(acc / s[:, None], -_F8MAX), _F8MAX), UPCAST)
        tl.store(c_ptr + crow[:, None] * c_stride + offs_n[None, :], q.to(c_ptr.dtype.element_ty), mask=cmask)
        tl.store(cs_ptr + crow * cs_stride + pid_n, s, mask=valid)
    elif ATOMIC:
        orow = (slots // top_k).to(tl.int64)
        tl.atomic_add(c_ptr + orow[:, None] * c_stride + offs_n[None, :], acc, mask=cmask, sem="relaxed")
    else:
        tl.store(c_ptr + crow[:, None] * c_stride + offs_n[None, :], acc.to(c_ptr.dtype.element_ty), mask=cmask)



def _launch_gemm(cfg: GemmConfig, num_m: int, n: int, k: int, a, a_scale, w, w_scale, c, c_scale, sorted_ids,
                 expert_ids, ntpp, topk_w, num_slots: int, top_k: int, *, gated: bool, a_by_token: bool,
                 router_w: bool, atomic: bool, fp8: bool, quant_out: bool, direct: bool):
    if num_m == 0:
        return
    dummy = sorted_ids
    grid = (num_m * triton.cdiv(n, cfg.block_n),)
    _moe_gemm_kernel[grid](
        a, a.stride(0), dummy if a_scale is None else a_scale, 0 if a_scale is None else a_scale.stride(0),
        w, w.stride(0), w.stride(1),
        dummy if w_scale is None else w_scale, *((0, 0, 0) if w_scale is None else w_scale.stride()),
        c, c.stride(0), dummy if c_scale is None else c_scale, 0 if c_scale is None else c_scale.stride(0),
        sorted_ids, dummy if expert_ids is None else expert_ids, dummy if ntpp is None else ntpp,
        dummy if topk_w is None else topk_w,
        n, k, num_slots, top_k, num_m,
        GATED=gated, A_BY_TOKEN=a_by_token, ROUTER_W=router_w, ATOMIC=atomic, FP8=fp8, QUANT_OUT=quant_out,
        DIRECT=direct, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m,
        QBLOCK=FP8_BLOCK, UPCAST=not gpu_codegen(a), num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def _run(x, x_scale, w1, w1_scale, w2, w2_scale, topk_weights, topk_ids, out, opt: FusedMoeOptions):
    """The whole pipeline; ``x_scale``/``w*_scale`` are None on the bf16 path."""
    t, k = topk_ids.shape
    e, two_i, h = w1.shape
    inter = two_i // 2
    n = t * k
    fp8 = x_scale is not None
    dev = x.device
    atomic = opt.combine == "atomic"
    if atomic:
        out.zero_()
    if n == 0:
        return
    ids = topk_ids.reshape(-1)
    wts = topk_weights.reshape(-1)
    bm = opt.gemm1.block_m
    if opt.direct:
        sorted_ids, expert_ids, ntpp, num_m = ids, None, None, n
    else:
        cap = aligned_capacity(n, e, bm)
        sorted_ids = torch.empty(cap, dtype=torch.int32, device=dev)
        expert_ids = torch.empty(triton.cdiv(cap, bm), dtype=torch.int32, device=dev)
        ntpp = torch.empty(1, dtype=torch.int32, device=dev)
        launch_sort(topk_ids, e, bm, sorted_ids, expert_ids=expert_ids, ntpp=ntpp)
        num_m = triton.cdiv(cap, bm)
    act = torch.empty((n, inter), dtype=torch.float8_e4m3fn if fp8 else x.dtype, device=dev)
    act_scale = torch.empty((n, triton.cdiv(inter, FP8_BLOCK)), dtype=torch.float32, device=dev) if fp8 else None
    _launch_gemm(opt.gemm1, num_m, inter, h, x, x_scale, w1, w1_scale, act, act_scale, sorted_ids, expert_ids, ntpp,
                 None, n, k, gated=True, a_by_token=True, router_w=False, atomic=False, fp8=fp8, quant_out=fp8,
                 direct=opt.direct)
    y = out if atomic else torch.empty((n, h), dtype=out.dtype, device=dev)
    _launch_gemm(opt.gemm2, num_m, h, inter, act, act_scale, w2, w2_scale, y, None, sorted_ids, expert_ids, ntpp,
                 wts, n, k, gated=False, a_by_token=False, router_w=True, atomic=atomic, fp8=fp8, quant_out=False,
                 direct=opt.direct)
    if not atomic:
        moe_sum_reduce(y.view(t, k, h), 1.0, out=out)


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
    if w1.stride(0) < 0 or x.shape[0] * w1.shape[2] >= 2 ** 62:
        raise ValueError(f"{what}: unsupported strides or sizes")


def _options(opt, t, e, h, inter, k, fp8, out_dtype):
    if opt is None:
        return default_options(t, e, h, inter, k, fp8, out_dtype == torch.float32)
    if opt.combine == "atomic" and out_dtype != torch.float32:
        raise ValueError("FusedMoeOptions.combine='atomic' adds into out and needs an fp32 out; use 'sum'")
    return opt


# ---- bf16 ----------------------------------------------------------------------------------------

@kernel_op("solbench::fused_moe_", mutates_args=("out",))
def _fused_moe_op(hidden_states: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
                  topk_ids: torch.Tensor, out: torch.Tensor, tiles: list[int], direct: bool, combine: str) -> None:
    check_disjoint("fused_moe", (("out", out),), (("hidden_states", hidden_states), ("w1", w1), ("w2", w2),
                                                  ("topk_weights", topk_weights), ("topk_ids", topk_ids)))
    _run(hidden_states, None, w1, None, w2, None, topk_weights, topk_ids, out, _unpack(tiles, direct, combine))


@_fused_moe_op.register_fake
def _fused_moe_fake(hidden_states, w1, w2, topk_weights, topk_ids, out, tiles, direct, combine) -> None:
    return None


def _pack(opt: FusedMoeOptions) -> list[int]:
    g1, g2 = opt.gemm1, opt.gemm2
    return [g1.block_m, g1.block_n, g1.block_k, g1.group_m, g1.num_warps, g1.num_stages,
            g2.block_m, g2.block_n, g2.block_k, g2.group_m, g2.num_warps, g2.num_stages]


def _unpack(tiles, direct, combine) -> FusedMoeOptions:
    return FusedMoeOptions(GemmConfig(*tiles[:6]), GemmConfig(*tiles[6:]), direct=direct, combine=combine)


def fused_moe(hidden_states: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
              topk_ids: torch.Tensor, out: torch.Tensor | None = None, out_dtype: torch.dtype | None = None,
              options: FusedMoeOptions | None = None) -> torch.Tensor:
    """MoE expert FFN for routed tokens: ``out[t] = sum_j topk_weights[t, j] * w2[e] @ (silu(g) * u)``
    with ``[g | u] = w1[e] @ hidden_states[t]`` and ``e = topk_ids[t, j]``.

    ``hidden_states [T, H]``, ``w1 [E, 2I, H]`` (gate rows, then up rows) and ``w2 [E, H, I]`` in
    bf16 or fp16; ``topk_weights`` fp32 and ``topk_ids`` int32 ``[T, k]`` (ids in [0, E); a token
    may name an expert twice). fp32 accumulation; the activation is rounded once to the input
    dtype between the GEMMs. ``out [T, H]`` fp32 (default) or the input dtype."""
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
    require_device(hidden_states, what)
    e, two_i, _ = w1.shape
    opt = _options(options, t, e, h, two_i // 2, topk_ids.shape[1], False, out.dtype)
    _fused_moe_op(hidden_states, w1, w2, topk_weights, topk_ids, out, _pack(opt), opt.direct, opt.combine)
    return out


# ---- block-scaled fp8 ----------------------------------------------------------------------------------

@kernel_op("solbench::fp8_block_fused_moe_", mutates_args=("out",))
def _fp8_moe_op(hidden_states: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor,
                topk_ids: torch.Tensor, a_scale: torch.Tensor, w1_scale: torch.Tensor, w2_scale: torch.Tensor,
                out: torch.Tensor, tiles: list[int], direct: bool, combine: str) -> None:
    check_disjoint("fp8_block_fused_moe", (("out", out),), (("hidden_states", hidden_states), ("w1", w1), ("w2", w2),
                                                            ("topk_weights", topk_weights), ("topk_ids", topk_ids)))
    _run(hidden_states, a_scale, w1, w1_scale, w2, w2_scale, topk_weights, topk_ids, out,
         _unpack(tiles, direct, combine))


@_fp8_moe_op.register_fake
def _fp8_moe_fake(hidden_states, w1, w2, topk_weights, topk_ids, a_scale, w1_scale, w2_scale, out, tiles, direct,
                  combine) -> None:
    return None


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
    require_device(hidden_states, what)
    opt = _options(options, t, e, h, inter, topk_ids.shape[1], True, out.dtype)
    if opt.gemm1.block_n != FP8_BLOCK or FP8_BLOCK % opt.gemm1.block_k or FP8_BLOCK % opt.gemm2.block_k:
        raise ValueError(f"{what}: GEMM1 block_n must be {FP8_BLOCK} (one activation group per tile) and both "
                         f"block_k must divide {FP8_BLOCK}")
    _fp8_moe_op(hidden_states, w1, w2, topk_weights, topk_ids, a_scale, w1_scale, w2_scale, out, _pack(opt),
                opt.direct, opt.combine)
    return out
