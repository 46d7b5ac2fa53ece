"""The Triton kernels behind :mod:`solbench.kernels.fp8_quant` (imported at the first launch, so
``import solbench`` decorates no Triton kernel), and the ``@triton.jit`` fp8 helpers they share.

The fp8 output is written as its uint8 bit pattern (``q.view(torch.uint8)``): on a GPU the hardware
conversion produces it, under the interpreter an exact software encoder does (:func:`fp8e4m3_bits`).
Tiles come from :mod:`solbench.kernels.rowwise`: a program owns ``BLOCK_M`` whole rows (groups) as a
register tile, so every input byte is read once and every output byte written once; rows longer
than ``MAX_WHOLE_ROW`` loop over chunks whose later passes re-read the row from L2.
"""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.kernels._rowwise_triton import row_ptrs, tile_offsets
from solbench.kernels.common import gpu_codegen, next_pow2
from solbench.kernels.rowwise import MAX_WHOLE_ROW, RowOptions, row_grid, row_options


# ---- fp8 helpers ----------------------------------------------------------------------------------

@triton.jit
def fp8e4m3_bits(v, SOFT: tl.constexpr):
    """The uint8 bit pattern of ``float8_e4m3fn(v)`` (round to nearest even) for fp32 ``v``
    with ``|v| <= 448`` (callers clamp first). ``SOFT`` encodes with integer arithmetic:
    Triton's interpreter converts fp32 -> fp8 with ties rounded up and subnormals flushed to
    zero, so on the CPU we encode ourselves; on a GPU the hardware conversion (``cvt.rn``)
    is exact and cheaper."""
    if SOFT:
        b = v.to(tl.int32, bitcast=True)
        sign = (b >> 24) & 0x80
        a = b & 0x7FFFFFFF
        # Normal range (|v| >= 2^-6): keep 3 of 23 mantissa bits with round-to-nearest-even
        # (a carry rolls into the exponent), then rebias the exponent from 127 to 7.
        normal = ((a + 0x7FFFF + ((a >> 20) & 1)) >> 20) - (120 << 3)
        # Subnormal range: the code is round_half_even(|v| / 2^-9) (8 rolls into 2^-6).
        av = a.to(tl.float32, bitcast=True) * 512.0
        m = av.to(tl.int32)
        frac = av - m.to(tl.float32)
        up = (frac > 0.5) | ((frac == 0.5) & ((m & 1) == 1))
        sub = m + up.to(tl.int32)
        code = tl.where(a >= 0x3C800000, normal, sub)
        return (code | sign).to(tl.uint8)
    else:
        return v.to(tl.float8e4nv).to(tl.uint8, bitcast=True)


@triton.jit
def scale_and_inverse(amax, min_amax, UE8M0: tl.constexpr):
    """``(scale, 1 / scale)`` from a max-abs tile: ``scale = max(amax, min_amax) / 448``
    correctly rounded (UE8M0: rounded up to a power of two on the bits); the inverse is 0
    where the scale is 0 (an all-zero row with ``min_amax = 0`` quantizes to 0)."""
    s = tl.math.div_rn(tl.maximum(amax, min_amax), tl.full(amax.shape, 448.0, tl.float32))
    if UE8M0:
        sb = s.to(tl.int32, bitcast=True)
        s = ((sb + 0x7FFFFF) & 0x7F800000).to(tl.float32, bitcast=True)
    inv = tl.math.div_rn(tl.full(s.shape, 1.0, tl.float32), tl.where(s > 0, s, 1.0))
    return s, tl.where(s > 0, inv, 0.0)


@triton.jit
def quantize_bits(v, inv, SOFT: tl.constexpr):
    """uint8 e4m3fn bits of ``clamp(v * inv, -448, 448)``."""
    q = tl.minimum(tl.maximum(v * inv, -448.0), 448.0)
    return fp8e4m3_bits(q, SOFT)


# ---- dynamic per-token quantization --------------------------------------------------------------

