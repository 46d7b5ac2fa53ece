"""moe_count_and_sort baselines: the fixed-shape PyTorch count / prefix-sum / stable-sort formulation
and its torch.compile."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.moe_routing import align_layout


def eager(topk_ids, num_experts, block_size):
    import torch

    lay = align_layout(topk_ids, num_experts, block_size)
    i32 = torch.int32
    return lay["sorted_ids"].to(i32), lay["counts"].to(i32), lay["offsets"].to(i32)


register_torch_baselines("moe_count_and_sort", eager, "scatter-add counts + cumsum + stable sort + scatter")
