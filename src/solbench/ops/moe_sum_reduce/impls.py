"""moe_sum_reduce baselines: ``torch.sum(x, dim=1, out=out)`` then an in-place scale (sglang's own
torch fallback), and its torch.compile."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import register_impl
from solbench.ops.moe_sum_reduce.spec import spec


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
