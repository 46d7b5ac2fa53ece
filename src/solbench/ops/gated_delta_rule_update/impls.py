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


# fla-core peers (optional; written from fla's public API, checked against fla-core 0.6.0's
# signatures, not run here). fla >= 0.6 fuses the gates (use_gate_in_kernel with A_log and dt_bias,
# use_beta_sigmoid_in_kernel) at softplus beta 1 / threshold 20; otherwise, or in older fla, the
# gates are computed in PyTorch first. The pool rows are gathered and scattered back.
# ``fla`` is its fused recurrent kernel (fp32 state math, this operator's accuracy class) at every T;
# ``fla_chunk`` its chunked prefill for T > 1, whose bf16 operands are expected to miss this
# operator's tolerance (see spec.tolerance): it is there to show that, and its speed where it passes.
FLA_MODULE = "fla.ops.gated_delta_rule"


def _fuses_gates(fn) -> bool:
    import inspect

    return "use_gate_in_kernel" in inspect.signature(fn).parameters or "use_gate_in_kernel" in (fn.__doc__ or "")


def _fla(fn_name, A_log, a, dt_bias, q, k, v, b, initial_state, initial_state_indices, softplus_beta,
         softplus_threshold, use_qk_l2norm, scale):
    import torch
    import torch.nn.functional as F

    from solbench.peers import FLA

    fn, _ = FLA.load(FLA_MODULE, fn_name)
    if softplus_beta == 1.0 and softplus_threshold == 20.0 and _fuses_gates(fn):
        gates = dict(g=a, beta=b, use_gate_in_kernel=True, A_log=A_log, dt_bias=dt_bias,
                     use_beta_sigmoid_in_kernel=True)
    else:
        g = -torch.exp(A_log.float()) * F.softplus(a.float() + dt_bias.float(), beta=softplus_beta,
                                                   threshold=softplus_threshold)
        gates = dict(g=g, beta=torch.sigmoid(b.float()).to(v.dtype))
    idx = initial_state_indices.long()
    o, final = fn(q, k, v, scale=scale, initial_state=initial_state.index_select(0, idx), output_final_state=True,
                  use_qk_l2norm_in_kernel=use_qk_l2norm, **gates)
    initial_state.index_copy_(0, idx, final.to(initial_state.dtype))
    return o, initial_state


def fla_recurrent(**inputs):
    return _fla("fused_recurrent_gated_delta_rule", **inputs)


def fla_chunk(**inputs):
    return _fla("chunk_gated_delta_rule", **inputs)


def fla_support(name):
    from solbench.peers import FLA

    return FLA.support(FLA_MODULE, name)


def multi_token(shape, device):
    from solbench.core.spec import Support

    return Support.yes() if int(shape["token_count"]) > 1 else Support.no("a chunked prefill kernel; T = 1 is decode")


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support,
              description="solbench Triton: T < 64 the fused recurrent step ([K, BV] fp32 state slice in "
                          "registers, read and written once); T >= 64 chunks of 64 in WY form on tf32 tensor cores"))
add_impl(Impl(spec.name, "fla", fla_recurrent, available=lambda: fla_support("fused_recurrent_gated_delta_rule"),
              baseline=True, description="fla-core fused_recurrent_gated_delta_rule (fp32 state; gates fused where "
                                         "fla fuses them)"))
add_impl(Impl(spec.name, "fla_chunk", fla_chunk, available=lambda: fla_support("chunk_gated_delta_rule"),
              supports=multi_token, baseline=True,
              description="fla-core chunk_gated_delta_rule (bf16 tensor-core operands; gates fused where fla "
                          "fuses them)"))
