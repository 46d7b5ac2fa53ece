"""mrope implementations: ours_triton (in place, as vLLM's triton_mrope), vLLM's native formulation
eager and compiled (sections picked by split + cat, rotate-half in the activation dtype), and
Liger's Qwen2-VL mrope kernel where it imports."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, Support, add_impl
from solbench.ops.mrope.spec import spec
from solbench.peers import LIGER

_LIGER = ("liger_kernel.ops.qwen2vl_mrope", "LigerQwen2VLMRopeFunction")


def eager(q, k, cos, sin, mrope_section, head_size, rotary_dim, mrope_interleaved, is_neox_style):
    """Pick each section's plane, cast cos/sin to the activation dtype, rotate q and k."""
    import torch

    if mrope_interleaved:
        ch = torch.arange(cos.shape[-1], device=cos.device)
        is_h = (ch % 3 == 1) & (ch <= 3 * mrope_section[1])
        is_w = (ch % 3 == 2) & (ch <= 3 * mrope_section[2])
        c = torch.where(is_w, cos[2], torch.where(is_h, cos[1], cos[0]))
        s = torch.where(is_w, sin[2], torch.where(is_h, sin[1], sin[0]))
    else:
        c = torch.cat([m[i] for i, m in enumerate(cos.split(mrope_section, dim=-1))], dim=-1)
        s = torch.cat([m[i] for i, m in enumerate(sin.split(mrope_section, dim=-1))], dim=-1)
    c = c.to(q.dtype)[:, None, :]
    s = s.to(q.dtype)[:, None, :]
    half = rotary_dim // 2
    outs = []
    for x in (q, k):
        xh = x.view(x.shape[0], x.shape[1] // head_size, head_size)
        rot, rest = xh[..., :rotary_dim], xh[..., rotary_dim:]
        if is_neox_style:
            a, b = rot[..., :half], rot[..., half:]
            r = torch.cat([a * c - b * s, b * c + a * s], dim=-1)
        else:
            a, b = rot[..., 0::2], rot[..., 1::2]
            r = torch.stack([a * c - b * s, b * c + a * s], dim=-1).flatten(-2)
        outs.append(torch.cat([r, rest], dim=-1).reshape(x.shape))
    return tuple(outs)


def ours(q, k, cos, sin, mrope_section, head_size, rotary_dim, mrope_interleaved, is_neox_style):
    from solbench.kernels.rope import mrope

    return mrope(q, k, cos, sin, mrope_section, head_size, rotary_dim, mrope_interleaved, is_neox_style)


def liger(q, k, cos, sin, mrope_section, head_size, rotary_dim, mrope_interleaved, is_neox_style):
    """LigerQwen2VLMRopeFunction in place on q and k viewed as [1, heads, T, head_size]. It takes
    Hugging Face's full-width cos/sin [3, 1, T, head_size] (each half repeated): the adapter's
    torch.cat builds them, a cost a model holding that cache would not pay."""
    import torch

    fn = LIGER.get(*_LIGER)
    t = q.shape[0]
    c = torch.cat([cos, cos], dim=-1)[:, None]
    s = torch.cat([sin, sin], dim=-1)[:, None]
    qv = q.view(1, t, -1, head_size).transpose(1, 2)
    kv = k.view(1, t, -1, head_size).transpose(1, 2)
    qo, ko = fn.apply(qv, kv, c, s, list(mrope_section))   # in place on q and k when they are dense
    return qo.transpose(1, 2).reshape(q.shape), ko.transpose(1, 2).reshape(k.shape)


def liger_supports(shape, device) -> Support:
    if shape.get("mrope_interleaved", False) or not shape.get("is_neox_style", True):
        return Support.no("Liger's Qwen2-VL mrope has sectioned planes and NeoX pairs only")
    if int(shape["rotary_dim"]) != int(shape["head_size"]):
        return Support.no("Liger's mrope rotates the whole head (no partial rotary dim)")
    return Support.yes()


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support,
              description="solbench Triton: q and k of several tokens per program, in place, one launch"))
register_torch_baselines(spec.name, eager, "vLLM forward_native: split/cat sections, rotate-half in bf16")
add_impl(Impl(spec.name, "liger", liger, available=lambda: LIGER.support(*_LIGER), supports=liger_supports,
              baseline=True, description="LigerQwen2VLMRopeFunction in place (full-width cos/sin built by torch.cat)"))
