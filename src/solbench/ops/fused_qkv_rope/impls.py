"""fused_qkv_rope baseline: bias add, split, rotate-half RoPE with fp32 cos/sin, transpose."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.ops.fused_qkv_rope.spec import spec


def eager(qkv, qkv_bias, positions, num_heads, num_kv_heads, head_dim, rope_dim, rope_theta):
    """What a PyTorch model does: (qkv + bias).split, q·cos + rotate_half(q)·sin, transpose."""
    import torch

    t = qkv.shape[0]
    x = (qkv + qkv_bias).view(t, num_heads + 2 * num_kv_heads, head_dim)
    q, k, v = x.split([num_heads, num_kv_heads, num_kv_heads], dim=1)
    inv = 1.0 / (rope_theta ** (torch.arange(0, rope_dim, 2, device=qkv.device, dtype=torch.float32) / rope_dim))
    ang = positions.float()[:, None] * inv[None, :]
    emb = torch.cat([ang, ang], dim=-1)[:, None, :]
    cos, sin = emb.cos(), emb.sin()

    def rope(y):
        r, rest = y[..., :rope_dim], y[..., rope_dim:]
        half = rope_dim // 2
        rot_half = torch.cat([-r[..., half:], r[..., :half]], dim=-1)
        return torch.cat([(r * cos + rot_half * sin).to(y.dtype), rest], dim=-1)

    return tuple(y.transpose(0, 1).unsqueeze(0).contiguous() for y in (rope(q), rope(k), v))


register_torch_baselines(spec.name, eager, "bias add + split + rotate-half RoPE (fp32 cos/sin) + transpose")
