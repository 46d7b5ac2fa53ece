"""attention_forward baselines: explicit eager attention (and its torch.compile) and
``F.scaled_dot_product_attention`` (torch_native)."""
from __future__ import annotations

from solbench.core.attention_ref import dense_scores_support, pad_varlen, unpad_varlen
from solbench.core.baselines import register_torch_baselines
from solbench.core.spec import Impl, add_impl
from solbench.ops.attention_forward.spec import spec


def _expand_kv(x, num_heads: int):
    """[B, L, Hkv, D] -> [B, L, H, D] for grouped-query inputs (query head h uses kv head h // G)."""
    g = num_heads // x.shape[2]
    return x if g == 1 else x.repeat_interleave(g, dim=2)


def eager(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale):
    """Pad the batch, softmax(q k^T · scale) v in bf16 with a key-padding mask, unpad."""
    import torch

    qp, _ = pad_varlen(q, cu_seqlens_q, max_seqlen_q)
    kp, kvalid = pad_varlen(k, cu_seqlens_k, max_seqlen_k)
    vp, _ = pad_varlen(v, cu_seqlens_k, max_seqlen_k)
    kp, vp = _expand_kv(kp, q.shape[1]), _expand_kv(vp, q.shape[1])
    s = torch.einsum("bqhd,bkhd->bhqk", qp, kp) * softmax_scale
    s = s.masked_fill(~kvalid[:, None, None, :], float("-inf"))
    p = torch.softmax(s, dim=-1)
    o = torch.einsum("bhqk,bkhd->bqhd", p, vp)
    return unpad_varlen(o, cu_seqlens_q, q.shape[0])


def native(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale):
    """F.scaled_dot_product_attention on the padded batch; with one sequence there is no padding
    and no mask, so the flash backend can run."""
    import torch.nn.functional as F

    qp, _ = pad_varlen(q, cu_seqlens_q, max_seqlen_q)
    kp, kvalid = pad_varlen(k, cu_seqlens_k, max_seqlen_k)
    vp, _ = pad_varlen(v, cu_seqlens_k, max_seqlen_k)
    kp, vp = _expand_kv(kp, q.shape[1]), _expand_kv(vp, q.shape[1])
    mask = None if cu_seqlens_q.shape[0] == 2 else kvalid[:, None, None, :]
    o = F.scaled_dot_product_attention(qp.transpose(1, 2), kp.transpose(1, 2), vp.transpose(1, 2),
                                       attn_mask=mask, scale=softmax_scale)
    return unpad_varlen(o.transpose(1, 2), cu_seqlens_q, q.shape[0])


def _dense_supports(shape, device):
    lens = spec.seq_lens(shape)
    return dense_scores_support(len(lens) * int(shape["num_heads"]) * max(lens) ** 2,
                                "eager attention")


register_torch_baselines(spec.name, eager, "padded batch, bf16 einsum + masked softmax + einsum",
                         supports=_dense_supports)
add_impl(Impl(spec.name, "torch_native", native, baseline=True,
              description="F.scaled_dot_product_attention on the padded batch (key-padding mask when varlen)"))
