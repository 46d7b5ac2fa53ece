"""gated_delta_rule_update baselines: gates and q/k normalization vectorized over all tokens, then
a Python loop over tokens (eager, and with a torch.compile'd token step); ours_triton (the fused
recurrent kernel); the fla-core peer."""
from __future__ import annotations

from solbench.core.baselines import triton_support
from solbench.core.linear_attn import expand_heads, register_stepwise_baselines
from solbench.core.spec import Impl, add_impl
from solbench.ops.gated_delta_rule_update.spec import spec


def token_step(S, q_t, k_t, v_t, decay_t, beta_t):
    """S [B, HV, K, V] fp32; q_t, k_t [B, HV, K] fp32 (normalized, q scaled); v_t [B, HV, V]."""
    import torch

    S = S * decay_t[..., None, None]
    delta = (v_t - torch.einsum("bhkv,bhk->bhv", S, k_t)) * beta_t[..., None]
    S = S + k_t[..., :, None] * delta[..., None, :]
    return S, torch.einsum("bhkv,bhk->bhv", S, q_t)


def run(step, A_log, a, dt_bias, q, k, v, b, initial_state, initial_state_indices, softplus_beta,
        softplus_threshold, use_qk_l2norm, scale):
    import torch
    import torch.nn.functional as F

    B, T, HV, V = v.shape
    g = -torch.exp(A_log) * F.softplus(a.float() + dt_bias.float(), beta=softplus_beta,
                                       threshold=softplus_threshold)
    decay, beta = torch.exp(g), torch.sigmoid(b.float())
    qf, kf = q.float(), k.float()
    if use_qk_l2norm:
        qf = qf * torch.rsqrt(qf.square().sum(-1, keepdim=True) + 1e-6)
        kf = kf * torch.rsqrt(kf.square().sum(-1, keepdim=True) + 1e-6)
    qf, kf, vf = expand_heads(qf * scale, HV), expand_heads(kf, HV), v.float()
    # Every sequence owns a pool entry here (make_inputs never pads); upstream's padding slots
    # (negative index) are part of the reference only.
    idx = initial_state_indices.long()
    S = initial_state.index_select(0, idx)
    out = torch.empty_like(v)
    for t in range(T):
        S, o = step(S, qf[:, t], kf[:, t], vf[:, t], decay[:, t], beta[:, t])
        out[:, t] = o
    initial_state.index_copy_(0, idx, S)
    return out, initial_state


register_stepwise_baselines(spec.name, run, token_step,
                            "vectorized gates + Python loop over tokens (fp32 state)")


def ours(A_log, a, dt_bias, q, k, v, b, initial_state, initial_state_indices, softplus_beta, softplus_threshold,
         use_qk_l2norm, scale):
    from solbench.kernels.linear_attention import gated_delta_rule_update

    return gated_delta_rule_update(q, k, v, a, b, A_log, dt_bias, initial_state, initial_state_indices, scale=scale,
                                   softplus_beta=softplus_beta, softplus_threshold=softplus_threshold,
                                   use_qk_l2norm=use_qk_l2norm)


# fla-core peer (optional; written from fla's public API, not run here): fla has no fused gating,
# so the gates are computed in PyTorch first; the pool rows are gathered and scattered back.
# T = 1 calls fla's fused recurrent kernel; T > 1 its chunked prefill (bf16 operands, so it may
# miss this operator's fp32-class tolerance: see spec.tolerance).
FLA = "fla.ops.gated_delta_rule"


def fla(A_log, a, dt_bias, q, k, v, b, initial_state, initial_state_indices, softplus_beta, softplus_threshold,
        use_qk_l2norm, scale):
    import torch
    import torch.nn.functional as F

    from solbench.core.linear_attn import fla_import

    T = v.shape[1]
    fn, _ = fla_import(FLA, "fused_recurrent_gated_delta_rule" if T == 1 else "chunk_gated_delta_rule")
    g = -torch.exp(A_log.float()) * F.softplus(a.float() + dt_bias.float(), beta=softplus_beta,
                                               threshold=softplus_threshold)
    beta = torch.sigmoid(b.float()).to(v.dtype)
    idx = initial_state_indices.long()
    o, final = fn(q, k, v, g, beta, scale=scale, initial_state=initial_state.index_select(0, idx),
                  output_final_state=True, use_qk_l2norm_in_kernel=use_qk_l2norm)
    initial_state.index_copy_(0, idx, final.to(initial_state.dtype))
    return o, initial_state


def fla_support():
    from solbench.core.linear_attn import fla_support as support

    return support(FLA, "chunk_gated_delta_rule")


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support,
              description="solbench Triton: T < 64 the fused recurrent step ([K, BV] fp32 state slice in "
                          "registers, read and written once); T >= 64 chunks of 64 in WY form on tf32 tensor cores"))
add_impl(Impl(spec.name, "fla", fla, available=fla_support, baseline=True,
              description="fla-core fused_recurrent_gated_delta_rule (T = 1) / chunk_gated_delta_rule (T > 1), "
                          "gates in PyTorch"))
