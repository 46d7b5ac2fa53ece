"""gated_delta_rule_update baselines: gates and q/k normalization vectorized over all tokens, then
a Python loop over tokens (eager, and with a torch.compile'd token step)."""
from __future__ import annotations

from solbench.core.linear_attn import expand_heads, register_stepwise_baselines
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
