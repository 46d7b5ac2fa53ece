"""fused_qkv_rope implementations: ours_triton, the torch baselines (bias add, split, RoPE with fp32
cos/sin, transpose) and Liger's rope kernel behind the same torch prelude where it imports."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, Support, add_impl
from solbench.ops.fused_qkv_rope.spec import spec
from solbench.peers import LIGER

_LIGER = ("liger_kernel.ops.rope", "LigerRopeFunction")


def _split_heads(qkv, qkv_bias, num_heads, num_kv_heads, head_dim):
    t = qkv.shape[0]
    x = qkv if qkv_bias is None else qkv + qkv_bias
    return x.view(t, num_heads + 2 * num_kv_heads, head_dim).split([num_heads, num_kv_heads, num_kv_heads], dim=1)


def _cos_sin(positions, rope_dim, rope_theta, device):
    import torch

    inv = 1.0 / (rope_theta ** (torch.arange(0, rope_dim, 2, device=device, dtype=torch.float32) / rope_dim))
    ang = positions.float()[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


def eager(qkv, qkv_bias, positions, num_heads, num_kv_heads, head_dim, rope_dim, rope_theta, is_neox_style=True):
    """What a PyTorch model does: (qkv + bias).split, q·cos + rotate(q)·sin, transpose."""
    import torch

    q, k, v = _split_heads(qkv, qkv_bias, num_heads, num_kv_heads, head_dim)
    cos, sin = _cos_sin(positions, rope_dim, rope_theta, qkv.device)
    if is_neox_style:
        cos, sin = torch.cat([cos, cos], dim=-1)[:, None, :], torch.cat([sin, sin], dim=-1)[:, None, :]
    else:
        cos, sin = cos.repeat_interleave(2, dim=-1)[:, None, :], sin.repeat_interleave(2, dim=-1)[:, None, :]

    def rope(y):
        r, rest = y[..., :rope_dim], y[..., rope_dim:]
        if is_neox_style:
            half = rope_dim // 2
            turned = torch.cat([-r[..., half:], r[..., :half]], dim=-1)
        else:
            turned = torch.stack([-r[..., 1::2], r[..., 0::2]], dim=-1).flatten(-2)
        return torch.cat([(r * cos + turned * sin).to(y.dtype), rest], dim=-1)

    return tuple(y.transpose(0, 1).unsqueeze(0).contiguous() for y in (rope(q), rope(k), v))


def ours(qkv, qkv_bias, positions, num_heads, num_kv_heads, head_dim, rope_dim, rope_theta, is_neox_style=True,
         out=None):
    from solbench.kernels.rope import fused_qkv_rope

    return fused_qkv_rope(qkv, positions, num_heads, num_kv_heads, head_dim, rope_dim, rope_theta,
                          qkv_bias=qkv_bias, is_neox_style=is_neox_style, out=out)


def liger(qkv, qkv_bias, positions, num_heads, num_kv_heads, head_dim, rope_dim, rope_theta, is_neox_style=True):
    """The torch prelude (bias add, head split, cos/sin of the positions), LigerRopeFunction on q
    and k viewed as [1, heads, T, D], and the transpose to rtp-llm's dense [1, heads, T, D]."""
    import torch

    fn = LIGER.get(*_LIGER)
    # Token-major copies ([1, T, heads, D]): Liger rotates them in place, never qkv itself.
    q, k, v = (y.unsqueeze(0).clone(memory_format=torch.contiguous_format)
               for y in _split_heads(qkv, qkv_bias, num_heads, num_kv_heads, head_dim))
    cos, sin = _cos_sin(positions, rope_dim, rope_theta, qkv.device)
    cos, sin = torch.cat([cos, cos], dim=-1)[None], torch.cat([sin, sin], dim=-1)[None]
    q, k = fn.apply(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
    return q.contiguous(), k.contiguous(), v.transpose(1, 2).contiguous()


def liger_supports(shape, device) -> Support:
    if not shape.get("is_neox_style", True):
        return Support.no("Liger's rope pairs halves (NeoX) only")
    if int(shape.get("rope_dim", shape["head_dim"])) != int(shape["head_dim"]):
        return Support.no("Liger's rope rotates the whole head (no partial rotary dim)")
    return Support.yes()


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton: bias add, RoPE (angles in fp64) and the [heads, T, D] split in "
                          "one launch"))
register_torch_baselines(spec.name, eager, "bias add + split + rotate-half RoPE (fp32 cos/sin) + transpose")
add_impl(Impl(spec.name, "liger", liger, available=lambda: LIGER.support(*_LIGER), supports=liger_supports,
              baseline=True, description="torch bias add + head split + cos/sin, then LigerRopeFunction"))
