"""unified_attention baselines: the paged cache gathered into a padded batch, then explicit eager
attention (and its torch.compile) or ``F.scaled_dot_product_attention`` (torch_native)."""
from __future__ import annotations

from solbench.core.attention_ref import dense_scores_support, pad_varlen, unpad_varlen, visibility_mask
from solbench.core.baselines import register_torch_baselines
from solbench.core.paged import token_slots
from solbench.core.spec import Impl, add_impl
from solbench.ops.unified_attention.spec import spec


def _gather(q, k_cache, v_cache, cu_seqlens_q, block_table, max_seqlen_q, max_seqlen_k):
    """Padded q [B, Lq, H, D] and the sequences' K, V [B, Lk, H, D] (kv heads repeated for GQA)."""
    nb, bs, hkv, d = k_cache.shape
    h = q.shape[1]
    slots = token_slots(block_table, max_seqlen_k, bs)
    kp = k_cache.reshape(nb * bs, hkv, d)[slots]
    vp = v_cache.reshape(nb * bs, hkv, d)[slots]
    if h != hkv:
        kp, vp = kp.repeat_interleave(h // hkv, dim=2), vp.repeat_interleave(h // hkv, dim=2)
    qp, _ = pad_varlen(q, cu_seqlens_q, max_seqlen_q)
    return qp, kp, vp


def eager(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q, max_seqlen_k, softmax_scale):
    """Gather the pages, bf16 einsum + causal/padding-masked softmax + einsum, fp32 output."""
    import torch

    qp, kp, vp = _gather(q, k_cache, v_cache, cu_seqlens_q, block_table, max_seqlen_q, max_seqlen_k)
    mask = visibility_mask(cu_seqlens_q, seqused_k, max_seqlen_q, max_seqlen_k, causal=True)
    s = torch.einsum("bqhd,bkhd->bhqk", qp, kp) * softmax_scale
    s = s.masked_fill(~mask[:, None], float("-inf"))
    p = torch.softmax(s, dim=-1)
    o = torch.einsum("bhqk,bkhd->bqhd", p, vp)
    return unpad_varlen(o, cu_seqlens_q, q.shape[0]).float()


def native(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q, max_seqlen_k, softmax_scale):
    """F.scaled_dot_product_attention on the gathered batch. One sequence with L_q = L_k (known
    from the host-side maxima) is plain causal attention: ``is_causal`` and no mask, so the flash
    backend can run; otherwise a boolean bottom-right causal + padding mask."""
    import torch.nn.functional as F

    qp, kp, vp = _gather(q, k_cache, v_cache, cu_seqlens_q, block_table, max_seqlen_q, max_seqlen_k)
    single = seqused_k.shape[0] == 1 and int(max_seqlen_q) == int(max_seqlen_k)
    mask = None if single else visibility_mask(cu_seqlens_q, seqused_k, max_seqlen_q, max_seqlen_k, True)[:, None]
    o = F.scaled_dot_product_attention(qp.transpose(1, 2), kp.transpose(1, 2), vp.transpose(1, 2),
                                       attn_mask=mask, is_causal=single, scale=softmax_scale)
    return unpad_varlen(o.transpose(1, 2), cu_seqlens_q, q.shape[0]).float()


def _dense_supports(shape, device):
    lq, lk = spec.lengths(shape)
    return dense_scores_support(len(lk) * int(shape["num_query_heads"]) * max(lq) * max(lk), "eager attention")


register_torch_baselines(spec.name, eager, "gather pages, bf16 einsum + masked softmax + einsum, fp32 out",
                         supports=_dense_supports)
add_impl(Impl(spec.name, "torch_native", native, baseline=True,
              description="gather pages + F.scaled_dot_product_attention (is_causal for one sequence, else a mask)"))
