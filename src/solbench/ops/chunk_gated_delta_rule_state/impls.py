"""chunk_gated_delta_rule_state baselines: the chunk loop in PyTorch with bf16 matmuls (and the
same loop with a torch.compile'd chunk step)."""
from __future__ import annotations

from solbench.core.linear_attn import chunk_count, expand_heads, register_stepwise_baselines
from solbench.ops.chunk_gated_delta_rule_state.spec import spec


def chunk_step(S, k_c, w_c, u_c, g_c):
    """One chunk: v_new = u - w @ bf16(S); S = exp(g_last) S + k^T @ bf16(v_new exp(g_last - g))."""
    import torch

    vn = u_c.float() - torch.einsum("bthk,bhkv->bthv", w_c, S.to(w_c.dtype)).float()
    g_last = g_c[:, -1]
    vd = (vn * torch.exp(g_last[:, None] - g_c)[..., None]).to(k_c.dtype)
    S = S * torch.exp(g_last)[..., None, None] + torch.einsum("bthk,bthv->bhkv", k_c, vd).float()
    return S, vn.to(u_c.dtype)


def run(step, k, w, u, g, initial_state, initial_state_indices, chunk_size):
    import torch

    B, T, H, V = u.shape
    K = k.shape[-1]
    nt = chunk_count(T, chunk_size)
    ke = expand_heads(k, H)
    S = initial_state.index_select(0, initial_state_indices.long())
    h = torch.empty((B, nt, H, K, V), dtype=k.dtype, device=k.device)
    v_new = torch.empty_like(u)
    for c in range(nt):
        t0, t1 = c * chunk_size, min(T, (c + 1) * chunk_size)
        h[:, c] = S
        S, v_new[:, t0:t1] = step(S, ke[:, t0:t1], w[:, t0:t1], u[:, t0:t1], g[:, t0:t1])
    return h, v_new, S


register_stepwise_baselines(spec.name, run, chunk_step,
                            "Python loop over chunks; bf16 einsums, fp32 state and gates")
