"""fused_add_rms_norm implementations: ours_triton, torch_eager, torch_compile, torch_native
(add + F.rms_norm), liger."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, add_impl
from solbench.ops.rms_norm.spec import eager_rms_norm
from solbench.peers import LIGER, torch_rms_norm_support

OP = "fused_add_rms_norm"
_LIGER = ("liger_kernel.ops.fused_add_rms_norm", "LigerFusedAddRMSNormFunction")


def eager_fused_add(x, residual, weight, eps):
    """vLLM ``forward_native`` with a residual: add in bf16, then the eager RMSNorm."""
    s = x + residual
    return eager_rms_norm(s, weight, eps), s


def native_fused_add(x, residual, weight, eps):
    import torch.nn.functional as F

    s = x + residual
    return F.rms_norm(s, (s.shape[-1],), weight, eps), s


def ours(x, residual, weight, eps, out=None):
    from solbench.kernels.rownorm import fused_add_rms_norm, fused_add_rms_norm_

    if out is None:  # the library's in-place form, like vLLM
        return fused_add_rms_norm_(x, residual, weight, eps)
    return fused_add_rms_norm(x, residual, weight, eps, out=out)


def liger(x, residual, weight, eps):
    fn = LIGER.get(*_LIGER)
    # offset 0, "llama" casting, not in place: returns (out, x + residual).
    return fn.apply(x, residual, weight, eps, 0.0, "llama", False)


add_impl(Impl(OP, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton fused add + RMSNorm (sum kept on chip, one pass)"))
register_torch_baselines(OP, eager_fused_add, "add in bf16, then vLLM forward_native RMSNorm")
add_impl(Impl(OP, "torch_native", native_fused_add, available=torch_rms_norm_support, baseline=True,
              description="x + residual, then torch.nn.functional.rms_norm"))
add_impl(Impl(OP, "liger", liger, available=lambda: LIGER.support(*_LIGER), baseline=True,
              description="liger_kernel LigerFusedAddRMSNormFunction (casting_mode llama)"))
