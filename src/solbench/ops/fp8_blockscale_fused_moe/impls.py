"""fp8_blockscale_fused_moe implementations: ours_triton, dequantize to bf16 then the bf16 grouped MoE (eager
and compiled), and flag-gems' fp8 fused-MoE kernels where they import."""
from __future__ import annotations

from solbench.core import fp8_blocks
from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, add_impl, register_impl
from solbench.core.moe_routing import grouped_gemm_support, grouped_moe
from solbench.ops.fp8_blockscale_fused_moe.spec import BLOCK
from solbench.peers import FLAG_GEMS

# flag_gems' fused_experts_impl takes bf16 activations and quantizes them itself; the activations
# here arrive quantized, so the adapter runs the rest of its fp8 path from the module's own pieces.
_FG_MOE = "flag_gems.fused.fused_moe"
_FG_CHUNK = 16 * 1024  # fused_experts_impl runs longer batches in slices of this many tokens
_FG_SPARSE = 4  # ... and skips the align step when tokens * top_k * _FG_SPARSE <= num_experts


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


def _fg(name: str):
    return FLAG_GEMS.get(_FG_MOE, name)


def flag_gems(hidden_states, w1, w2, topk_weights, topk_ids, a_scale, fc1_scale, fc2_scale, out=None):
    """flag_gems' fused_experts_impl(use_fp8_w8a8=True, block_shape=[128, 128]) from its first GEMM on:
    per slice of tokens, its config lookup, moe_align_block_size (or its naive one-block-per-slot
    assignment on sparse batches), dispatch_fused_moe_kernel on the fp8 activations and a_scale,
    SiLU-mul, per-token-group fp8 requant, the second GEMM with the router weight, moe_sum."""
    import torch
    import triton.language as tl

    t, h = hidden_states.shape
    e, two_i, _ = w1.shape
    k = topk_ids.shape[1]
    dev, bf16 = hidden_states.device, torch.bfloat16
    if out is None:
        out = torch.empty((t, h), dtype=bf16, device=dev)
    block = [BLOCK, BLOCK]
    gemm = dict(compute_type=tl.bfloat16, use_fp8_w8a8=True, use_int8_w8a8=False, use_int8_w8a16=False,
                use_int4_w4a16=False, per_channel_quant=False, block_shape=block)
    dispatch = _fg("dispatch_fused_moe_kernel")
    for t0 in range(0, t, _FG_CHUNK):
        n = min(t, t0 + _FG_CHUNK) - t0
        ids, weights = topk_ids[t0:t0 + n], topk_weights[t0:t0 + n]
        cfg = _fg("try_get_optimal_moe_config")(w1.shape, w2.shape, k, "fp8_w8a8", M=n, E=e, block_shape=block)
        if n * k * _FG_SPARSE <= e:
            sorted_ids, expert_ids = None, ids.reshape(-1)
            padded = torch.full((1,), ids.numel() * cfg["BLOCK_SIZE_M"], dtype=torch.int32, device=dev)
        else:
            sorted_ids, expert_ids, padded = _fg("moe_align_block_size")(ids, cfg["BLOCK_SIZE_M"], e)
        gate_up = torch.empty((n, k, two_i), dtype=bf16, device=dev)
        dispatch(hidden_states[t0:t0 + n], w1, gate_up, a_scale[t0:t0 + n], fc1_scale, None, weights, sorted_ids,
                 expert_ids, padded, False, k, cfg, **gemm)
        act = torch.empty((n * k, two_i // 2), dtype=bf16, device=dev)
        _fg("apply_moe_activation")(_fg("MoEActivation").SILU, act, gate_up.view(n * k, two_i))
        act_q, act_scale = _fg("moe_kernel_quantize_input")(act, None, torch.float8_e4m3fn, False, block)
        down = torch.empty((n, k, h), dtype=bf16, device=dev)
        dispatch(act_q, w2, down, act_scale, fc2_scale, None, weights, sorted_ids, expert_ids, padded, True, 1, cfg,
                 **gemm)
        _fg("moe_sum")(down, out[t0:t0 + n])
    return out


add_impl(Impl("fp8_blockscale_fused_moe", "flag_gems", flag_gems, takes_out=True, baseline=True,
              available=lambda: FLAG_GEMS.support(_FG_MOE, "dispatch_fused_moe_kernel"),
              description="flag_gems.fused.fused_moe pieces as fused_experts_impl(use_fp8_w8a8, block_shape "
                          "[128, 128]) runs them, minus its bf16->fp8 activation quantization (inputs arrive fp8): "
                          "align + dispatch_fused_moe_kernel x2 + SiLU-mul + group requant + moe_sum"))
