"""Absorbed multi-head latent attention (MLA) decode in Triton: one query token per sequence,
one latent row per cached token shared by every head.

    out[b, h] = sum_j softmax_j(scale * q[b, h] . c_j) * c_j[:R]

with c_j the latent rows ``kv_cache[kv_indices[j]]`` of sequence b (R = kv_lora_rank, keys the
whole row of R + P, values its first R entries).

Design (the FlashMLA idea): a program owns ``BLOCK_H`` heads of one sequence, so the heads are
the M dimension of the tensor-core tile and each latent tile is loaded once for all of them; the
tile's first R columns serve as the keys' nope part and as the values, the last P as the rope
part. Pages are one token (SGLang's aiter backend), gathered row by row through ``kv_indices``.
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import check_dtype, check_out, gpu_codegen, interpreting, kernel_op, next_pow2

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

_LOG2E = 1.4426950408889634


@dataclasses.dataclass(frozen=True)
class MlaConfig:
    block_h: int
    block_n: int
    num_warps: int
    num_stages: int


def default_config(heads: int, gpu: bool) -> MlaConfig:
    """16 heads per program at most: a [16, 512] fp32 accumulator is 64 registers a thread at 4
    warps; more heads per program would leave SMs idle on the catalog's small batches."""
    return MlaConfig(16, 32, 4, 2 if gpu else 1)


if triton is not None:

    @triton.jit
    def _mla_decode(Q, C, O, indptr, indices, qk_scale, heads, stride_qb, stride_qh, stride_c, stride_ob,
                    stride_oh, R: tl.constexpr, P: tl.constexpr, P_PAD: tl.constexpr, BLOCK_H: tl.constexpr,
                    BLOCK_N: tl.constexpr, DOT_FP32: tl.constexpr):
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
        m_i = tl.full([BLOCK_H], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_H], tl.float32)
        acc = tl.zeros([BLOCK_H, R], tl.float32)
        offs_n = tl.arange(0, BLOCK_N)
        for n in range(0, length, BLOCK_N):
            n_mask = n + offs_n < length
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
        l_i = tl.where(l_i > 0.0, l_i, 1.0)
        out = acc / l_i[:, None]
        tl.store(O + b.to(tl.int64) * stride_ob + h[:, None] * stride_oh + offs_r[None, :],
                 out.to(O.dtype.element_ty), mask=h_mask[:, None])


@kernel_op("solbench::mla_decode_", mutates_args=("out",))
def _mla_op(q: torch.Tensor, kv_cache: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
            out: torch.Tensor, kv_lora_rank: int, scale: float) -> None:
    b, heads, d = q.shape
    if b == 0 or heads == 0:
        return
    gpu = gpu_codegen(q)
    cfg = default_config(heads, gpu)
    c = kv_cache.view(-1, d)
    r, p = kv_lora_rank, d - kv_lora_rank
    _mla_decode[(b, triton.cdiv(heads, cfg.block_h))](
        q, c, out, kv_indptr, kv_indices, float(scale) * _LOG2E, heads, q.stride(0), q.stride(1), c.stride(0),
        out.stride(0), out.stride(1), R=r, P=p, P_PAD=max(16, next_pow2(p)), BLOCK_H=cfg.block_h,
        BLOCK_N=cfg.block_n, DOT_FP32=not gpu, num_warps=cfg.num_warps, num_stages=cfg.num_stages)


@_mla_op.register_fake
def _mla_fake(q, kv_cache, kv_indptr, kv_indices, out, kv_lora_rank, scale) -> None:
    return None


def mla_decode(q: torch.Tensor, kv_cache: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
               kv_lora_rank: int = 512, sm_scale: float | None = None,
               out: torch.Tensor | None = None) -> torch.Tensor:
    """MLA decode over one-token pages (aiter ``mla_decode_fwd`` / SGLang's contract).

    ``q`` [B, H, R + P] bf16/fp16 (absorbed nope part, then rope); ``kv_cache`` [num_pages, 1, 1,
    R + P] (or [num_pages, R + P]); ``kv_indptr`` [B + 1] int32; ``kv_indices`` int32 pages of
    every sequence. R = ``kv_lora_rank`` must be a power of two (512 in DeepSeek models).
    ``sm_scale`` defaults to 1/sqrt(R + P). Returns ``out`` [B, H, R] in q's dtype.
    """
    what = "mla_decode"
    check_dtype(q, (torch.bfloat16, torch.float16), what, "q")
    if q.dim() != 3 or q.stride(-1) != 1:
        raise ValueError(f"{what}: q must be [batch, heads, kv_lora_rank + rope_dim], contiguous in the last dim")
    b, heads, d = q.shape
    r = int(kv_lora_rank)
    if r < 16 or r & (r - 1) or r >= d:
        raise ValueError(f"{what}: kv_lora_rank {r} must be a power of two >= 16 below q's last dim {d}")
    if kv_cache.dtype != q.dtype or kv_cache.shape[-1] != d or kv_cache.numel() % d:
        raise ValueError(f"{what}: kv_cache must hold rows of {d} {q.dtype} (got {tuple(kv_cache.shape)}, "
                         f"{kv_cache.dtype})")
    if kv_cache.dim() == 4 and kv_cache.shape[1:3] != (1, 1):
        raise ValueError(f"{what}: kv_cache pages must be one token of one latent head, got {tuple(kv_cache.shape)}")
    if not kv_cache.is_contiguous():
        raise ValueError(f"{what}: kv_cache must be contiguous (latent rows of {d} elements)")
    for name, t, n in (("kv_indptr", kv_indptr, b + 1), ("kv_indices", kv_indices, None)):
        if t.dtype != torch.int32 or t.dim() != 1 or (n is not None and t.shape[0] != n):
            raise ValueError(f"{what}: {name} must be 1-D int32" + (f" of length {n}" if n else "")
                             + f", got {tuple(t.shape)} {t.dtype}")
    if out is None:
        out = q.new_empty(b, heads, r)
    else:
        check_out(out, (b, heads, r), q.dtype, q.device, what)
    if triton is None:
        raise RuntimeError(f"{what}: Triton is not importable here")
    if q.device.type != "cuda" and not (q.device.type == "cpu" and interpreting()):
        raise RuntimeError(f"{what}: tensors on {q.device} are supported only under TRITON_INTERPRET=1")
    scale = d ** -0.5 if sm_scale is None else float(sm_scale)
    _mla_op(q, kv_cache, kv_indptr, kv_indices, out, r, scale)
    return out
