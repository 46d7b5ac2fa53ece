"""fused_moe implementations: ours_triton, torch_eager / torch_compile (sort by expert + torch._grouped_mm in bf16),
and flag-gems' Triton fused experts where it imports."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, add_impl, register_impl
from solbench.core.moe_routing import grouped_gemm_support, grouped_moe
from solbench.peers import FLAG_GEMS

_FLAG_GEMS = ("flag_gems", "outplace_fused_experts")


def eager(hidden_states, w1, w2, topk_weights, topk_ids):
    """What a PyTorch user writes for an MoE FFN today (torchtitan style): bf16 grouped GEMMs
    over the expert-sorted routed rows, fp32 weighted combine."""
    import torch

    return grouped_moe(hidden_states, w1, w2, topk_weights, topk_ids, torch.float32)


def flag_gems(hidden_states, w1, w2, topk_weights, topk_ids):
    """flag-gems' fused experts (SiLU-mul, router weight in the second GEMM) return the hidden
    dtype; the catalog's output is fp32, so the bf16 result is widened as a caller would."""
    import torch

    fn = FLAG_GEMS.get(*_FLAG_GEMS)
    return fn(hidden_states, w1, w2, topk_weights, topk_ids).to(torch.float32)


register_torch_baselines("fused_moe", eager, "sort by expert + torch._grouped_mm (bf16) + index_add",
                         supports=lambda shape, device: grouped_gemm_support())


@register_impl("fused_moe", "ours_triton", available=triton_support, takes_out=True,
               description="solbench Triton sorted-token grouped GEMMs (SiLU-mul in GEMM1, router weight in GEMM2)")
def ours(hidden_states, w1, w2, topk_weights, topk_ids, out=None):
    from solbench.kernels.moe import fused_moe

    return fused_moe(hidden_states, w1, w2, topk_weights, topk_ids, out=out)


add_impl(Impl("fused_moe", "flag_gems", flag_gems, available=lambda: FLAG_GEMS.support(*_FLAG_GEMS), baseline=True,
              description="flag_gems.outplace_fused_experts (activation silu, router weight applied in GEMM2, "
                          "its own tuned-config lookup); its bf16 result widened to the catalog's fp32 output "
                          "(one extra T*H pass inside the timed call)"))
