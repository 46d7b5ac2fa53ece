"""rms_norm implementations: ours_triton, torch_eager, torch_compile, torch_native (F.rms_norm),
liger."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, add_impl
from solbench.ops.rms_norm.spec import eager_rms_norm
from solbench.peers import LIGER, torch_rms_norm_support

OP = "rms_norm"
_LIGER = ("liger_kernel.ops.rms_norm", "LigerRMSNormFunction")


def native_rms_norm(x, weight, eps):
    import torch.nn.functional as F

    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def ours(x, weight, eps, out=None):
    from solbench.kernels.rownorm import rms_norm

    return rms_norm(x, weight, eps, out=out)


def liger(x, weight, eps):
    fn = LIGER.get(*_LIGER)
    # offset 0, "llama" casting (fp32 statistics, round before the weight): vLLM's semantics.
    return fn.apply(x, weight, eps, 0.0, "llama")


add_impl(Impl(OP, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton row-norm kernel (one pass, fp32 math, several rows per program)"))
register_torch_baselines(OP, eager_rms_norm, "vLLM forward_native: fp32 rms, round, weight in bf16")
add_impl(Impl(OP, "torch_native", native_rms_norm, available=torch_rms_norm_support, baseline=True,
              description="torch.nn.functional.rms_norm"))
add_impl(Impl(OP, "liger", liger, available=lambda: LIGER.support(*_LIGER),
              baseline=True, description="liger_kernel LigerRMSNormFunction (casting_mode llama)"))
