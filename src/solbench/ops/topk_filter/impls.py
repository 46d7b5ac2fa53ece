"""topk_filter baselines: vLLM's torch top-k mask (torch.topk for the k-th value + masked_fill)."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines


def eager(logits, top_k):
    """vLLM ``apply_top_k_only`` without the in-place update: the k-th largest value per row from
    torch.topk, everything below it set to -inf."""
    k = min(int(top_k), logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


register_torch_baselines("topk_filter", eager, "torch.topk k-th value + masked_fill")
