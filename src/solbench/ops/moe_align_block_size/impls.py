"""moe_align_block_size implementations: ours_triton, a fixed-shape PyTorch formulation (count, padded prefix sum,
stable sort, scatter) and its torch.compile, and flag-gems' Triton kernels where they import."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, add_impl, register_impl
from solbench.core.moe_routing import align_layout, padded_capacity
from solbench.peers import FLAG_GEMS

OP = "moe_align_block_size"
# The launcher that writes into caller buffers: flag_gems' own wrapper (moe_align_block_size) allocates
# T*k + E*(bs-1) ids, without vLLM's cap at T*k*bs that this operator's capacity follows.
_FLAG_GEMS = ("flag_gems", "moe_align_block_size_triton")


def eager(topk_ids, num_experts, block_size):
    import torch

    lay = align_layout(topk_ids, num_experts, block_size)
    i32 = torch.int32
    return lay["sorted_ids"].to(i32), lay["block_experts"].to(i32), lay["offsets"][-1:].to(i32)


def flag_gems(topk_ids, num_experts, block_size, out=None):
    import torch

    if out is None:
        cap = padded_capacity(topk_ids.numel(), num_experts, block_size)
        dev = topk_ids.device
        out = (torch.empty(cap, dtype=torch.int32, device=dev),
               torch.empty(-(-cap // block_size), dtype=torch.int32, device=dev),
               torch.empty(1, dtype=torch.int32, device=dev))
    sorted_ids, expert_ids, num_tokens_post_pad = out
    FLAG_GEMS.get(*_FLAG_GEMS)(topk_ids, num_experts, block_size, sorted_ids, expert_ids, num_tokens_post_pad)
    return sorted_ids, expert_ids, num_tokens_post_pad


register_torch_baselines(OP, eager, "scatter-add counts + cumsum + stable sort + scatter (fixed shapes)")


@register_impl(OP, "ours_triton", available=triton_support, takes_out=True,
               description="solbench Triton expert sort (one launch to 16k slots: histogram, padded prefix, "
                           "stable ranked scatter)")
def ours(topk_ids, num_experts, block_size, out=None):
    from solbench.kernels.moe import moe_align_block_size

    return moe_align_block_size(topk_ids, num_experts, block_size, out=out)


add_impl(Impl(OP, "flag_gems", flag_gems, available=lambda: FLAG_GEMS.support(*_FLAG_GEMS), takes_out=True,
              baseline=True,
              description="flag_gems.moe_align_block_size_triton into the caller's buffers (vLLM's capacity); "
                          "like vLLM it also fills the whole buffer with the sentinel, past num_tokens_post_pad"))
