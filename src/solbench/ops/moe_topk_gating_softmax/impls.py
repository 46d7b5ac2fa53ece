"""moe_topk_gating_softmax implementations: ours_triton, softmax in fp32 + torch.topk (vLLM's own torch fallback)
eager and compiled, and flag-gems' Triton topk_softmax where it imports."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, Support, add_impl, register_impl
from solbench.peers import FLAG_GEMS

OP = "moe_topk_gating_softmax"
_FLAG_GEMS = ("flag_gems", "topk_softmax")


def eager(gating_output, top_k):
    import torch

    w, ids = torch.softmax(gating_output, dim=-1, dtype=torch.float32).topk(top_k, dim=-1)
    return w, ids.to(torch.int32)


def flag_gems(gating_output, top_k, out=None):
    """vLLM's topk_softmax signature: writes weights and ids into the caller's buffers, plus the
    token_expert_indices buffer that vLLM's fused_topk also allocates per call (not an output here)."""
    import torch

    t = gating_output.shape[0]
    dev = gating_output.device
    if out is None:
        out = (torch.empty((t, top_k), dtype=torch.float32, device=dev),
               torch.empty((t, top_k), dtype=torch.int32, device=dev))
    weights, ids = out
    token_expert_indices = torch.empty((t, top_k), dtype=torch.int32, device=dev)
    FLAG_GEMS.get(*_FLAG_GEMS)(weights, ids, token_expert_indices, gating_output, renormalize=False)
    return weights, ids


def _flag_gems_supports(shape, device) -> Support:
    from solbench.ops.moe_topk_gating_softmax.spec import gating_dims

    _, e, k = gating_dims(shape)
    if k > 32 or e > 1024:
        return Support.no(f"flag_gems.topk_softmax takes top_k <= 32 and one 1024-wide tile of experts "
                          f"(got top_k={k}, num_experts={e})")
    return Support.yes()


register_torch_baselines(OP, eager, "torch.softmax(fp32) + torch.topk")


@register_impl(OP, "ours_triton", available=triton_support, takes_out=True,
               description="solbench Triton top-k softmax (a warp per row: k max rounds over unique int64 keys, softmax beside)")
def ours(gating_output, top_k, out=None):
    from solbench.kernels.moe import topk_gating_softmax

    return topk_gating_softmax(gating_output, top_k, out=out)


add_impl(Impl(OP, "flag_gems", flag_gems, available=lambda: FLAG_GEMS.support(*_FLAG_GEMS),
              supports=_flag_gems_supports, takes_out=True, baseline=True,
              description="flag_gems.topk_softmax (renormalize=False) into the caller's weights / int32 ids; "
                          "its token_expert_indices buffer allocated per call"))
