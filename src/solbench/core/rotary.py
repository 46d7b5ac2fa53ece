"""Rotary position embedding mechanics shared by the RoPE operators (mrope, fused_qkv_rope).

A rotary pair (a, b) at frequency index i and position m becomes
(a·cos(m θ_i) - b·sin(m θ_i), b·cos(m θ_i) + a·sin(m θ_i)), θ_i = base^(-2i / rotary_dim).
NeoX style pairs element i with i + rotary_dim/2 (rotate-half); GPT-J style pairs 2i with 2i+1.
Dimensions past ``rotary_dim`` pass through unchanged.
"""
from __future__ import annotations


def inv_freq(rotary_dim: int, base: float, device, dtype=None):
    """θ_i = base^(-2i / rotary_dim), i < rotary_dim / 2 (float64 unless ``dtype`` is given)."""
    import torch

    i = torch.arange(0, rotary_dim, 2, device=device, dtype=torch.float64)
    f = 1.0 / (float(base) ** (i / rotary_dim))
    return f if dtype is None else f.to(dtype)


def cos_sin(positions, rotary_dim: int, base: float):
    """cos(m θ_i), sin(m θ_i) for every position m: ``[*positions.shape, rotary_dim / 2]`` fp32,
    the angles formed in float64 so that large positions lose no accuracy."""
    import torch

    ang = positions.to(torch.float64)[..., None] * inv_freq(rotary_dim, base, positions.device)
    return torch.cos(ang).float(), torch.sin(ang).float()


def rotate(x, cos, sin, is_neox: bool):
    """Apply the rotation to the first ``2 · cos.shape[-1]`` entries of x's last dim, fp32 math.

    ``x`` [..., head_size]; ``cos``/``sin`` broadcastable to [..., rotary_dim / 2]. Returns fp32
    [..., head_size] (the pass-through part copied)."""
    import torch

    half = cos.shape[-1]
    rd = 2 * half
    xf = x.float()
    rot, rest = xf[..., :rd], xf[..., rd:]
    if is_neox:
        a, b = rot[..., :half], rot[..., half:]
    else:
        a, b = rot[..., 0::2], rot[..., 1::2]
    ra = a * cos - b * sin
    rb = b * cos + a * sin
    if is_neox:
        out = torch.cat([ra, rb], dim=-1)
    else:
        out = torch.stack([ra, rb], dim=-1).flatten(-2)
    return torch.cat([out, rest], dim=-1)


def rotary_flops(num_rotated_elements: int) -> int:
    """Two multiplies and one add per rotated element (a pair costs 4 mul + 2 add)."""
    return 3 * int(num_rotated_elements)


def rope_tolerance(dtype: str):
    """Tolerance of a 16-bit RoPE output against the fp32 reference. A baseline that rounds in
    the activation dtype (bias add, cos/sin, both products, the difference) is off by up to ~4
    ulps of |a| + |b| (inputs ~N(0,1) with tails to 4): 0.03 absolute in bf16 where the two
    products cancel, an eighth of that in fp16 (2^-11 vs 2^-9 rounding, measured RMS 4e-4). The
    RMS bounds are the dtypes' defaults; a wrong pairing, section or position is off by O(1)."""
    from solbench.core.spec import Tolerance

    if dtype == "fp16":
        return Tolerance(atol=5e-3, rtol=2e-3, rms_rtol=1e-3)
    return Tolerance(atol=4e-2, rtol=1.6e-2, rms_rtol=8e-3)
