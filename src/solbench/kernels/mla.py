"""Absorbed multi-head latent attention (MLA) decode in Triton: one query token per sequence,
one latent row per cached token shared by every head.

    out[b, h] = sum_j softmax_j(scale * q[b, h] . c_j) * c_j[:R]

with c_j the latent rows ``kv_cache[kv_indices[j]]`` of sequence b (R = kv_lora_rank, keys the
whole row of R + P, values its first R entries).

Design (the FlashMLA idea): a program owns ``BLOCK_H`` heads of one sequence, so the heads are
the M dimension of the tensor-core tile and each latent tile is loaded once for all of them; the
tile's first R columns serve as the keys' nope part and as the values, the last P as the rope
part. Pages are one token (SGLang's aiter backend), gathered row by row through ``kv_indices``.
When batch x head blocks cannot fill the GPU, the latent rows are split over programs
(flash-decoding) and a combine pass merges them; :func:`solbench.kernels.attention.decode_splits`
states the rule.
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import check_dtype, check_out, functional_op, kernel_op

LOG2E = 1.4426950408889634


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


def _eager(q, kv_cache, kv_indptr, kv_indices, out, kv_lora_rank: int, scale: float) -> None:
    """The torch formulation (off CUDA): per sequence, fp32 scores over its latent rows."""
    c_all = kv_cache.reshape(-1, q.shape[-1])
    ptr = kv_indptr.tolist()
    out.zero_()
    for b in range(q.shape[0]):
        c = c_all[kv_indices[ptr[b]:ptr[b + 1]].long()].float()
        if c.shape[0] == 0:
            continue
        p = torch.softmax(q[b].float() @ c.T * scale, -1)
        out[b] = (p @ c[:, :kv_lora_rank]).to(out.dtype)


@kernel_op("solbench::mla_decode.out", mutates_args=("out",), eager=_eager)
def _mla_op(q: torch.Tensor, kv_cache: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
            out: torch.Tensor, kv_lora_rank: int, scale: float) -> None:
    from solbench.kernels._mla_triton import launch

    launch(q, kv_cache, kv_indptr, kv_indices, out, kv_lora_rank, scale)


@_mla_op.register_fake
def _mla_fake(q, kv_cache, kv_indptr, kv_indices, out, kv_lora_rank, scale) -> None:
    return None


functional_op("solbench::mla_decode", _mla_op,
              lambda q, kv, indptr, indices, r, scale: (q.new_empty(q.shape[0], q.shape[1], r),))


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
        if out.stride(-1) != 1:
            raise ValueError(f"{what}: out must be contiguous in its last dim (stride {out.stride(-1)})")
    scale = d ** -0.5 if sm_scale is None else float(sm_scale)
    _mla_op(q, kv_cache, kv_indptr, kv_indices, out, r, scale)
    return out
