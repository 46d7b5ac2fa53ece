"""Triton kernel for the GLU family: one kernel, the activation chosen at compile time.

Each program owns a [BLOCK_M rows x BLOCK_N cols] tile of the output, reads the matching gate
and up tiles once and writes the output once: 1.5 x the output bytes per output element, the
minimum. Row offsets are int64 so tensors past 2^31 elements index correctly.
"""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.core import tuning
from solbench.core.kernels import next_pow2


@triton.jit
def _half_erfc(z):
    """``0.5 * erfc(z)`` for ``z >= 0`` from the Chebyshev fit ``erfc(z) = t exp(-z^2 + P(t))``,
    ``t = 1 / (1 + z / 2)`` (Numerical Recipes' erfcc), relative error < 1.2e-7 for every z;
    evaluated in fp32 it stays within 2e-6 relative down to z = 4 (|g| = 6), 2e-5 to the
    underflow (the exponent's argument carries fp32 rounding).

    Why not ``tl.math.erf``: libdevice's erff evaluates a long polynomial on each of two
    branches, and with it the gelu GLU was issue-bound at 0.61-0.87 of copy bandwidth on an H200
    where silu and gelu_tanh reach 0.93-1.0. This form costs one reciprocal, one exp and nine
    FMAs. Phi(g) is taken from erfc on both sides of 0 (``1 - erfc/2`` above, ``erfc/2``
    below), so the negative tail keeps its relative accuracy instead of cancelling in
    ``1 + erf`` (as torch's fp32 gelu does)."""
    t = 1.0 / (1.0 + 0.5 * z)
    p = 0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))
    p = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * p))))
    return 0.5 * t * tl.exp(p - z * z)


@triton.jit
def _glu_kernel(x_ptr, out_ptr, rows, d, x_row_stride, out_row_stride, alpha, limit, up_shift,
                ACT: tl.constexpr, HAS_LIMIT: tl.constexpr, INTERLEAVED: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
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
    if ACT == 0:  # silu / swish: g * sigmoid(alpha g)
        a = g * tl.sigmoid(alpha * g)
    elif ACT == 1:  # gelu (erf): g * Phi(g), Phi from a closed-form erfc (see _half_erfc)
        half_erfc = _half_erfc(tl.abs(g) * 0.7071067811865476)
        a = g * tl.where(g >= 0.0, 1.0 - half_erfc, half_erfc)
    elif ACT == 2:  # gelu (tanh): 0.5 (1 + tanh z) == sigmoid(2 z), exact and cheaper
        z = 0.7978845608028654 * (g + 0.044715 * g * g * g)
        a = g * tl.sigmoid(2.0 * z)
    else:  # relu
        a = tl.maximum(g, 0.0)
    y = a * (u + up_shift)
    tl.store(out_ptr + row * out_row_stride + col, y.to(out_ptr.dtype.element_ty), mask=mask)


KERNEL = "glu"


def _config(rows: int, d: int, elem_bytes: int = 2) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps): this device's tuned tile for ``d`` (core/tuning.py, with
    BLOCK_M capped by the row count), else about 4-8K output elements per program, so that each
    program keeps enough bytes in flight; decode shapes (few rows) get one row per program and
    split the row across programs instead."""
    tuned = tuning.lookup(KERNEL, d, family="glu", elem_bytes=elem_bytes)
    if tuned is not None:
        return (max(1, min(int(tuned["block_m"]), next_pow2(rows))), int(tuned["block_n"]),
                int(tuned["num_warps"]))
    block_n = min(next_pow2(d), 1024)
    target = 8192 if rows * d >= (1 << 22) else 4096
    block_m = max(1, min(next_pow2(rows), target // block_n))
    num_warps = 8 if block_m * block_n >= 4096 else 4
    return block_m, block_n, num_warps


def launch_glu(x2d, out2d, act: int, alpha: float, limit: float | None, up_shift: float, interleaved: bool):
    rows, d = out2d.shape
    if rows == 0 or d == 0:
        return
    block_m, block_n, num_warps = _config(rows, d, out2d.element_size())
    grid = (triton.cdiv(rows, block_m), triton.cdiv(d, block_n))
    _glu_kernel[grid](x2d, out2d, rows, d, x2d.stride(0), out2d.stride(0), float(alpha),
                      float(limit if limit is not None else 0.0), float(up_shift),
                      ACT=act, HAS_LIMIT=limit is not None, INTERLEAVED=interleaved,
                      BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps)
