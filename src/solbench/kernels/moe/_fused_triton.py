"""The Triton kernels behind :mod:`solbench.kernels.moe.fused` (imported at the first launch, so
``import solbench`` decorates no Triton kernel): the grouped-GEMM tile and the pipeline that
launches it."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from solbench.kernels.common import gpu_codegen, sm_count
from solbench.kernels.moe._routing_triton import launch_sort, launch_sum_reduce
from solbench.kernels.moe.fused import FP8_BLOCK, FP8_MAX, FusedMoeOptions, GemmConfig
from solbench.kernels.moe.routing import aligned_capacity

_F8MAX = tl.constexpr(FP8_MAX)


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
    up rows ``up_off`` further into ``acc2`` when GATED, unless the tile takes
    :func:`_k_loop_gate_up`). Block-scaled fp8 on tensor cores: one K step lies in one 128-group,
    so its partial product is scaled once by the row's group scale (A_FP8) and the column's block
    scale (W_FP8). One-row (decode) tiles may span ``KG`` groups."""
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
def _k_loop_gate_up(a_ptr, a_stride, as_ptr, as_stride, arow, amask, w_ptr, w_sn, ws_ptr, ws_sn, ws_sk, pid_n, N, K,
                    A_FP8: tl.constexpr, W_FP8: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr, QBLOCK: tl.constexpr, UPCAST: tl.constexpr):
    """GEMM1 on tensor cores with the gate and up columns in one ``[BLOCK_K, 2 * BLOCK_N]`` B
    tile, interleaved (column ``2j`` is gate row ``n_j``, ``2j + 1`` up row ``n_j + N``): each K
    step is one product twice as wide instead of two, so the A tile is read from shared memory
    once, and on block-scaled fp8 there is one wait a step instead of two (a product into a fresh
    accumulator, which the per-block rescale needs, is synchronous). Interleaving puts each gate
    value beside its up value in the accumulator fragment, so the split at the end moves no data.
    Returns ``(gate, up)``, each ``[BLOCK_M, BLOCK_N]`` fp32."""
    offs_k = tl.arange(0, BLOCK_K)
    offs_c = tl.arange(0, 2 * BLOCK_N)
    n = pid_n * BLOCK_N + offs_c // 2
    cmask = n < N
    wrow = n + (offs_c % 2) * N
    a_ptrs = a_ptr + arow[:, None] * a_stride + offs_k[None, :]
    b_ptrs = w_ptr + wrow[None, :].to(tl.int64) * w_sn + offs_k[:, None]
    s_ptrs = ws_ptr + (wrow // QBLOCK) * ws_sn
    acc = tl.zeros([BLOCK_M, 2 * BLOCK_N], dtype=tl.float32)
    for kb in range(0, tl.cdiv(K, BLOCK_K)):
        kmask = offs_k < K - kb * BLOCK_K
        a = tl.load(a_ptrs, mask=amask[:, None] & kmask[None, :], other=0.0)
        b = tl.load(b_ptrs, mask=kmask[:, None] & cmask[None, :], other=0.0)
        if W_FP8:
            # One K step lies in one 128-group: its partial product is scaled once by the row's
            # group scale and the column's block scale, loaded before the product so that their
            # latency hides under it.
            kg = (kb * BLOCK_K) // QBLOCK
            sa = tl.full([BLOCK_M], 1.0, tl.float32)
            if A_FP8:
                sa = tl.load(as_ptr + arow * as_stride + kg, mask=amask, other=0.0)
            sb = tl.load(s_ptrs + kg * ws_sk, mask=cmask, other=0.0)
            part = _mma(tl.zeros([BLOCK_M, 2 * BLOCK_N], dtype=tl.float32), a, b, True, UPCAST)
            acc += part * sa[:, None] * sb[None, :]
        else:
            acc = _mma(acc, a, b, True, UPCAST)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    return tl.split(tl.reshape(acc, [BLOCK_M, BLOCK_N, 2]))


@triton.jit
def _tile_epilogue(acc, acc2, slots, valid, offs_n, nmask, c_ptr, c_stride, cs_ptr, cs_stride, topk_w_ptr, pid_n,
                   top_k, GATED: tl.constexpr, QUANT_OUT: tl.constexpr, ATOMIC: tl.constexpr, UPCAST: tl.constexpr):
    """A tile's output: GEMM1's silu(g) * u (requantized per 128-group when QUANT_OUT), GEMM2's rows
    times their router weight, stored per slot or added atomically into the token's row."""
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


@triton.jit
def _tile_mn(tile, num_m, num_n, GROUP_M: tl.constexpr):
    """Grouped order: GROUP_M row blocks sweep the N tiles together, so an expert's weight tiles
    are reused from L2 by the blocks of the same expert."""
    per_group = GROUP_M * num_n
    first_m = (tile // per_group) * GROUP_M
    gsize = tl.minimum(num_m - first_m, GROUP_M)
    return first_m + (tile % per_group) % gsize, (tile % per_group) // gsize


@triton.jit
def _slot_tile(pid_n, slots, expert, a_ptr, a_stride, as_ptr, as_stride, w_ptr, w_se, w_sn, ws_ptr, ws_se, ws_sn,
               ws_sk, c_ptr, c_stride, cs_ptr, cs_stride, topk_w_ptr, N, K, num_slots, top_k,
               GATED: tl.constexpr, A_FP8: tl.constexpr, W_FP8: tl.constexpr, QUANT_OUT: tl.constexpr,
               ATOMIC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
               QBLOCK: tl.constexpr, KG: tl.constexpr, GATE_UP_TILE: tl.constexpr, UPCAST: tl.constexpr):
    """One tile whose rows are slots of one expert (a block of the sorted layout, or one decode
    slot) x N tile ``pid_n``: GEMM1 on the slots' tokens, GEMM2 on the slots' rows, and the epilogue."""
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = offs_n < N
    valid = slots < num_slots
    arow = (slots // top_k) if GATED else slots
    arow = tl.where(valid, arow, 0).to(tl.int64)
    if GATED and GATE_UP_TILE and BLOCK_M >= 16:
        acc, acc2 = _k_loop_gate_up(a_ptr, a_stride, as_ptr, as_stride, arow, valid, w_ptr + expert * w_se, w_sn,
                                    ws_ptr + expert * ws_se, ws_sn, ws_sk, pid_n, N, K, A_FP8, W_FP8, BLOCK_M,
                                    BLOCK_N, BLOCK_K, QBLOCK, UPCAST)
    else:
        acc, acc2 = _k_loop(tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32),
                            tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32), a_ptr, a_stride, as_ptr, as_stride,
                            arow, valid, w_ptr + expert * w_se, w_sn, N * w_sn,
                            ws_ptr + expert * ws_se + (offs_n // QBLOCK) * ws_sn, ws_sk, (N // QBLOCK) * ws_sn,
                            offs_n, nmask, K, tl.cdiv(K, QBLOCK), GATED, A_FP8, W_FP8, BLOCK_M, BLOCK_N, BLOCK_K,
                            QBLOCK, KG, UPCAST)
    _tile_epilogue(acc, acc2, slots, valid, offs_n, nmask, c_ptr, c_stride, cs_ptr, cs_stride, topk_w_ptr, pid_n,
                   top_k, GATED, QUANT_OUT, ATOMIC, UPCAST)


@triton.jit
def _moe_gemm_kernel(
        a_ptr, a_stride, as_ptr, as_stride,
        w_ptr, w_se, w_sn, ws_ptr, ws_se, ws_sn, ws_sk,
        c_ptr, c_stride, cs_ptr, cs_stride,
        sorted_ptr, expert_ptr, ntpp_ptr, topk_w_ptr, zero_ptr, zero_numel, zero_chunk,
        N, K, num_slots, top_k, num_m, num_progs,
        GATED: tl.constexpr, A_FP8: tl.constexpr, W_FP8: tl.constexpr, QUANT_OUT: tl.constexpr,
        MODE: tl.constexpr, ATOMIC: tl.constexpr, ZERO: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
        QBLOCK: tl.constexpr, KG: tl.constexpr, GATE_UP_TILE: tl.constexpr, UPCAST: tl.constexpr,
        PERSISTENT: tl.constexpr):
    """One grouped-GEMM tile. MODE 0: rows are a block of the sorted layout (one expert);
    MODE 1: the row is one slot (decode GEMM1; ``sorted_ptr`` holds topk_ids); MODE 2: the row is
    one token and the program sums its top-k experts (decode GEMM2). GATED: GEMM1 (x rows by
    token, gate and up columns, silu(g)*u out per slot; QUANT_OUT requantizes it per 128-group).
    Otherwise GEMM2: rows by slot, times the router weight; ATOMIC adds into out by token.
    ZERO: the programs first zero ``zero_ptr`` (GEMM2's atomic target), a chunk each.
    GATE_UP_TILE: GEMM1's tensor-core tiles take :func:`_k_loop_gate_up`.
    UPCAST: running in the CPU interpreter (see _mma and _fp8_grid).
    PERSISTENT (MODE 0): ``num_progs`` programs walk the tiles of the occupied blocks (those below
    num_tokens_post_pad, read once) in one flattened pipeline, each tile a :func:`_slot_tile`."""
    pid = tl.program_id(0)
    if ZERO:
        for z in range(pid * zero_chunk, tl.minimum((pid + 1) * zero_chunk, zero_numel), 1024):
            zo = z + tl.arange(0, 1024)
            tl.store(zero_ptr + zo, tl.zeros([1024], dtype=tl.float32),
                     mask=(zo < zero_numel) & (zo < (pid + 1) * zero_chunk))
    num_n = tl.cdiv(N, BLOCK_N)
    if PERSISTENT:
        # Only the blocks the sort filled (the grid was sized by the worst case), grouped among
        # themselves: grouping over num_m would send the last group's tiles past them.
        occupied = tl.cdiv(tl.load(ntpp_ptr), BLOCK_M)
        for tile in tl.range(pid, occupied * num_n, num_progs, flatten=True):
            pid_m, pid_n = _tile_mn(tile, occupied, num_n, GROUP_M)
            _slot_tile(pid_n, tl.load(sorted_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M)),
                       tl.load(expert_ptr + pid_m).to(tl.int64), a_ptr, a_stride, as_ptr, as_stride, w_ptr, w_se,
                       w_sn, ws_ptr, ws_se, ws_sn, ws_sk, c_ptr, c_stride, cs_ptr, cs_stride, topk_w_ptr, N, K,
                       num_slots, top_k, GATED, A_FP8, W_FP8, QUANT_OUT, ATOMIC, BLOCK_M, BLOCK_N, BLOCK_K, QBLOCK,
                       KG, GATE_UP_TILE, UPCAST)
        return
    pid_m, pid_n = _tile_mn(pid, num_m, num_n, GROUP_M)
    if MODE == 2:
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        nmask = offs_n < N
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        acc2 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        up_off = N * w_sn
        ws_up_off = (N // QBLOCK) * ws_sn
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
        _slot_tile(pid_n, slots, expert, a_ptr, a_stride, as_ptr, as_stride, w_ptr, w_se, w_sn, ws_ptr, ws_se,
                   ws_sn, ws_sk, c_ptr, c_stride, cs_ptr, cs_stride, topk_w_ptr, N, K, num_slots, top_k, GATED,
                   A_FP8, W_FP8, QUANT_OUT, ATOMIC, BLOCK_M, BLOCK_N, BLOCK_K, QBLOCK, KG, GATE_UP_TILE, UPCAST)


def _launch_gemm(cfg: GemmConfig, num_m: int, n: int, k: int, a, a_scale, w, w_scale, c, c_scale, sorted_ids,
                 expert_ids, ntpp, topk_w, num_slots: int, top_k: int, *, gated: bool, mode: int, atomic: bool = False,
                 quant_out: bool = False, zero: torch.Tensor | None = None):
    if num_m == 0:
        return
    dummy = sorted_ids
    programs = num_m * triton.cdiv(n, cfg.block_n)
    persistent = bool(cfg.persistent) and mode == 0
    if persistent:  # cfg.persistent programs an SM (the tiles of occupied blocks are counted in the kernel)
        programs = min(programs, cfg.persistent * (sm_count(a) or programs))
    zero_numel = 0 if zero is None else zero.numel()
    _moe_gemm_kernel[(programs,)](
        a, a.stride(0), dummy if a_scale is None else a_scale, 0 if a_scale is None else a_scale.stride(0),
        w, w.stride(0), w.stride(1),
        dummy if w_scale is None else w_scale, *((0, 0, 0) if w_scale is None else w_scale.stride()),
        c, c.stride(0), dummy if c_scale is None else c_scale, 0 if c_scale is None else c_scale.stride(0),
        sorted_ids, dummy if expert_ids is None else expert_ids, dummy if ntpp is None else ntpp,
        dummy if topk_w is None else topk_w, c if zero is None else zero, zero_numel,
        triton.cdiv(zero_numel, programs), n, k, num_slots, top_k, num_m, programs,
        GATED=gated, A_FP8=a_scale is not None, W_FP8=w_scale is not None, QUANT_OUT=quant_out, MODE=mode,
        ATOMIC=atomic, ZERO=zero is not None, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
        GROUP_M=cfg.group_m, QBLOCK=FP8_BLOCK, KG=max(1, cfg.block_k // FP8_BLOCK) if w_scale is not None else 1,
        GATE_UP_TILE=bool(cfg.gate_up_tile), UPCAST=not gpu_codegen(a), PERSISTENT=persistent,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def run(x, x_scale, w1, w1_scale, w2, w2_scale, topk_weights, topk_ids, out, opt: FusedMoeOptions):
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
        launch_sum_reduce(y.view(t, -1, h), out, 1.0)
