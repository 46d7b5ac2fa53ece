"""moe_align_block_size implementations: ours_triton, and a fixed-shape PyTorch formulation (count, padded prefix sum,
stable sort, scatter) and its torch.compile."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import register_impl
from solbench.core.moe_routing import align_layout


def eager(topk_ids, num_experts, block_size):
    import torch

    lay = align_layout(topk_ids, num_experts, block_size)
    i32 = torch.int32
    return lay["sorted_ids"].to(i32), lay["block_experts"].to(i32), lay["offsets"][-1:].to(i32)


register_torch_baselines("moe_align_block_size", eager,
                         "scatter-add counts + cumsum + stable sort + scatter (fixed shapes)")


@register_impl("moe_align_block_size", "ours_triton", available=triton_support, takes_out=True,
               description="solbench Triton expert sort (chunk histograms + prefix + stable one-hot scatter)")
def ours(topk_ids, num_experts, block_size, out=None):
    from solbench.kernels.moe import moe_align_block_size

    return moe_align_block_size(topk_ids, num_experts, block_size, out=out)
