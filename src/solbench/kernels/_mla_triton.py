"""The Triton kernel behind :mod:`solbench.kernels.mla` (imported at the first launch)."""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.kernels._decode_split_triton import _partial_row, _split_range, _store_partial, combine, split_workspace
from solbench.kernels.attention import decode_splits, splits_override
from solbench.kernels.common import gpu_codegen, next_pow2, sm_count
from solbench.kernels.mla import LOG2E, default_config


@triton.jit
def _mla_decode(Q, C, O, PART_O, PART_ML, indptr, indices, qk_scale, heads, stride_qb, stride_qh, stride_c,
                stride_ob, stride_oh, R: tl.constexpr, P: tl.constexpr, P_PAD: tl.constexpr, BLOCK_H: tl.constexpr,
                BLOCK_N: tl.constexpr, DOT_FP32: tl.constexpr, SPLIT: tl.constexpr):
    # Program (b, head block, i) attends the i-th range of sequence b's latent rows (one range
    # without SPLIT); with SPLIT it writes fp32 partials that _decode_split_triton combines.
    b = tl.program_id(0)
    h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    h_mask = h < heads
    offs_r = tl.arange(0, R)
    offs_p = tl.arange(0, P_PAD)
    p_mask = offs_p < P
    q_row = Q + b.to(tl.int64) * stride_qb + h[:, None] * stride_qh
    q_nope = tl.load(q_row + offs_r[None, :], mask=h_mask[:, None], other=0.0)
    q_rope = tl.load(q_row + R + offs_p[None, :], mask=h_mask[:, None] & p_mask[None, :], other=0.0)
    if DOT_FP32:
        q_nope = q_nope.to(tl.float32)
        q_rope = q_rope.to(tl.float32)
    start = tl.load(indptr + b)
    length = tl.load(indptr + b + 1) - start
    lo = 0
    hi = length
    if SPLIT:
        lo, _, hi = _split_range(length, length, BLOCK_N)
    m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, R], tl.float32)
    offs_n = tl.arange(0, BLOCK_N)
    for n in range(lo, hi, BLOCK_N):
        n_mask = n + offs_n < hi
        page = tl.load(indices + start + n + offs_n, mask=n_mask, other=0)
        row = C + page.to(tl.int64) * stride_c
        c_nope = tl.load(row[:, None] + offs_r[None, :], mask=n_mask[:, None], other=0.0)
        c_rope = tl.load(row[:, None] + R + offs_p[None, :], mask=n_mask[:, None] & p_mask[None, :], other=0.0)
        if DOT_FP32:
            c_nope = c_nope.to(tl.float32)
            c_rope = c_rope.to(tl.float32)
        s = tl.dot(q_nope, tl.trans(c_nope)) + tl.dot(q_rope, tl.trans(c_rope))
        s = tl.where(n_mask[None, :], s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.math.exp2(s - m_new[:, None])
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(c_nope.dtype), c_nope)
        m_i = m_new
    if SPLIT:
        _store_partial(PART_O, PART_ML, _partial_row(b, h, heads), acc, m_i, l_i, h_mask, offs_r, offs_r < R, R)
        return
    l_i = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_i[:, None]
    tl.store(O + b.to(tl.int64) * stride_ob + h[:, None] * stride_oh + offs_r[None, :],
             out.to(O.dtype.element_ty), mask=h_mask[:, None])


def launch(q, kv_cache, kv_indptr, kv_indices, out, kv_lora_rank: int, scale: float) -> None:
    b, heads, d = q.shape
    if b == 0 or heads == 0:
        return
    gpu = gpu_codegen(q)
    cfg = default_config(heads, gpu)
    c = kv_cache.view(-1, d)
    r, p = kv_lora_rank, d - kv_lora_rank
    head_blocks = triton.cdiv(heads, cfg.block_h)
    # Host-side estimate of a sequence's latent rows: the mean (kv_indices holds them all).
    tiles = -(-kv_indices.shape[0] // (b * cfg.block_n))
    splits = splits_override() or decode_splits(b * head_blocks, sm_count(q), tiles)
    part_o, part_ml = split_workspace(b, heads, splits, r, q.device) if splits > 1 else (out, out)
    _mla_decode[(b, head_blocks, splits)](
        q, c, out, part_o, part_ml, kv_indptr, kv_indices, float(scale) * LOG2E, heads, q.stride(0), q.stride(1),
        c.stride(0), out.stride(0), out.stride(1), R=r, P=p, P_PAD=max(16, next_pow2(p)), BLOCK_H=cfg.block_h,
        BLOCK_N=cfg.block_n, DOT_FP32=not gpu, SPLIT=splits > 1, num_warps=cfg.num_warps,
        num_stages=cfg.num_stages)
    if splits > 1:
        combine(part_o, part_ml, out)
