"""mrope baseline: vLLM's native formulation (sections picked by split + cat, rotate-half in the
activation dtype)."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.ops.mrope.spec import spec


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
        xh = x.view(x.shape[0], -1, head_size)
        rot, rest = xh[..., :rotary_dim], xh[..., rotary_dim:]
        if is_neox_style:
            a, b = rot[..., :half], rot[..., half:]
            r = torch.cat([a * c - b * s, b * c + a * s], dim=-1)
        else:
            a, b = rot[..., 0::2], rot[..., 1::2]
            r = torch.stack([a * c - b * s, b * c + a * s], dim=-1).flatten(-2)
        outs.append(torch.cat([r, rest], dim=-1).reshape(x.shape))
    return tuple(outs)


register_torch_baselines(spec.name, eager, "vLLM forward_native: split/cat sections, rotate-half in bf16")