# One pass: each program reads its rows once, reduces the max-abs per row, computes the scale and
# its reciprocal once per row, and writes the fp8 bytes and the scale once (2 bytes read and 1
# written per bf16 element, plus 4 bytes of scale per row).

#: Tuned-table key of the per-token kernel.
PER_TOKEN_KERNEL = "fp8_per_token_quant"


@triton.jit
def _per_token_quant_kernel(x_ptr, q_ptr, s_ptr, rows, n, x_stride, q_stride, s_stride, min_amax,
                            SOFT_FP8: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                            CHUNKED: tl.constexpr):
    r, c, mask = tile_offsets(tl.program_id(0), rows, n, BLOCK_M, BLOCK_N)
    rmask = r < rows
    if not CHUNKED:
        v = tl.load(row_ptrs(x_ptr, r, c, x_stride), mask=mask, other=0.0).to(tl.float32)
        amax = tl.max(tl.abs(v), axis=1)[:, None]
        s, inv = scale_and_inverse(amax, min_amax, False)
        tl.store(s_ptr + r * s_stride, s, mask=rmask)
        tl.store(row_ptrs(q_ptr, r, c, q_stride), quantize_bits(v, inv, SOFT_FP8), mask=mask)
    else:
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(0, n, BLOCK_N):
            cc = k + c
            m = rmask & (cc < n)
            acc = tl.maximum(acc, tl.abs(tl.load(row_ptrs(x_ptr, r, cc, x_stride), mask=m, other=0.0).to(tl.float32)))
        s, inv = scale_and_inverse(tl.max(acc, axis=1)[:, None], min_amax, False)
        tl.store(s_ptr + r * s_stride, s, mask=rmask)
        for k in range(0, n, BLOCK_N):
            cc = k + c
            m = rmask & (cc < n)
            v = tl.load(row_ptrs(x_ptr, r, cc, x_stride), mask=m, other=0.0).to(tl.float32)
            tl.store(row_ptrs(q_ptr, r, cc, q_stride), quantize_bits(v, inv, SOFT_FP8), mask=m)


def launch_per_token_quant(x2d, q2d, s2d, min_amax: float, options: RowOptions | None = None) -> None:
    """``x2d [rows, n]`` (unit column stride), ``q2d [rows, n]`` fp8, ``s2d [rows, 1]`` fp32;
    callers validate shapes, dtypes and devices. ``options`` replaces the tuned or
    first-principles tile."""
    import torch

    rows, n = x2d.shape
    if rows == 0 or n == 0:
        return
    cfg = row_options(n, rows, x2d.element_size(), kernel=PER_TOKEN_KERNEL, options=options)
    _per_token_quant_kernel[row_grid(rows, cfg)](
        x2d, q2d.view(torch.uint8), s2d, rows, n, x2d.stride(0), q2d.stride(0), s2d.stride(0),
        float(min_amax), SOFT_FP8=not gpu_codegen(x2d), **cfg.launch_kwargs())


# ---- (residual add +) RMSNorm + per-token quantization -------------------------------------------

# Per row, fp32: v = x (+ residual; the sum is stored rounded to the residual dtype as
# residual_out but normalized unrounded, as aiter does), y = v / sqrt(mean(v^2) + eps) * w,
# scale = max|y| / 448, q = fp8(clamp(y / scale)): the sum, the normalized row and its max-abs never
# leave the chip. Chunked rows run three passes (sum of squares, max-abs, quantize) that recompute
# the sum from x and residual, which the first pass left in L2.

#: Tuned-table key of the fused RMSNorm + quantization kernel.
RMSNORM_QUANT_KERNEL = "fused_rmsnorm_quant"


