"""Approximate fp32 reciprocal, exp2 and sigmoid for kernels whose results are rounded to 16 bits.

Why: Triton lowers ``1.0 / x`` and ``tl.exp2`` to the SFU's approximate instructions plus a range
fix-up each that keeps subnormals exact. In our bf16 GLU kernel on sm_90 the ``.ftz`` forms below
take silu from 23 to 16 instructions per output and the erf GELU from 30.5 to 23.5
(``benchmarks/offline_sass.py``, no GPU needed): for an activation near the issue limit, the
difference between waiting on memory and waiting on the scheduler. Exact fp32 subnormals (below
1.2e-38) are invisible after rounding to 16 bits, so kernels take the fast forms only there.

``rcp.approx.ftz.f32`` (relative error <= 2^-23) and ``ex2.approx.ftz.f32`` (<= 2^-22.5) exist on
every NVIDIA GPU Triton targets. The CPU interpreter cannot run inline PTX, so each helper takes
``PTX: tl.constexpr`` and falls back to the plain expression; kernels pass :func:`ptx_fast_math`.
"""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.kernels.common import gpu_codegen


def ptx_fast_math(out) -> bool:
    """True when a kernel writing ``out`` may use the approximate forms: a 16-bit output on a
    CUDA (not ROCm) device, compiled (not the interpreter)."""
    import torch

    return (gpu_codegen(out) and getattr(torch.version, "hip", None) is None
            and out.dtype in (torch.bfloat16, torch.float16))


@triton.jit
def _ptx_f32(x, ASM: tl.constexpr):
    """One fp32 PTX instruction ``ASM`` (``$0`` result, ``$1`` operand) applied elementwise."""
    return tl.inline_asm_elementwise(ASM, "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def rcp(x, PTX: tl.constexpr):
    """``1 / x`` (subnormals flushed to zero on the PTX path)."""
    if PTX:
        return _ptx_f32(x, "rcp.approx.ftz.f32 $0, $1;")
    else:
        return 1.0 / x


@triton.jit
def exp2(x, PTX: tl.constexpr):
    """``2 ** x`` (results below 2^-126 flushed to zero on the PTX path)."""
    if PTX:
        return _ptx_f32(x, "ex2.approx.ftz.f32 $0, $1;")
    else:
        return tl.exp2(x)


@triton.jit
def sigmoid(x, PTX: tl.constexpr):
    """``1 / (1 + exp(-x))`` as ``1 / (1 + 2^(-x log2 e))``: 0 for x -> -inf (the reciprocal of
    inf), 1 for x -> +inf."""
    if PTX:
        return rcp(1.0 + exp2(x * -1.4426950408889634, PTX), PTX)
    else:
        return tl.sigmoid(x)
