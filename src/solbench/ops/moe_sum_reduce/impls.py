"""moe_sum_reduce implementations: ours_triton, ``torch.sum(x, dim=1, out=out)`` then an in-place scale
(sglang's own torch fallback) and its torch.compile, and flag-gems' Triton moe_sum where it imports
(unscaled shapes only)."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, Support, add_impl, register_impl
from solbench.ops.moe_sum_reduce.spec import spec
from solbench.peers import FLAG_GEMS

_FLAG_GEMS = ("flag_gems", "moe_sum")


def eager(expert_outputs, routed_scaling_factor):
    """torch.sum over the top-k dim in bf16 (fp32 accumulation inside), then scale if needed."""
    import torch

    out = torch.sum(expert_outputs, dim=1)
    if routed_scaling_factor != 1.0:
        out.mul_(routed_scaling_factor)
    return out


register_torch_baselines(spec.name, eager, "torch.sum(dim=1) + in-place scale, bf16")


@register_impl(spec.name, "ours_triton", available=triton_support, takes_out=True,
               description="solbench Triton top-k sum (fp32 accumulation, one rounding)")
def ours(expert_outputs, routed_scaling_factor, out=None):
    from solbench.kernels.moe import moe_sum_reduce

    return moe_sum_reduce(expert_outputs, routed_scaling_factor, out=out)


def flag_gems(expert_outputs, routed_scaling_factor, out=None):
    """vLLM's moe_sum signature: the fp32 sum over top_k written into the caller's [T, H] buffer."""
    import torch

    if out is None:
        out = torch.empty((expert_outputs.shape[0], expert_outputs.shape[2]), dtype=expert_outputs.dtype,
                          device=expert_outputs.device)
    FLAG_GEMS.get(*_FLAG_GEMS)(expert_outputs, out)
    return out


def _flag_gems_supports(shape, device) -> Support:
    factor = float(shape.get("routed_scaling_factor", 1.0))
    if factor != 1.0:
        return Support.no(f"flag_gems.moe_sum has no scaling factor (routed_scaling_factor={factor})")
    return Support.yes()


add_impl(Impl(spec.name, "flag_gems", flag_gems, available=lambda: FLAG_GEMS.support(*_FLAG_GEMS),
              supports=_flag_gems_supports, takes_out=True, baseline=True,
              description="flag_gems.moe_sum(expert_outputs, out) (autotuned block size; routed_scaling_factor 1 only)"))
