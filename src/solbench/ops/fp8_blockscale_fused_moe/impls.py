"""fp8_blockscale_fused_moe baselines: dequantize to bf16, then the bf16 grouped MoE."""
from __future__ import annotations

from solbench.core import fp8_blocks
from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import register_impl
from solbench.core.moe_routing import grouped_gemm_support, grouped_moe
from solbench.ops.fp8_blockscale_fused_moe.spec import BLOCK


def eager(hidden_states, w1, w2, topk_weights, topk_ids, a_scale, fc1_scale, fc2_scale):
    """What a PyTorch user without a block-scaled grouped GEMM writes: dequantize activations and
    all expert weights to bf16, then sort by expert and run torch._grouped_mm."""
    import torch

    b = (BLOCK, BLOCK)
    x = fp8_blocks.dequantize(hidden_states, a_scale, (1, BLOCK), torch.bfloat16)
    w1d = fp8_blocks.dequantize(w1, fc1_scale, b, torch.bfloat16)
    w2d = fp8_blocks.dequantize(w2, fc2_scale, b, torch.bfloat16)
    return grouped_moe(x, w1d, w2d, topk_weights, topk_ids, torch.bfloat16)


def _supports(shape, device):
    ok = grouped_gemm_support()
    if not ok:
        return ok
    from solbench.core.spec import Support
    from solbench.core.moe_routing import moe_dims

    # Dequantizing every expert costs 2 bytes (bf16, scaled in place) per weight; past ~40 GB of
    # temporaries this formulation cannot run next to its inputs on one 80 GB GPU.
    t, h, i, e, k = moe_dims(shape)
    temp = e * 3 * i * h * 2
    if temp > 40e9:
        return Support.no(f"dequantizing all {e} experts needs ~{temp / 1e9:.0f} GB of temporaries")
    return Support.yes()


register_torch_baselines("fp8_blockscale_fused_moe", eager,
                         "dequantize all experts to bf16 + torch._grouped_mm MoE", supports=_supports)


@register_impl("fp8_blockscale_fused_moe", "ours_triton", available=triton_support, takes_out=True,
               description="solbench Triton block-fp8 sorted-token grouped GEMMs (group requant fused into GEMM1)")
def ours(hidden_states, w1, w2, topk_weights, topk_ids, a_scale, fc1_scale, fc2_scale, out=None):
    from solbench.kernels.moe import fp8_block_fused_moe

    return fp8_block_fused_moe(hidden_states, w1, w2, topk_weights, topk_ids, a_scale, fc1_scale, fc2_scale, out=out)
