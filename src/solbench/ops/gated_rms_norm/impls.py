"""gated_rms_norm implementations: ours_triton, torch_eager, torch_compile. PyTorch has no fused
gated norm (torch_native is absent on purpose) and liger has no such operator."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, add_impl

OP = "gated_rms_norm"


def eager_gated(x, z, weight, eps, norm_before_gate=True, group_size=None):
    """What a user writes (the HF ``RMSNormGated`` style): fp32 norm, then weight and silu gate."""
    import torch
    import torch.nn.functional as F

    xf = x.float()
    n = x.shape[-1]
    g = group_size or n
    if not norm_before_gate:
        xf = xf * F.silu(z.float())
    xg = xf.view(*xf.shape[:-1], n // g, g)
    y = (xg * torch.rsqrt(xg.pow(2).mean(dim=-1, keepdim=True) + eps)).view(xf.shape) * weight.float()
    if norm_before_gate:
        y = y * F.silu(z.float())
    return y.to(x.dtype)


def ours(x, z, weight, eps, norm_before_gate=True, group_size=None, out=None):
    from solbench.kernels.rownorm import gated_rms_norm

    return gated_rms_norm(x, z, weight, eps, norm_before_gate=norm_before_gate, group_size=group_size, out=out)


add_impl(Impl(OP, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton row-norm kernel with the silu gate fused"))
register_torch_baselines(OP, eager_gated, "fp32 RMSNorm * weight * silu(z)")
