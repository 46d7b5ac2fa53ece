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

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from solbench.kernels.common import (check_disjoint, check_dtype, check_out, env_choice, gpu_codegen, kernel_op,
                                     next_pow2, require_device)
from solbench.kernels.moe.routing import MAX_EXPERTS, aligned_capacity, launch_sort, moe_sum_reduce

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


#: Token counts up to this take the direct path: with a handful of tokens a top-k rarely names an
#: expert twice, so streaming per slot reads each touched expert about once, and the sort's
#: launches are saved.
DIRECT_MAX_TOKENS = 4


@functools.lru_cache(maxsize=None)
def _sm_count(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def sm_count_of(t: torch.Tensor) -> int | None:
    return _sm_count(t.device.index or 0) if t.is_cuda else None


def _narrow_for_sms(block_n: int, rows: int, n: int, sm_count: int | None, floor: int = 16) -> int:
    """Halve a decode launch's N tile while it has fewer than two programs per SM: a
    bandwidth-bound launch needs every SM loading."""
    while sm_count and block_n > floor and rows * triton.cdiv(n, block_n) < 2 * sm_count:
        block_n //= 2
    return block_n


def _decode_k(block_n: int, k: int) -> int:
    return max(128, min(1024, 8192 // block_n, next_pow2(k)))


#: ``SOLBENCH_MOE_COMBINE=sum|atomic`` picks the sorted path's top-k combine (read when the
#: options are made): which one wins depends on the GPU's atomic throughput, to be measured.
COMBINE_ENV = "SOLBENCH_MOE_COMBINE"


def default_options(num_tokens: int, num_experts: int, hidden: int, inter: int, top_k: int, fp8: bool,
                    sm_count: int | None = None) -> FusedMoeOptions:
    """Tiles per (E, N, K, token bucket). The bucket is the mean routed rows per expert, which sets
    how tall a useful block is; fp8 takes 128-wide K steps (one scale per step) and, on the sorted
    path, 128-wide GEMM1 columns (one activation group per tile, quantized in the epilogue)."""
    combine = env_choice(COMBINE_ENV, "sum", ("sum", "atomic"))
    if num_tokens <= DIRECT_MAX_TOKENS:
        # Decode: N tiles narrow enough to give every SM programs, K tiles long enough that each
        # weight load moves ~8k elements (several 128-groups on fp8).
        n_slots = num_tokens * top_k
        bn1 = _narrow_for_sms(64, n_slots, inter, sm_count)
        bn2 = _narrow_for_sms(128, num_tokens, hidden, sm_count)
        g1 = GemmConfig(1, bn1, _decode_k(bn1, hidden), group_m=1, num_warps=8, num_stages=3)
        g2 = GemmConfig(1, bn2, _decode_k(bn2, inter), group_m=1, num_warps=4, num_stages=3)
        return FusedMoeOptions(g1, g2, direct=True, combine=combine)
    per_expert = num_tokens * top_k / num_experts
    if fp8:
        # 64 rows at most: GEMM1 holds two 128-wide accumulators plus each K step's scaled
        # partial product; 128-wide K steps carry one scale each.
        bm = 16 if per_expert <= 16 else 32 if per_expert <= 48 else 64
        warps = 4 if bm <= 32 else 8
        g1 = GemmConfig(bm, FP8_BLOCK, FP8_BLOCK, group_m=1, num_warps=warps, num_stages=3)
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


@triton.jit
def _mma(acc, a, b, USE_DOT: tl.constexpr, UPCAST: tl.constexpr):
    if USE_DOT:
        if UPCAST:
            # Triton's CPU interpreter multiplies bf16 dot operands wrongly; fp32 holds them (and
            # fp8) exactly.
            return tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
        return tl.dot(a, b, acc)
    else:
        # One-row blocks (decode): a matrix-vector product on the CUDA cores, no tensor-core tile
        # to fill.
        av = tl.reshape(a.to(tl.float32), [a.shape[1]])
        return acc + tl.reshape(tl.sum(b.to(tl.float32) * av[:, None], axis=0), [1, b.shape[1]])


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
def _gemv_groups(a, b, sa, sb, G: tl.constexpr):
    """One-row block-scaled product over a K tile of ``G`` scale groups: ``sum_g sa[g] * sb[g, n] *
    sum_{k in g} a[k] b[k, n]`` for ``a [1, BK]``, ``b [BK, BN]``, ``sa [G]``, ``sb [G, BN]``;
    returns ``[1, BN]``. Decode tiles span several 128-groups so each load moves more bytes."""
    bk: tl.constexpr = b.shape[0]
    bn: tl.constexpr = b.shape[1]
    av = tl.reshape(a.to(tl.float32), [bk])
    part = tl.sum(tl.reshape(b.to(tl.float32) * av[:, None], [G, bk // G, bn]), axis=1)
    return tl.reshape(tl.sum(part * sb * sa[:, None], axis=0), [1, bn])


@triton.jit
def _k_loop(acc, acc2, a_ptr, a_stride, as_ptr, as_stride, arow, amask, w_ptr, w_sn, up_off, ws_ptr, ws_sk,
            ws_up_off, offs_n, nmask, K, n_kgroups,
            GATED: tl.constexpr, A_FP8: tl.constexpr, W_FP8: tl.constexpr, BLOCK_M: tl.constexpr,
            BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, QBLOCK: tl.constexpr, KG: tl.constexpr,
            UPCAST: tl.constexpr):
    """``acc (+)= A[arow, :K] @ W[offs_n, :K]^T`` for one expert's weight rows ``w_ptr`` (and the
    up rows ``up_off`` further into ``acc2`` when GATED). Block-scaled fp8 on tensor cores: one K
    step lies in one 128-group, so its partial product is scaled once by the row's group scale
    (A_FP8) and the column's block scale (W_FP8). One-row (decode) tiles may span ``KG`` groups."""
    USE_DOT: tl.constexpr = BLOCK_M >= 16
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + arow[:, None] * a_stride + offs_k[None, :]
    b_ptrs = w_ptr + offs_n[None, :].to(tl.int64) * w_sn + offs_k[:, None]
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        kmask = offs_k < K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=amask[:, None] & kmask[None, :], other=0.0)
        bmask = kmask[:, None] & nmask[None, :]
        b = tl.load(b_ptrs, mask=bmask, other=0.0)
        if GATED:
            b2 = tl.load(b_ptrs + up_off, mask=bmask, other=0.0)
        if KG > 1:
            # Only one-row fp8 tiles span several groups (the launcher keeps KG = 1 otherwise).
            kg = (kb * BLOCK_K) // QBLOCK + tl.arange(0, KG)
            gmask = kg < n_kgroups
            sa = tl.full([KG], 1.0, tl.float32)
            if A_FP8:
                sa = tl.reshape(tl.load(as_ptr + arow[:, None] * as_stride + kg[None, :], mask=gmask[None, :],
                                        other=0.0), [KG])
            gn = gmask[:, None] & nmask[None, :]
            acc += _gemv_groups(a, b, sa, tl.load(ws_ptr[None, :] + kg[:, None] * ws_sk, mask=gn, other=0.0), KG)
            if GATED:
                acc2 += _gemv_groups(a, b2, sa, tl.load(ws_ptr[None, :] + ws_up_off + kg[:, None] * ws_sk, mask=gn,
                                                        other=0.0), KG)
        elif W_FP8:
            kg = (kb * BLOCK_K) // QBLOCK
            zero = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
            sa = tl.full([BLOCK_M], 1.0, tl.float32)
            if A_FP8:
                sa = tl.load(as_ptr + arow * as_stride + kg, mask=amask, other=0.0)
            sb = tl.load(ws_ptr + kg * ws_sk, mask=nmask, other=0.0)
            acc += _mma(zero, a, b, USE_DOT, UPCAST) * sa[:, None] * sb[None, :]
            if GATED:
                sb2 = tl.load(ws_ptr + ws_up_off + kg * ws_sk, mask=nmask, other=0.0)
                acc2 += _mma(zero, a, b2, USE_DOT, UPCAST) * sa[:, None] * sb2[None, :]
        else:
            acc = _mma(acc, a, b, USE_DOT, UPCAST)
            if GATED:
                acc2 = _mma(acc2, a, b2, USE_DOT, UPCAST)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    return acc, acc2


@triton.jit
def _moe_gemm_kernel(
        a_ptr, a_stride, as_ptr, as_stride,
        w_ptr, w_se, w_sn, ws_ptr, ws_se, ws_sn, ws_sk,
        c_ptr, c_stride, cs_ptr, cs_stride,
        sorted_ptr, expert_ptr, ntpp_ptr, topk_w_ptr, zero_ptr, zero_numel, zero_chunk,
        N, K, num_slots, top_k, num_m,
        GATED: tl.constexpr, A_FP8: tl.constexpr, W_FP8: tl.constexpr, QUANT_OUT: tl.constexpr,
        MODE: tl.constexpr, ATOMIC: tl.constexpr, ZERO: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
        QBLOCK: tl.constexpr, KG: tl.constexpr, UPCAST: tl.constexpr):
    """One grouped-GEMM tile. MODE 0: rows are a block of the sorted layout (one expert);
    MODE 1: the row is one slot (decode GEMM1; ``sorted_ptr`` holds topk_ids); MODE 2: the row is
    one token and the program sums its top-k experts (decode GEMM2). GATED: GEMM1 (x rows by
    token, gate and up columns, silu(g)*u out per slot; QUANT_OUT requantizes it per 128-group).
    Otherwise GEMM2: rows by slot, times the router weight; ATOMIC adds into out by token.
    ZERO: the programs first zero ``zero_ptr`` (GEMM2's atomic target), a chunk each.
    UPCAST: running in the CPU interpreter (see _mma and _fp8_grid)."""
    pid = tl.program_id(0)
    if ZERO:
        for z in range(pid * zero_chunk, tl.minimum((pid + 1) * zero_chunk, zero_numel), 1024):
            zo = z + tl.arange(0, 1024)
            tl.store(zero_ptr + zo, tl.zeros([1024], dtype=tl.float32),
                     mask=(zo < zero_numel) & (zo < (pid + 1) * zero_chunk))
    num_n = tl.cdiv(N, BLOCK_N)
    # Grouped order: GROUP_M row blocks sweep the N tiles together, so an expert's weight tiles
    # are reused from L2 by the blocks of the same expert.
    per_group = GROUP_M * num_n
    first_m = (pid // per_group) * GROUP_M
    gsize = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % per_group) % gsize
    pid_n = (pid % per_group) // gsize
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = offs_n < N
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    acc2 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    up_off = N * w_sn
    ws_up_off = (N // QBLOCK) * ws_sn

    if MODE == 2:
        slots = tl.zeros([BLOCK_M], dtype=tl.int32)
        valid = tl.full([BLOCK_M], 1, tl.int1)
        for j in range(0, top_k):
            slot = pid_m * top_k + j
            expert = tl.load(sorted_ptr + slot).to(tl.int64)
            part, _ = _k_loop(tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32), acc2, a_ptr, a_stride, as_ptr,
                              as_stride, (slots + slot).to(tl.int64), valid, w_ptr + expert * w_se, w_sn, up_off,
                              ws_ptr + expert * ws_se + (offs_n // QBLOCK) * ws_sn, ws_sk, ws_up_off, offs_n,
                              nmask, K, tl.cdiv(K, QBLOCK), False, A_FP8, W_FP8, BLOCK_M, BLOCK_N, BLOCK_K,
                              QBLOCK, KG, UPCAST)
            acc += part * tl.load(topk_w_ptr + slot)
        tl.store(c_ptr + pid_m.to(tl.int64) * c_stride + offs_n[None, :], acc.to(c_ptr.dtype.element_ty),
                 mask=nmask[None, :])
    else:
        if MODE == 1:
            slots = pid_m + tl.arange(0, BLOCK_M)
            expert = tl.load(sorted_ptr + pid_m).to(tl.int64)
        else:
            if pid_m * BLOCK_M >= tl.load(ntpp_ptr):
                return
            slots = tl.load(sorted_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))
            expert = tl.load(expert_ptr + pid_m).to(tl.int64)
        valid = slots < num_slots
        arow = (slots // top_k) if GATED else slots
        arow = tl.where(valid, arow, 0).to(tl.int64)
        acc, acc2 = _k_loop(acc, acc2, a_ptr, a_stride, as_ptr, as_stride, arow, valid, w_ptr + expert * w_se,
                            w_sn, up_off, ws_ptr + expert * ws_se + (offs_n // QBLOCK) * ws_sn, ws_sk, ws_up_off,
                            offs_n, nmask, K, tl.cdiv(K, QBLOCK), GATED, A_FP8, W_FP8, BLOCK_M, BLOCK_N, BLOCK_K,
                            QBLOCK, KG, UPCAST)
        crow = slots.to(tl.int64)
        cmask = valid[:, None] & nmask[None, :]
        if GATED:
            acc = acc / (1.0 + tl.exp(-acc)) * acc2
        else:
            acc = acc * tl.load(topk_w_ptr + slots, mask=valid, other=0.0)[:, None]
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
                 expert_ids, ntpp, topk_w, num_slots: int, top_k: int, *, gated: bool, mode: int, atomic: bool = False,
                 quant_out: bool = False, zero: torch.Tensor | None = None):
    if num_m == 0:
        return
    dummy = sorted_ids
    programs = num_m * triton.cdiv(n, cfg.block_n)
    zero_numel = 0 if zero is None else zero.numel()
    _moe_gemm_kernel[(programs,)](
        a, a.stride(0), dummy if a_scale is None else a_scale, 0 if a_scale is None else a_scale.stride(0),
        w, w.stride(0), w.stride(1),
        dummy if w_scale is None else w_scale, *((0, 0, 0) if w_scale is None else w_scale.stride()),
        c, c.stride(0), dummy if c_scale is None else c_scale, 0 if c_scale is None else c_scale.stride(0),
        sorted_ids, dummy if expert_ids is None else expert_ids, dummy if ntpp is None else ntpp,
        dummy if topk_w is None else topk_w, c if zero is None else zero, zero_numel,
        triton.cdiv(zero_numel, programs), n, k, num_slots, top_k, num_m,
        GATED=gated, A_FP8=a_scale is not None, W_FP8=w_scale is not None, QUANT_OUT=quant_out, MODE=mode,
        ATOMIC=atomic, ZERO=zero is not None, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
        GROUP_M=cfg.group_m, QBLOCK=FP8_BLOCK, KG=max(1, cfg.block_k // FP8_BLOCK) if w_scale is not None else 1,
        UPCAST=not gpu_codegen(a), num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def _run(x, x_scale, w1, w1_scale, w2, w2_scale, topk_weights, topk_ids, out, opt: FusedMoeOptions):
    """The whole pipeline; ``x_scale``/``w*_scale`` are None on the bf16 path."""
    t, k = topk_ids.shape
    e, two_i, h = w1.shape
    inter = two_i // 2
    n = t * k
    fp8 = x_scale is not None
    dev = x.device
    if n == 0:
        return
    ids = topk_ids.reshape(-1)
    wts = topk_weights.reshape(-1)
    if opt.direct:
        # The activation stays unrounded (fp32) between the decode GEMMs: they are bound by the
        # weight stream, and one-row blocks have no tensor-core operand to requantize for.
        act = torch.empty((n, inter), dtype=torch.float32 if fp8 else x.dtype, device=dev)
        _launch_gemm(opt.gemm1, n, inter, h, x, x_scale, w1, w1_scale, act, None, ids, None, None, None, n, k,
                     gated=True, mode=1)
        _launch_gemm(opt.gemm2, t, h, inter, act, None, w2, w2_scale, out, None, ids, None, None, wts, n, k,
                     gated=False, mode=2)
        return
    bm = opt.gemm1.block_m
    cap = aligned_capacity(n, e, bm)
    num_m = triton.cdiv(cap, bm)
    sorted_ids = torch.empty(cap, dtype=torch.int32, device=dev)
    expert_ids = torch.empty(num_m, dtype=torch.int32, device=dev)
    ntpp = torch.empty(1, dtype=torch.int32, device=dev)
    launch_sort(topk_ids, e, bm, sorted_ids, expert_ids=expert_ids, ntpp=ntpp)
    act = torch.empty((n, inter), dtype=torch.float8_e4m3fn if fp8 else x.dtype, device=dev)
    act_scale = torch.empty((n, inter // FP8_BLOCK), dtype=torch.float32, device=dev) if fp8 else None
    atomic = opt.combine == "atomic"
    if atomic:
        y = out if out.dtype == torch.float32 else torch.empty((t, h), dtype=torch.float32, device=dev)
    else:
        # Top-1 rows are the tokens' own rows: GEMM2 writes out directly.
        y = out if k == 1 else torch.empty((n, h), dtype=torch.bfloat16 if fp8 else x.dtype, device=dev)
    _launch_gemm(opt.gemm1, num_m, inter, h, x, x_scale, w1, w1_scale, act, act_scale, sorted_ids, expert_ids, ntpp,
                 None, n, k, gated=True, mode=0, quant_out=fp8, zero=y if atomic else None)
    _launch_gemm(opt.gemm2, num_m, h, inter, act, act_scale, w2, w2_scale, y, None, sorted_ids, expert_ids, ntpp,
                 wts, n, k, gated=False, mode=0, atomic=atomic)
    if y is not out:
        moe_sum_reduce(y.view(t, -1, h), 1.0, out=out)


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


def _options(opt, t, e, h, inter, k, fp8, out):
    return opt or default_options(t, e, h, inter, k, fp8, sm_count_of(out))


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
    require_device(hidden_states, what)
    e, two_i, _ = w1.shape
    opt = _options(options, t, e, h, two_i // 2, topk_ids.shape[1], False, out)
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
