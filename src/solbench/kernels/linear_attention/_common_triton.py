"""Triton helpers of the linear-attention and conv kernels (imported by their ``_*_triton``
modules at the first launch, so ``import solbench`` decorates no Triton kernel)."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def rtne_bf16(x, BY_HAND: tl.constexpr):
    """``x`` (fp32) rounded to the nearest bf16 (ties to even), still fp32, so the following
    conversion is exact even where it truncates; the identity when ``BY_HAND`` is off."""
    if BY_HAND:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        x = bits.to(tl.float32, bitcast=True)
    return x


@triton.jit
def dot_lp(a, b, BY_HAND: tl.constexpr):
    """``tl.dot`` of two 16-bit operands with fp32 accumulation. Triton's CPU interpreter
    multiplies bf16 blocks wrongly, so there (``BY_HAND``, set with :func:`rounds_by_hand`) the
    same bf16 values are multiplied as fp32, which is exact per product."""
    if BY_HAND:
        c = tl.dot(a.to(tl.float32), b.to(tl.float32))
    else:
        c = tl.dot(a, b)
    return c


@triton.jit
def gdn_gates(a, b, neg_A, bias, sp_beta, sp_threshold, m, MASKED: tl.constexpr):
    """Gated DeltaNet gates of a token (or a block of them): the log-decay ``-exp(A_log)
    softplus_beta(a + dt_bias)`` (torch's linear branch above the threshold, exp clamped there)
    and ``sigmoid(b)``; with ``MASKED`` both are zero where ``m`` is off (tokens past the end)."""
    x = a.to(tl.float32) + bias
    bx = sp_beta * x
    soft = tl.where(bx <= sp_threshold, tl.log(1.0 + tl.exp(tl.minimum(bx, sp_threshold))) / sp_beta, x)
    g = neg_A * soft
    beta = tl.sigmoid(b.to(tl.float32))
    if MASKED:
        g = tl.where(m, g, 0.0)
        beta = tl.where(m, beta, 0.0)
    return g, beta
