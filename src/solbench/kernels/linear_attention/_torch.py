"""Torch formulations of the Gated DeltaNet kernels: what the ops compute on tensors our Triton
kernels do not run on (see :func:`solbench.kernels.common.runs_eager`). fp32 state and math, one
rounding per output, as the operators' references; each writes the op's outputs in place and
takes the op's arguments (launch options included, unused)."""
from __future__ import annotations

import torch


def l2norm(x, eps: float):
    """``x / sqrt(sum x^2 + eps)`` over the last dim, fp32 (the kernels' q/k normalization)."""
    x = x.float()
    return x * torch.rsqrt(x.square().sum(-1, keepdim=True) + eps)


def expand_heads(x, heads: int):
    """``[B, T, Hg, D] -> [B, T, heads, D]``: value head i reads key head ``i // (heads // Hg)``."""
    return x if x.shape[2] == heads else x.repeat_interleave(heads // x.shape[2], dim=2)


def softplus_gate(A_log, a, dt_bias, beta: float, threshold: float):
    """The log-decay ``-exp(A_log) softplus_beta(a + dt_bias)`` (linear above the threshold), fp32."""
    x = a.float() + dt_bias.float()
    bx = beta * x
    soft = torch.where(bx <= threshold, torch.log1p(torch.exp(bx.clamp(max=threshold))) / beta, x)
    return -torch.exp(A_log.float()) * soft


def gated_delta_rule_update(q, k, v, a, b, A_log, dt_bias, initial_state, initial_state_indices, out, scale: float,
                            softplus_beta: float, softplus_threshold: float, use_qk_l2norm: bool, eps: float) -> None:
    """Token by token per sequence: ``S = exp(g) S; S += k (beta (v - S^T k))^T; out = S^T (scale
    q)`` from the pool row at the sequence's index (zeros, and no write-back, for a negative one)."""
    B, T, HV, V = v.shape
    K = q.shape[3]
    g = softplus_gate(A_log, a, dt_bias, softplus_beta, softplus_threshold)          # [B, T, HV]
    beta = torch.sigmoid(b.float())
    qf, kf = (l2norm(q, eps), l2norm(k, eps)) if use_qk_l2norm else (q.float(), k.float())
    qe, ke, vf = expand_heads(qf, HV) * scale, expand_heads(kf, HV), v.float()
    idx = initial_state_indices.long()
    valid = idx >= 0
    S = torch.zeros((B, HV, K, V), dtype=torch.float32, device=v.device)
    S[valid] = initial_state[idx[valid]].float()
    for t in range(T):
        S = S * torch.exp(g[:, t])[..., None, None]
        delta = (vf[:, t] - torch.einsum("bhkv,bhk->bhv", S, ke[:, t])) * beta[:, t, :, None]
        S = S + ke[:, t, :, :, None] * delta[..., None, :]
        out[:, t] = torch.einsum("bhkv,bhk->bhv", S, qe[:, t]).to(out.dtype)
    initial_state[idx[valid]] = S[valid].to(initial_state.dtype)


def chunk_gated_delta_rule_state(k, w, u, g, initial_state, initial_state_indices, h, v_new, final_state,
                                 chunk_size: int) -> None:
    """Per chunk c from ``S = pool[indices[b]]``: ``h[c] = S; v_new[c] = u[c] - w[c] S;
    S = exp(g_last) S + k[c]^T (v_new[c] exp(g_last - g[c]))``; ``final_state = S``."""
    B, T, H, V = u.shape
    S = initial_state[initial_state_indices.long()].float()                        # [B, H, K, V]
    ke = expand_heads(k.float(), H)
    for c in range(h.shape[1]):
        t0, t1 = c * chunk_size, min(T, (c + 1) * chunk_size)
        h[:, c] = S.to(h.dtype)
        vn = u[:, t0:t1].float() - torch.einsum("bthk,bhkv->bthv", w[:, t0:t1].float(), S)
        v_new[:, t0:t1] = vn.to(v_new.dtype)
        g_last = g[:, t1 - 1].float()                                              # [B, H]
        vn = vn * torch.exp(g_last[:, None] - g[:, t0:t1].float())[..., None]
        S = S * torch.exp(g_last)[..., None, None] + torch.einsum("bthk,bthv->bhkv", ke[:, t0:t1], vn)
    final_state.copy_(S)


def _chunks(x, bt: int):
    """``[B, T, ...] -> [B, NT, bt, ...]``, the last chunk zero-padded."""
    B, T = x.shape[:2]
    nt = -(-T // bt)
    x = torch.cat([x, x.new_zeros((B, nt * bt - T, *x.shape[2:]))], dim=1)
    return x.view(B, nt, bt, *x.shape[2:])


def chunk_delta_rule_output(q, k, v, h, g, out, scale: float, bt: int) -> None:
    """``out[t] = scale (exp(g[t]) q[t] h[c] + sum_{s <= t in c} (q[t].k[s]) exp(g[t] - g[s]) v[s])``
    over chunks c of ``bt`` tokens."""
    B, T, H, V = v.shape
    qc, kc = _chunks(expand_heads(q.float(), H), bt), _chunks(expand_heads(k.float(), H), bt)
    vc, gc = _chunks(v.float(), bt), _chunks(g.float(), bt)
    inter = torch.einsum("bnchk,bnhkv->bnchv", qc, h.float()) * torch.exp(gc)[..., None]
    gt = gc.permute(0, 1, 3, 2)                                                    # [B, NT, H, bt]
    causal = torch.ones(bt, bt, dtype=torch.bool, device=v.device).tril()
    # exp only where visible: above the diagonal g[t] - g[s] > 0 could overflow.
    decay = torch.exp((gt[..., :, None] - gt[..., None, :]).masked_fill(~causal, float("-inf")))
    scores = torch.einsum("bnihk,bnjhk->bnhij", qc, kc) * decay
    o = (inter + torch.einsum("bnhij,bnjhv->bnihv", scores, vc)) * scale
    out.copy_(o.reshape(B, -1, H, V)[:, :T])
