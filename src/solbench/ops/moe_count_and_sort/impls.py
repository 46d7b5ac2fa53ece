"""moe_count_and_sort implementations: ours_triton, and the fixed-shape PyTorch count / prefix-sum /
stable-sort formulation with its torch.compile."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.moe_routing import expert_counts
from solbench.core.spec import register_impl


def eager(topk_ids, num_experts):
    import torch

    flat = topk_ids.reshape(-1).to(torch.int64)
    counts = expert_counts(flat, num_experts)
    cumsum = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    i32 = torch.int32
    return torch.sort(flat, stable=True).indices.to(i32), counts.to(i32), cumsum.to(i32)


register_torch_baselines("moe_count_and_sort", eager, "scatter-add counts + cumsum + stable sort")


@register_impl("moe_count_and_sort", "ours_triton", available=triton_support, takes_out=True,
               description="solbench Triton expert sort (one launch to 16k slots: histogram, padded prefix, "
                           "stable ranked scatter)")
def ours(topk_ids, num_experts, out=None):
    from solbench.kernels.moe import moe_count_and_sort

    return moe_count_and_sort(topk_ids, num_experts, out=out)
