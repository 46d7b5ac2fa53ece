"""layer_norm implementations: ours_triton, torch_eager, torch_compile, torch_native
(F.layer_norm), liger."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, add_impl
from solbench.peers import LIGER

OP = "layer_norm"
_LIGER = ("liger_kernel.ops.layer_norm", "LigerLayerNormFunction")


def eager_layer_norm(x, weight, bias, eps):
    """Written out by hand: fp32 mean and variance, cast, then the affine part in bf16."""
    import torch

    xf = x.float()
    mean = xf.mean(dim=-1, keepdim=True)
    var = (xf - mean).pow(2).mean(dim=-1, keepdim=True)
    return ((xf - mean) * torch.rsqrt(var + eps)).to(x.dtype) * weight + bias


def native_layer_norm(x, weight, bias, eps):
    import torch.nn.functional as F

    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)


def ours(x, weight, bias, eps, out=None):
    from solbench.kernels.rownorm import layer_norm

    return layer_norm(x, weight, bias, eps, out=out)


def liger(x, weight, bias, eps):
    fn = LIGER.get(*_LIGER)
    return fn.apply(x, weight, bias, eps)


add_impl(Impl(OP, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton row-norm kernel, LayerNorm mode"))
register_torch_baselines(OP, eager_layer_norm, "fp32 mean/var by hand, affine in bf16")
add_impl(Impl(OP, "torch_native", native_layer_norm, baseline=True, description="torch.nn.functional.layer_norm"))
add_impl(Impl(OP, "liger", liger, available=lambda: LIGER.support(*_LIGER), baseline=True,
              description="liger_kernel LigerLayerNormFunction"))
