"""Shared mechanics of the gated delta rule (Gated DeltaNet / Qwen3-Next linear attention), used by
``chunk_delta_rule_output``, ``chunk_gated_delta_rule_state`` and ``gated_delta_rule_update``.

The recurrence, per sequence and value head, with state ``S`` of shape ``[K, V]``::

    S_t = exp(g_t) * S_{t-1} + k_t (beta_t * (v_t - S_{t-1}^T k_t * exp(g_t)))^T
    o_t = scale * S_t^T q_t

(``g_t <= 0`` is the log-decay of token t, ``beta_t`` in (0, 1) its write strength). Prefill runs it
chunk by chunk (flash-linear-attention ``chunk_gated_delta_rule``): inside a chunk of ``C`` tokens,
``g`` is the chunk-local cumulative sum of log-decays, and the WY representation turns the chunk's
``C`` rank-1 updates into ``w = A (beta k exp(g))``, ``u = A (beta v)`` with
``A = (I + strict_tril(beta_i k_i.k_j exp(g_i - g_j)))^-1``, so that one chunk step is
``v_new = u - w S``; ``S <- exp(g_last) S + k^T (v_new * exp(g_last - g))``.

Everything here is PyTorch, fp32, vectorized over batch and heads; only chunks or time steps loop.
Layouts follow fla: ``q, k [B, T, Hg, K]``, ``v [B, T, H, V]``, ``g, beta [B, T, H]``, states
``[.., H, K, V]``; value head ``h`` reads key head ``h // (H // Hg)`` (grouped heads).
"""
from __future__ import annotations

import math
import time
from typing import Callable

# fla's l2norm and sglang's fused recurrent kernels put eps inside the square root.
L2NORM_EPS = 1e-6


def l2norm(x, eps: float = L2NORM_EPS):
    """x / sqrt(sum(x^2, -1) + eps), in fp32."""
    import torch

    x = x.float()
    return x * torch.rsqrt((x * x).sum(-1, keepdim=True) + eps)


