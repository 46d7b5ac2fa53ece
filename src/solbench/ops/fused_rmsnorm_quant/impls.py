"""fused_rmsnorm_quant implementations: ours_triton, torch_eager, torch_compile.

PyTorch has no native fused RMSNorm + fp8 quantization (``F.rms_norm`` stops at the bf16
output), so there is no ``torch_native`` peer; aiter (the upstream kernel) is ROCm-only.
"""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, add_impl
from solbench.kernels.fp8_format import FP8_E4M3FN_MAX, fp8_dtype

OP = "fused_rmsnorm_quant"


def eager_add_rmsnorm_quant(x, residual, weight, eps):
    """What a user writes: the sum and the norm in fp32, max-abs per row, divide, clamp, cast."""
    import torch

    v = x.float() + residual.float()
    y = v * torch.rsqrt(v.pow(2).mean(dim=-1, keepdim=True) + eps) * weight.float()
    scale = y.abs().amax(dim=-1, keepdim=True) / FP8_E4M3FN_MAX
    q = (y / scale).clamp(-FP8_E4M3FN_MAX, FP8_E4M3FN_MAX).to(fp8_dtype())
    return q, scale, v.to(residual.dtype)


def ours(x, residual, weight, eps, out=None):
    from solbench.kernels.fp8_quant import fused_add_rms_norm_quant

    return fused_add_rms_norm_quant(x, residual, weight, eps, out=out)


add_impl(Impl(OP, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton add + RMSNorm + per-token fp8 quant (one pass, row kept on chip)"))
register_torch_baselines(OP, eager_add_rmsnorm_quant, "fp32 add + RMSNorm, max-abs per row, divide, clamp, cast")
