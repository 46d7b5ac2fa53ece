"""topk_filter implementations: ours_triton, vLLM's torch top-k mask (torch.topk for the k-th value
+ masked_fill) eager and compiled, and the same with flag-gems' Triton topk where it imports."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, add_impl
from solbench.peers import FLAG_GEMS

OP = "topk_filter"
_FLAG_GEMS = ("flag_gems", "topk")


def eager(logits, top_k):
    """vLLM ``apply_top_k_only`` without the in-place update: the k-th largest value per row from
    torch.topk, everything below it set to -inf."""
    k = min(int(top_k), logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def ours(logits, top_k, out=None):
    from solbench.kernels.topk import top_k_mask_logits

    return top_k_mask_logits(logits, int(top_k), out=out)


def flag_gems(logits, top_k):
    """The eager formulation with flag-gems' Triton topk for the k-th value."""
    topk = FLAG_GEMS.get(*_FLAG_GEMS)
    k = min(int(top_k), logits.shape[-1])
    kth = topk(logits, k, dim=-1)[0][..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


add_impl(Impl(OP, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton bitwise threshold select (row in registers; chunked candidates "
                          "over 16k-wide rows), ties kept"))
register_torch_baselines(OP, eager, "torch.topk k-th value + masked_fill")
add_impl(Impl(OP, "flag_gems", flag_gems, available=lambda: FLAG_GEMS.support(*_FLAG_GEMS), baseline=True,
              description="flag_gems.topk k-th value + masked_fill"))
