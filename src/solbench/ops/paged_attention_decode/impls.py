"""paged_attention_decode implementations: ours_triton (the flash kernel reading the x-split
cache in place), and the sequences' pages gathered out of the aiter layout for explicit eager
attention (and its torch.compile) or ``F.scaled_dot_product_attention``."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, add_impl
from solbench.ops.paged_attention_decode.spec import spec


def ours(query, k_cache, v_cache, block_tables, seq_lens, max_seq_len, scale, out=None):
    from solbench.kernels.attention import paged_attention_decode

    return paged_attention_decode(query, k_cache, v_cache, block_tables, seq_lens, scale, out=out)


def _gather(k_cache, v_cache, block_tables, max_seq_len):
    """K, V of every sequence as [B, Hkv, max_blocks * block_size, D] (token-major per head)."""
    nb, hkv, dx, bs, x = k_cache.shape
    nblk = -(-int(max_seq_len) // bs)
    bt = block_tables[:, :nblk]
    b = bt.shape[0]
    k = k_cache[bt].permute(0, 2, 1, 4, 3, 5).reshape(b, hkv, nblk * bs, dx * x)
    v = v_cache[bt].permute(0, 2, 1, 4, 3).reshape(b, hkv, nblk * bs, v_cache.shape[2])
    return k, v


def eager(query, k_cache, v_cache, block_tables, seq_lens, max_seq_len, scale):
    """Gather pages, grouped-query einsum in the input dtype, length-masked softmax, einsum."""
    import torch

    b, h, d = query.shape
    k, v = _gather(k_cache, v_cache, block_tables, max_seq_len)
    hkv, t = k.shape[1], k.shape[2]
    q = query.view(b, hkv, h // hkv, d)
    s = torch.einsum("bkgd,bktd->bkgt", q, k) * scale
    valid = torch.arange(t, device=query.device)[None, :] < seq_lens[:, None]
    s = s.masked_fill(~valid[:, None, None, :], float("-inf"))
    p = torch.softmax(s, dim=-1)
    return torch.einsum("bkgt,bktd->bkgd", p, v).reshape(b, h, d)


def native(query, k_cache, v_cache, block_tables, seq_lens, max_seq_len, scale):
    """Gather pages, repeat kv heads, F.scaled_dot_product_attention with a length mask."""
    import torch
    import torch.nn.functional as F

    b, h, d = query.shape
    k, v = _gather(k_cache, v_cache, block_tables, max_seq_len)
    g = h // k.shape[1]
    if g > 1:
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    valid = torch.arange(k.shape[2], device=query.device)[None, :] < seq_lens[:, None]
    o = F.scaled_dot_product_attention(query[:, :, None, :], k, v, attn_mask=valid[:, None, None, :], scale=scale)
    return o[:, :, 0, :]


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton flash decode: one program per sequence and kv head, its G query "
                          "heads as the rows of one tensor-core tile"))
register_torch_baselines(spec.name, eager, "gather pages, einsum + length-masked softmax + einsum")
add_impl(Impl(spec.name, "torch_native", native, baseline=True,
              description="gather pages + F.scaled_dot_product_attention with a length mask"))
