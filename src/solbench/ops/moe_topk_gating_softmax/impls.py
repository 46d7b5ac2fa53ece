"""moe_topk_gating_softmax baselines: softmax in fp32 + torch.topk (vLLM's own torch fallback)."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import register_impl


def eager(gating_output, top_k):
    import torch

    w, ids = torch.softmax(gating_output, dim=-1, dtype=torch.float32).topk(top_k, dim=-1)
    return w, ids.to(torch.int32)


register_torch_baselines("moe_topk_gating_softmax", eager, "torch.softmax(fp32) + torch.topk")


@register_impl("moe_topk_gating_softmax", "ours_triton", available=triton_support, takes_out=True,
               description="solbench Triton top-k softmax (one pass per row: softmax, k argmax sweeps)")
def ours(gating_output, top_k, out=None):
    from solbench.kernels.moe import topk_gating_softmax

    return topk_gating_softmax(gating_output, top_k, out=out)
