"""moe_align_block_size baselines: a fixed-shape PyTorch formulation (count, padded prefix sum,
stable sort, scatter) and its torch.compile."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.moe_routing import align_layout


def eager(topk_ids, num_experts, block_size):
    import torch

    lay = align_layout(topk_ids, num_experts, block_size)
    i32 = torch.int32
    return lay["sorted_ids"].to(i32), lay["block_experts"].to(i32), lay["offsets"][-1:].to(i32)


register_torch_baselines("moe_align_block_size", eager,
                         "scatter-add counts + cumsum + stable sort + scatter (fixed shapes)")