@triton.jit
def _load_sum(x_ptr, res_ptr, res_out_ptr, r, c, mask, x_stride, res_stride, res_out_stride,
              HAS_RES: tl.constexpr, STORE_RES: tl.constexpr):
    v = tl.load(row_ptrs(x_ptr, r, c, x_stride), mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        v += tl.load(row_ptrs(res_ptr, r, c, res_stride), mask=mask, other=0.0).to(tl.float32)
        if STORE_RES:
            tl.store(row_ptrs(res_out_ptr, r, c, res_out_stride), v.to(res_out_ptr.dtype.element_ty), mask=mask)
    return v


@triton.jit
def _rmsnorm_quant_kernel(x_ptr, res_ptr, w_ptr, q_ptr, s_ptr, res_out_ptr, rows, n, eps,
                          x_stride, res_stride, q_stride, s_stride, res_out_stride,
                          HAS_RES: tl.constexpr, SOFT_FP8: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_N: tl.constexpr, CHUNKED: tl.constexpr):
    r, c, mask = tile_offsets(tl.program_id(0), rows, n, BLOCK_M, BLOCK_N)
    rmask = r < rows
    if not CHUNKED:
        v = _load_sum(x_ptr, res_ptr, res_out_ptr, r, c, mask, x_stride, res_stride, res_out_stride,
                      HAS_RES, True)
        rstd = 1.0 / tl.sqrt(tl.sum(v * v, axis=1)[:, None] / n + eps)
        # The weight is shared by all rows: one [1, BLOCK_N] vector load per program.
        w = tl.load(w_ptr + c, mask=c < n, other=0.0).to(tl.float32)
        y = v * rstd * w
        s, inv = scale_and_inverse(tl.max(tl.abs(y), axis=1)[:, None], 0.0, False)
        tl.store(s_ptr + r * s_stride, s, mask=rmask)
        tl.store(row_ptrs(q_ptr, r, c, q_stride), quantize_bits(y, inv, SOFT_FP8), mask=mask)
    else:
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(0, n, BLOCK_N):
            cc = k + c
            v = _load_sum(x_ptr, res_ptr, res_out_ptr, r, cc, rmask & (cc < n), x_stride, res_stride,
                          res_out_stride, HAS_RES, True)
            acc += v * v
        rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=1)[:, None] / n + eps)
        amax = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(0, n, BLOCK_N):
            cc = k + c
            v = _load_sum(x_ptr, res_ptr, res_out_ptr, r, cc, rmask & (cc < n), x_stride, res_stride,
                          res_out_stride, HAS_RES, False)
            w = tl.load(w_ptr + cc, mask=cc < n, other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.abs(v * rstd * w))
        s, inv = scale_and_inverse(tl.max(amax, axis=1)[:, None], 0.0, False)
        tl.store(s_ptr + r * s_stride, s, mask=rmask)
        for k in range(0, n, BLOCK_N):
            cc = k + c
            m = rmask & (cc < n)
            v = _load_sum(x_ptr, res_ptr, res_out_ptr, r, cc, m, x_stride, res_stride, res_out_stride,
                          HAS_RES, False)
            w = tl.load(w_ptr + cc, mask=cc < n, other=0.0).to(tl.float32)
            tl.store(row_ptrs(q_ptr, r, cc, q_stride), quantize_bits(v * rstd * w, inv, SOFT_FP8), mask=m)


def launch_rmsnorm_quant(x2d, weight, q2d, s2d, eps: float, residual2d=None, residual_out2d=None,
                         options: RowOptions | None = None) -> None:
    """2-D ``[rows, n]`` views with unit column stride (row strides may differ); ``s2d`` is
    ``[rows, 1]``. Callers validate shapes, dtypes, devices and overlaps. ``options`` replaces the
    tuned or first-principles tile."""
    import torch

    rows, n = x2d.shape
    if rows == 0 or n == 0:
        return
    if (residual2d is None) != (residual_out2d is None):
        raise ValueError("launch_rmsnorm_quant: residual and residual_out go together")
    has_res = residual2d is not None
    cfg = row_options(n, rows, x2d.element_size(), kernel=RMSNORM_QUANT_KERNEL, options=options)
    dummy = x2d  # never dereferenced when HAS_RES is False
    _rmsnorm_quant_kernel[row_grid(rows, cfg)](
        x2d, residual2d if has_res else dummy, weight, q2d.view(torch.uint8), s2d,
        residual_out2d if has_res else dummy, rows, n, float(eps),
        x2d.stride(0), residual2d.stride(0) if has_res else 0, q2d.stride(0), s2d.stride(0),
        residual_out2d.stride(0) if has_res else 0,
        HAS_RES=has_res, SOFT_FP8=not gpu_codegen(x2d), **cfg.launch_kwargs())


