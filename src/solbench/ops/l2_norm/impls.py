"""l2_norm implementations: ours_triton, torch_eager, torch_compile, torch_native (F.normalize)."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, add_impl

OP = "l2_norm"


def eager_l2_norm(x, eps):
    """The fla/vLLM torch reference formulation: fp32 sum of squares, rsqrt, cast back."""
    import torch

    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).sum(dim=-1, keepdim=True) + eps)).to(x.dtype)


def native_l2_norm(x, eps):
    """``F.normalize``: PyTorch's fused path. It divides by max(||x||, eps') instead of
    sqrt(||x||^2 + eps); with eps' = sqrt(eps) the two agree to ~eps / ||x||^2 relative on any
    row that is not almost zero (all rows here)."""
    import torch.nn.functional as F

    return F.normalize(x, p=2.0, dim=-1, eps=eps ** 0.5)


def ours(x, eps, out=None):
    from solbench.kernels.rownorm import l2_norm

    return l2_norm(x, eps, out=out)


add_impl(Impl(OP, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton row-norm kernel, L2 mode"))
register_torch_baselines(OP, eager_l2_norm, "fp32 sum of squares, rsqrt, cast")
add_impl(Impl(OP, "torch_native", native_l2_norm, baseline=True,
              description="torch.nn.functional.normalize (clamp-eps semantics)"))
