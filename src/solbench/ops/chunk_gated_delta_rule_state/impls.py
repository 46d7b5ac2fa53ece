"""chunk_gated_delta_rule_state implementations: ours_triton; baselines: the chunk loop in PyTorch
with bf16 matmuls (and the same loop with a torch.compile'd chunk step); the fla-core peer."""
from __future__ import annotations

from solbench.core.baselines import triton_support
from solbench.core.linear_attn import chunk_count, expand_heads, register_stepwise_baselines
from solbench.core.spec import Impl, add_impl
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


def ours(k, w, u, g, initial_state, initial_state_indices, chunk_size, out=None):
    from solbench.kernels.linear_attention import chunk_gated_delta_rule_state

    return chunk_gated_delta_rule_state(k, w, u, g, initial_state, initial_state_indices, chunk_size=chunk_size,
                                        out=out)


# fla-core peer (optional; written from fla's public chunk_gated_delta_rule_fwd_h, not run here).
# fla takes one initial state per sequence, so the pool rows are gathered first; its newer kernels
# read g in base 2 (exp2), older ones in base e: g is converted for the installed module.
FLA_MODULE = "fla.ops.common.chunk_delta_h"


def fla(k, w, u, g, initial_state, initial_state_indices, chunk_size):
    import math

    from solbench.peers import FLA, fla_uses_exp2

    fn, _ = FLA.load(FLA_MODULE, "chunk_gated_delta_rule_fwd_h")
    g_in = g * (1.0 / math.log(2.0)) if fla_uses_exp2(FLA_MODULE) else g
    init = initial_state.index_select(0, initial_state_indices.long())
    h, v_new, final = fn(k=k, w=w, u=u, g=g_in, initial_state=init, output_final_state=True, chunk_size=chunk_size,
                         save_new_value=True)
    return h, v_new, final


def fla_support():
    from solbench.peers import FLA

    return FLA.support(FLA_MODULE, "chunk_gated_delta_rule_fwd_h")


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton chunk recurrence: [K, BV] fp32 state slice per program, bf16 "
                          "tensor-core products per chunk"))
add_impl(Impl(spec.name, "fla", fla, available=fla_support, baseline=True,
              description="fla-core chunk_gated_delta_rule_fwd_h (pool rows gathered first)"))