# ---- per-token-group quantization ----------------------------------------------------------------

# The unit of work is a group: GROUP consecutive elements of one row. A program owns BLOCK_M groups
# as a [BLOCK_M, BLOCK_N] register tile (BLOCK_N = next_pow2(GROUP)), numbered row-major over the
# whole tensor, so one program covers several groups of a row (and of the next rows): loads stay
# 16-byte vectors along the row, decode shapes (one token) are one program, prefill shapes get
# tiles of ~4K elements (kernels/rowwise picks the tile for n = GROUP). Scales are stored through
# two strides, so row-major, column-major (DeepGEMM) and TMA-aligned layouts are one kernel.

#: Tuned-table key of the group kernel.
GROUP_KERNEL = "per_token_group_quant_fp8"


@triton.jit
def _group_quant_kernel(x_ptr, q_ptr, s_ptr, n_groups, groups_per_row, x_stride, q_stride,
                        s_row_stride, s_col_stride, eps,
                        GROUP: tl.constexpr, UE8M0: tl.constexpr, SOFT_FP8: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CHUNKED: tl.constexpr):
    # Group ids fit int32 (the launcher checks); the division by groups_per_row is per group, not
    # per element, and int32 keeps it cheap. Element offsets are int64 (row * stride may pass 2^31).
    f = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    row32 = f // groups_per_row
    g = f - row32 * groups_per_row
    row = row32.to(tl.int64)
    c = tl.arange(0, BLOCK_N)[None, :]
    fmask = f < n_groups
    mask = fmask & (c < GROUP)
    col = g * GROUP + c
    v = tl.load(x_ptr + row * x_stride + col, mask=mask, other=0.0).to(tl.float32)
    s, inv = scale_and_inverse(tl.max(tl.abs(v), axis=1)[:, None], eps, UE8M0)
    tl.store(s_ptr + row * s_row_stride + g.to(tl.int64) * s_col_stride, s, mask=fmask)
    tl.store(q_ptr + row * q_stride + col, quantize_bits(v, inv, SOFT_FP8), mask=mask)


def max_group_size() -> int:
    return MAX_WHOLE_ROW


def launch_group_quant(x2d, q2d, s2d, group_size: int, eps: float, ue8m0: bool,
                       options: RowOptions | None = None) -> None:
    """``x2d``/``q2d`` ``[rows, K]`` (unit column stride), ``s2d`` ``[rows, K // group_size]`` with
    any strides; callers validate shapes, dtypes and devices. ``options`` (a tile of groups)
    replaces the tuned or first-principles one."""
    import torch

    rows, k = x2d.shape
    if rows == 0 or k == 0:
        return
    groups_per_row = k // group_size
    n_groups = rows * groups_per_row
    if n_groups + 2 * MAX_WHOLE_ROW >= 2 ** 31:  # group ids (plus a tile of slack) are int32
        raise ValueError(f"per_token_group_quant_fp8: {n_groups} groups is too many (supported: < 2^31)")
    cfg = row_options(group_size, n_groups, x2d.element_size(), kernel=GROUP_KERNEL, options=options)
    if cfg.chunked or cfg.block_n != next_pow2(group_size):
        raise ValueError(f"per_token_group_quant_fp8: group_size {group_size} is too large "
                         f"(supported: up to {MAX_WHOLE_ROW})")
    _group_quant_kernel[row_grid(n_groups, cfg)](
        x2d, q2d.view(torch.uint8), s2d, n_groups, groups_per_row, x2d.stride(0), q2d.stride(0),
        s2d.stride(0), s2d.stride(1), float(eps), GROUP=group_size, UE8M0=bool(ue8m0),
        SOFT_FP8=not gpu_codegen(x2d), **cfg.launch_kwargs())
