"""The Triton kernel behind :mod:`solbench.kernels.glu` (imported at the first launch): one kernel,
the activation chosen at compile time.

Each program owns a [BLOCK_M rows x BLOCK_N cols] tile of the output, reads the matching gate
and up tiles once and writes the output once: 1.5 x the output bytes per output element, the
minimum. Row offsets are int64 so tensors past 2^31 elements index correctly. For 16-bit outputs
on the GPU the sigmoid, reciprocal and exp2 skip their subnormal fix-ups (``FAST``, see
kernels/_fastmath_triton.py): fp32 outputs, and the CPU interpreter, keep the exact forms.
"""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.kernels import _fastmath_triton as fastmath
from solbench.kernels.glu import GluOptions, glu_options


@triton.jit
def _erfc_exponent_fp32(t):
    """``log2(erfc(z) / (2 t)) + z^2 log2 e`` for ``t = 1 / (1 + z / 2)``: Numerical Recipes'
    erfcc Chebyshev fit (relative error < 1.2e-7 for every z), with ``log2 e`` and the factor 1/2
    folded into its coefficients (``exp2(P log2 e - 1) = exp(P) / 2``)."""
    p = 0.4023215817 + t * (-1.6377531523 + t * (2.1474744639 + t * (-1.1861149451 + t * 0.2465172979)))
    return -2.8257482184 + t * (1.4427292039 + t * (0.5397006155 + t * (0.1396300565 + t * (-0.2687568603 + t * p))))


@triton.jit
def _erfc_exponent_16bit(t):
    """The same exponent from a degree-5 fit of ours (iteratively reweighted least squares over
    z in [0, 9.7]): relative error of erfc <= 1e-5 up to |g| = 9, a hundredth of an fp16 ulp,
    for four FMAs fewer. Folded like :func:`_erfc_exponent_fp32`."""
    return -2.8272336895 + t * (1.4686853043 + t * (0.3670740402 + t * (0.6845691077 + t * (
        -1.0231651127 + t * 0.3300813537))))


@triton.jit
def _half_erfc(ag, FP32_OUT: tl.constexpr, FAST: tl.constexpr):
    """``0.5 * erfc(ag / sqrt 2)`` for ``ag = |g| >= 0``, i.e. ``Phi(-|g|)``, as
    ``t exp2(E(t) - z^2 log2 e)`` with ``t = 1 / (1 + z / 2)``, ``z = ag / sqrt 2``.

    Why not ``tl.math.erf``: libdevice's erff left the gelu GLU issue-bound on an H200 (0.61-0.87
    of copy bandwidth where silu and gelu_tanh reach 0.93-1.0). Every constant here is folded so
    that each step is one FMA (1/sqrt 2 into t's slope, z^2 = g^2 / 2 into the exponent). The fit
    is matched to the output's rounding: the 9-term one for fp32 outputs (within 2e-6 relative
    down to |g| = 6, 2e-5 to the underflow, in fp32 arithmetic), a 5-term one for bf16 / fp16.
    The kernel forms ``g Phi(g) = relu(g) - |g| Phi(-|g|)`` from it, so the negative tail keeps its
    relative accuracy instead of cancelling in ``1 + erf`` (as torch's fp32 gelu does).
    ``FAST``: the reciprocal and exp2 without their subnormal fix-ups (kernels/_fastmath_triton.py)."""
    t = fastmath.rcp(1.0 + 0.35355339059327373 * ag, FAST)
    if FP32_OUT:
        e = _erfc_exponent_fp32(t)
    else:
        e = _erfc_exponent_16bit(t)
    return t * fastmath.exp2(ag * (ag * -0.7213475204444817) + e, FAST)


@triton.jit
def _glu_kernel(x_ptr, out_ptr, rows, d, x_row_stride, out_row_stride, alpha, limit, up_shift,
                ACT: tl.constexpr, HAS_LIMIT: tl.constexpr, INTERLEAVED: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, FAST: tl.constexpr,
                SCALED: tl.constexpr = True, SHIFTED: tl.constexpr = True):
    row = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    col = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    row_ok = row < rows
    mask = row_ok & (col < d)
    x_row = x_ptr + row * x_row_stride
    if INTERLEAVED:
        # [g0, u0, g1, u1, ...]: one contiguous load of 2*BLOCK_N values, then split the pairs.
        col2 = tl.program_id(1) * (2 * BLOCK_N) + tl.arange(0, 2 * BLOCK_N)[None, :]
        pairs = tl.load(x_row + col2, mask=row_ok & (col2 < 2 * d), other=0.0).to(tl.float32)
        g, u = tl.split(tl.reshape(pairs, (BLOCK_M, BLOCK_N, 2)))
    else:
        g = tl.load(x_row + col, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(x_row + d + col, mask=mask, other=0.0).to(tl.float32)
    if HAS_LIMIT:
        g = tl.minimum(g, limit)
        u = tl.minimum(tl.maximum(u, -limit), limit)
    if ACT == 0:  # silu / swish: g * sigmoid(alpha g); SCALED is False for alpha == 1 (one multiply less)
        a = g * fastmath.sigmoid(alpha * g if SCALED else g, FAST)
    elif ACT == 1:  # gelu (erf): g * Phi(g), Phi from a closed-form erfc (see _half_erfc)
        # g Phi(g) = relu(g) - |g| Phi(-|g|) on both sides of 0 (g (1 - h) above, g h below), so one
        # FMA replaces the compare, the select and 1 - h; above 0 it is also one rounding fewer.
        ag = tl.abs(g)
        a = tl.maximum(g, 0.0) - ag * _half_erfc(ag, out_ptr.dtype.element_ty == tl.float32, FAST)
    elif ACT == 2:  # gelu (tanh): 0.5 (1 + tanh z) == sigmoid(2 z), exact and cheaper
        z = 0.7978845608028654 * (g + 0.044715 * g * g * g)
        a = g * fastmath.sigmoid(2.0 * z, FAST)
    else:  # relu
        a = tl.maximum(g, 0.0)
    y = a * (u + up_shift) if SHIFTED else a * u  # SHIFTED: up_shift != 0 (swiglu's + 1)
    # No cache hints, unlike the row norms: with them the GLU measured level or 2.5-6% slower on
    # the H200 (docs/DECISIONS.md).
    tl.store(out_ptr + row * out_row_stride + col, y.to(out_ptr.dtype.element_ty), mask=mask)


def launch_glu(x2d, out2d, act: int, alpha: float, limit: float | None, up_shift: float, interleaved: bool,
               options: GluOptions | None = None):
    """``x2d [rows, 2d]`` -> ``out2d [rows, d]`` (unit column strides; callers validate).
    ``options`` replaces the tuned or first-principles tile (:func:`solbench.kernels.glu.glu_options`)."""
    rows, d = out2d.shape
    if rows == 0 or d == 0:
        return
    opts = glu_options(rows, d, out2d.element_size(), act, options)
    grid = (triton.cdiv(rows, opts.block_m), triton.cdiv(d, opts.block_n))
    _glu_kernel[grid](x2d, out2d, rows, d, x2d.stride(0), out2d.stride(0), float(alpha),
                      float(limit if limit is not None else 0.0), float(up_shift),
                      ACT=act, HAS_LIMIT=limit is not None, INTERLEAVED=interleaved,
                      BLOCK_M=opts.block_m, BLOCK_N=opts.block_n, FAST=fastmath.ptx_fast_math(out2d),
                      SCALED=float(alpha) != 1.0, SHIFTED=float(up_shift) != 0.0, num_warps=opts.num_warps)
