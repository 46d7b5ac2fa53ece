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
def dot_prec(a, b, TF32: tl.constexpr, BY_HAND: tl.constexpr):
    """With ``TF32``, ``tl.dot`` of fp32 operands on tf32 tensor cores (the gated delta rule's
    update keeps its fp32-class accuracy that way); else :func:`dot_lp` of 16-bit operands."""
    if TF32:
        c = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="tf32")
    else:
        c = dot_lp(a, b, BY_HAND)
    return c


@triton.jit
def l2norm(x, AXIS: tl.constexpr, ON: tl.constexpr, EPS: tl.constexpr):
    """``x`` in fp32, scaled along ``AXIS`` to unit L2 norm (``x rsqrt(sum x^2 + EPS)``) when ``ON``."""
    x = x.to(tl.float32)
    if ON:
        if AXIS == 1:
            x = x * tl.rsqrt(tl.sum(x * x, 1) + EPS)[:, None]
        else:
            x = x * tl.rsqrt(tl.sum(x * x, 0) + EPS)[None, :]
    return x


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


@triton.jit
def load_state(pool, idx, A_log, dt_bias, sp_n, sp_h, HV: tl.constexpr, GROUP: tl.constexpr, K: tl.constexpr,
               V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr):
    """The prologue both update kernels share: this program's batch row, value head and key head
    (grid: value blocks x batch*HV), its [BK, BV] block of the state pool in fp32 (zeros for a
    padding slot, index < 0), and the head's decay and dt bias. Returns (i_b, i_h, i_hk, o_k, o_v,
    m_k, m_v, m_s, p_s, S, neg_A, bias); ``p_s`` / ``m_s`` address the block for the write-back."""
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = (i_bh // HV).to(tl.int64)
    i_h = i_bh % HV
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    # int64: a pool of thousands of 64 KB states passes 2^31 bytes.
    slot = tl.load(idx + i_b).to(tl.int64)
    # The slot test as a vector (a scalar mask operand is not accepted by the interpreter).
    m_s = (m_k & (o_k * 0 + slot >= 0))[:, None] & m_v[None, :]
    p_s = pool + slot * sp_n + i_h * sp_h + o_k[:, None] * V + o_v[None, :]
    S = tl.load(p_s, mask=m_s, other=0.0).to(tl.float32)
    neg_A = -tl.exp(tl.load(A_log + i_h).to(tl.float32))
    bias = tl.load(dt_bias + i_h).to(tl.float32)
    return i_b, i_h, i_h // GROUP, o_k, o_v, m_k, m_v, m_s, p_s, S, neg_A, bias
