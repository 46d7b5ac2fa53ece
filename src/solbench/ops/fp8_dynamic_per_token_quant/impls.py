"""fp8_dynamic_per_token_quant implementations: ours_triton, torch_eager, torch_compile, vllm.

PyTorch has no native fused per-token fp8 quantization (``torch._scaled_mm`` consumes fp8 but
does not produce it), so there is no ``torch_native`` peer.
"""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, add_impl
from solbench.kernels.fp8_format import FP8_E4M3FN_MAX, fp8_dtype
from solbench.ops.fp8_dynamic_per_token_quant.spec import MIN_AMAX
from solbench.peers import VLLM

OP = "fp8_dynamic_per_token_quant"


def eager_per_token_quant(x):
    """What a user writes: fp32 max-abs per row, scale, divide, clamp, cast."""
    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True).clamp_min(MIN_AMAX) / FP8_E4M3FN_MAX
    q = (xf / scale).clamp(-FP8_E4M3FN_MAX, FP8_E4M3FN_MAX).to(fp8_dtype())
    return q, scale


def ours(x, out=None):
    from solbench.kernels.fp8_quant import dynamic_per_token_quant_fp8

    return dynamic_per_token_quant_fp8(x, out=out)


_VLLM = ("vllm._custom_ops",)


def vllm_per_token(x):
    # vLLM's dynamic per-token fp8 quant; it floors the scale at 1 / (448 * 512) instead of
    # aiter's 1e-10 / 448, which differs only for rows whose max-abs is below 1/512.
    ops = VLLM.get(*_VLLM)
    return ops.scaled_fp8_quant(x, use_per_token_if_dynamic=True)


add_impl(Impl(OP, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton per-token fp8 quant (one pass: row in registers, max-abs and quantize)"))
register_torch_baselines(OP, eager_per_token_quant, "fp32 max-abs per row, divide, clamp, cast to fp8")
add_impl(Impl(OP, "vllm", vllm_per_token, available=lambda: VLLM.support(*_VLLM), baseline=True,
              description="vllm._custom_ops.scaled_fp8_quant(use_per_token_if_dynamic=True)"))
