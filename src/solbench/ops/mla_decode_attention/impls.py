"""mla_decode_attention baselines: gather each sequence's latent rows, then explicit eager
attention (and its torch.compile) or ``F.scaled_dot_product_attention``."""
from __future__ import annotations

from solbench.core.attention_ref import pad_varlen
from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, add_impl
from solbench.ops.mla_decode_attention.spec import spec


def _gather(kv_cache, kv_indptr, kv_indices, max_seqlen_k):
    """Latent rows of every sequence [B, L, D] and their validity [B, L]."""
    pages, valid = pad_varlen(kv_indices, kv_indptr, max_seqlen_k)
    return kv_cache.reshape(-1, kv_cache.shape[-1])[pages.long()], valid


def eager(q, kv_cache, kv_indptr, kv_indices, kv_lora_rank, max_seqlen_k, sm_scale):
    """Scores against the whole latent row, length-masked softmax, values = its first R entries."""
    import torch

    c, valid = _gather(kv_cache, kv_indptr, kv_indices, max_seqlen_k)
    s = torch.einsum("bhd,bld->bhl", q, c) * sm_scale
    s = s.masked_fill(~valid[:, None, :], float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("bhl,blr->bhr", p, c[..., :kv_lora_rank])


def native(q, kv_cache, kv_indptr, kv_indices, kv_lora_rank, max_seqlen_k, sm_scale):
    """F.scaled_dot_product_attention with one kv head broadcast to all query heads."""
    import torch.nn.functional as F

    c, valid = _gather(kv_cache, kv_indptr, kv_indices, max_seqlen_k)
    b, h, _ = q.shape
    k = c[:, None].expand(b, h, c.shape[1], c.shape[2])
    v = k[..., :kv_lora_rank]
    o = F.scaled_dot_product_attention(q[:, :, None, :], k, v, attn_mask=valid[:, None, None, :], scale=sm_scale)
    return o[:, :, 0, :]


register_torch_baselines(spec.name, eager, "gather latent rows, einsum + masked softmax + einsum")
add_impl(Impl(spec.name, "torch_native", native, baseline=True,
              description="gather latent rows + F.scaled_dot_product_attention (kv head broadcast)"))


def ours(q, kv_cache, kv_indptr, kv_indices, kv_lora_rank, max_seqlen_k, sm_scale, out=None):
    from solbench.kernels.mla import mla_decode

    return mla_decode(q, kv_cache, kv_indptr, kv_indices, kv_lora_rank, sm_scale, out=out)


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton MLA decode: a sequence's heads as the tile's rows, each latent tile "
                          "loaded once as keys and values"))
