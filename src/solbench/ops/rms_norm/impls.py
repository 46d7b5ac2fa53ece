"""rms_norm implementations: ours_triton, torch_eager, torch_compile, torch_native (F.rms_norm),
liger."""
from __future__ import annotations

import functools

from solbench.core.baselines import register_torch_baselines
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, Support, add_impl

OP = "rms_norm"


def eager_rms_norm(x, weight, eps):
    """What vLLM's ``RMSNorm.forward_native`` does: fp32 statistics, round, then weight in bf16."""
    import torch

    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return xf.to(x.dtype) * weight


def native_support() -> Support:
    import torch.nn.functional as F

    if not hasattr(F, "rms_norm"):
        return Support.no("this torch has no torch.nn.functional.rms_norm (added in 2.4)")
    return Support.yes()


def native_rms_norm(x, weight, eps):
    import torch.nn.functional as F

    return F.rms_norm(x, (x.shape[-1],), weight, eps)


@functools.lru_cache(maxsize=None)
def liger_import(module: str, name: str):
    """(object, "") or (None, reason): liger_kernel is optional."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name), ""
    except Exception as e:  # noqa: BLE001
        return None, f"liger_kernel is not importable ({type(e).__name__}: {str(e)[:120]})"


def liger_support(module: str, name: str) -> Support:
    import torch

    fn, why = liger_import(module, name)
    if fn is None:
        return Support.no(why)
    if not torch.cuda.is_available():
        return Support.no("liger's kernels need a CUDA device")
    return Support.yes()


def ours(x, weight, eps, out=None):
    from solbench.ops.rms_norm.api import rms_norm

    return rms_norm(x, weight, eps, out=out)


def liger(x, weight, eps):
    fn, _ = liger_import("liger_kernel.ops.rms_norm", "LigerRMSNormFunction")
    # offset 0, "llama" casting (fp32 statistics, round before the weight): vLLM's semantics.
    return fn.apply(x, weight, eps, 0.0, "llama")


add_impl(Impl(OP, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton row-norm kernel (one pass, fp32 math, several rows per program)"))
register_torch_baselines(OP, eager_rms_norm, "vLLM forward_native: fp32 rms, round, weight in bf16")
add_impl(Impl(OP, "torch_native", native_rms_norm, available=native_support, baseline=True,
              description="torch.nn.functional.rms_norm"))
add_impl(Impl(OP, "liger", liger, available=lambda: liger_support("liger_kernel.ops.rms_norm", "LigerRMSNormFunction"),
              baseline=True, description="liger_kernel LigerRMSNormFunction (casting_mode llama)"))