def expand_heads(x, num_heads: int):
    """[B, T, Hg, D] -> [B, T, H, D]: value head h uses key head h // (H // Hg)."""
    hg = x.shape[2]
    if num_heads % hg:
        raise ValueError(f"grouped heads: {num_heads} value heads is not a multiple of {hg} key heads")
    return x if hg == num_heads else x.repeat_interleave(num_heads // hg, dim=2)


def softplus_gate(A_log, a, dt_bias, beta: float = 1.0, threshold: float = 20.0):
    """The GDN log-decay ``g = -exp(A_log) * softplus_beta(a + dt_bias)`` in fp32, where
    ``softplus_beta(x) = log(1 + exp(beta x)) / beta`` when ``beta x <= threshold`` and ``x`` above it
    (the branch sglang's fused kernels take; torch's F.softplus switches on the same test)."""
    import torch

    x = a.float() + dt_bias.float()
    bx = beta * x
    sp = torch.where(bx <= threshold, torch.log1p(torch.exp(bx.clamp(max=threshold))) / beta, x)
    return -torch.exp(A_log.float()) * sp


def chunk_count(T: int, chunk_size: int) -> int:
    return -(-int(T) // int(chunk_size))


def chunk_local_cumsum(g, chunk_size: int):
    """[B, T, H] per-token log-decays -> cumulative sums restarting at each chunk of ``chunk_size``
    tokens (fla ``chunk_local_cumsum``), fp32."""
    import torch

    B, T, H = g.shape
    nt = chunk_count(T, chunk_size)
    pad = nt * chunk_size - T
    gp = torch.nn.functional.pad(g.float(), (0, 0, 0, pad))
    return gp.view(B, nt, chunk_size, H).cumsum(2).view(B, nt * chunk_size, H)[:, :T]


def to_chunks(x, chunk_size: int):
    """[B, T, ...] -> [B, NT, C, ...], zero-padding the last chunk."""
    import torch

    B, T = x.shape[:2]
    nt = chunk_count(T, chunk_size)
    # Always concatenate (an empty pad when T divides): no data-dependent branch for torch.compile.
    x = torch.cat([x, x.new_zeros((B, nt * chunk_size - T, *x.shape[2:]))], dim=1)
    return x.view(B, nt, chunk_size, *x.shape[2:])


def random_log_decay(shape, device, gen, low: float = 0.9, high: float = 0.999):
    """Per-token log-decays ``log(alpha)``, alpha uniform in [low, high): a chunk of 64 tokens then
    decays by e^-0.06 .. e^-7, so both the carried state and the in-chunk terms matter."""
    import torch

    u = torch.rand(tuple(shape), generator=gen, device=device, dtype=torch.float32)
    return torch.log(low + (high - low) * u)


def wy_representation(k, v, beta, g_cum, chunk_size: int):
    """The chunk-local WY factors (fla ``chunk_scaled_dot_kkt`` + ``solve_tril`` +
    ``recompute_w_u``): ``w [B, T, H, K]``, ``u [B, T, H, V]`` in fp32 from ``k [B, T, Hg, K]``
    (expanded to H heads), ``v [B, T, H, V]``, ``beta, g_cum [B, T, H]``.

    Used to build realistic inputs for the chunked operators: with random ``w``/``u`` the chunk
    recurrence need not be contractive and the state would blow up over long prompts."""
    import torch

    B, T, H, _ = v.shape
    kc = to_chunks(expand_heads(k.float(), H), chunk_size)          # [B, NT, C, H, K]
    vc = to_chunks(v.float(), chunk_size)
    bc = to_chunks(beta.float(), chunk_size)                         # [B, NT, C, H]
    gc = to_chunks(g_cum.float(), chunk_size)
    C = chunk_size
    lower = torch.ones(C, C, dtype=torch.bool, device=v.device).tril(-1)
    dg = gc.permute(0, 1, 3, 2)[..., :, None] - gc.permute(0, 1, 3, 2)[..., None, :]  # [B, NT, H, C, C]
    decay = torch.exp(torch.where(lower, dg, torch.full_like(dg, -math.inf)))
    kk = torch.einsum("bnihk,bnjhk->bnhij", kc, kc)
    a = kk * decay * bc.permute(0, 1, 3, 2)[..., :, None]
    eye = torch.eye(C, device=v.device, dtype=torch.float32)
    inv = torch.linalg.solve_triangular(eye + a, eye.expand_as(a), upper=False, unitriangular=True)
    kb = kc * (bc * torch.exp(gc))[..., None]
    vb = vc * bc[..., None]
    w = torch.einsum("bnhij,bnjhk->bnihk", inv, kb).reshape(B, -1, H, kc.shape[-1])[:, :T]
    u = torch.einsum("bnhij,bnjhv->bnihv", inv, vb).reshape(B, -1, H, vc.shape[-1])[:, :T]
    return w, u


def recurrent_gated_delta_rule(q, k, v, g, beta, state, scale: float):
    """The token-by-token recurrence (the meaning of every operator here), fp32, in place on
    ``state [B, H, K, V]``; ``q, k [B, T, Hg, K]`` (already normalized if the caller wants),
    ``v [B, T, H, V]``, ``g, beta [B, T, H]``. Returns ``o [B, T, H, V]`` (fp32).

    Loops over T only; every step is a handful of [B, H, K, V] vector ops."""
    import torch

    B, T, H, V = v.shape
    qe = expand_heads(q.float(), H) * scale
    ke = expand_heads(k.float(), H)
    vf, alpha, bf = v.float(), torch.exp(g.float()), beta.float()
    o = torch.empty((B, T, H, V), dtype=torch.float32, device=v.device)
    for t in range(T):
        state.mul_(alpha[:, t, :, None, None])
        kt = ke[:, t]                                                  # [B, H, K]
        delta = (vf[:, t] - torch.einsum("bhkv,bhk->bhv", state, kt)) * bf[:, t, :, None]
        state.add_(kt[..., :, None] * delta[..., None, :])
        o[:, t] = torch.einsum("bhkv,bhk->bhv", state, qe[:, t])
    return o


# ---- baselines of recurrent operators ------------------------------------------------------------
def register_stepwise_baselines(op: str, run: Callable, step: Callable, description: str) -> None:
    """``torch_eager`` = ``run(step, **inputs)``: a Python loop over chunks/time steps calling
    ``step``; ``torch_compile`` = the same loop calling ``torch.compile(step, dynamic=True,
    fullgraph=True)``. Compiling the whole loop would unroll thousands of steps (one graph per
    sequence length), which is not what a user deploys; compiling the step is.
    """
    from solbench.core.baselines import Compiled, compile_support
    from solbench.core.spec import Impl, add_impl

    compiled = Compiled(step, f"{op}.torch_compile.step")

    def eager(**inputs):
        return run(step, **inputs)

    def comp(**inputs):
        return run(compiled, **inputs)

    def warm(shape, inputs):
        import torch

        t0 = time.perf_counter()
        with torch.no_grad():
            comp(**inputs)
        if any(getattr(v, "is_cuda", False) for v in inputs.values()):
            torch.cuda.synchronize()
        return {"compile_s": round(time.perf_counter() - t0, 3)}

    add_impl(Impl(op, "torch_eager", eager, baseline=True, description=description))
    add_impl(Impl(op, "torch_compile", comp, available=compile_support, baseline=True, prepare=warm,
                  description="the same loop, each step torch.compile(dynamic=True, fullgraph=True)"))
