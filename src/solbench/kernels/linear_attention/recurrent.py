"""Fused recurrent gated-delta-rule step with the GDN gates inside (sglang/vLLM
``fused_sigmoid_gating_delta_rule_update``): the decode path of Gated DeltaNet layers.

Per sequence b and value head i (key head ``i // (HV // H)``), with ``S = pool[indices[b], i]``
(``[K, V]`` fp32; zeros when the index is negative), token by token::

    g = -exp(A_log[i]) * softplus_beta(a[b, t, i] + dt_bias[i]);  beta = sigmoid(b[b, t, i])
    q, k = l2norm(q[b, t]), l2norm(k[b, t])          (x * rsqrt(sum x^2 + 1e-6), optional)
    S = exp(g) S;  S += k (beta (v[b, t, i] - S^T k))^T;  out[b, t, i] = S^T (scale q)

and the final ``S`` is written back into the pool row (nothing is written for a negative index).

One program owns a ``[K, BV]`` slice of one state for the whole call: the slice is read once,
carried in registers over the tokens and written once, so at T = 1 the kernel moves each state
row exactly twice, at bandwidth. Calls of many tokens take the chunked form instead
(:mod:`solbench.kernels.linear_attention._chunked_update_triton`), tf32 tensor cores with the same
state traffic.

Op: ``solbench::gated_delta_rule_update_`` (the pool updated in place, ``out`` written); the kernels
are in :mod:`._recurrent_triton`, and off CUDA the op computes with :mod:`._torch`.
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import check_disjoint, check_out, env_filled, kernel_op, next_pow2
from solbench.kernels.linear_attention import _torch
from solbench.kernels.linear_attention._util import (cdiv, check_shape, check_tensor, float_dtypes, index_dtypes,
                                                     same_device, sm_count)

WHAT = "gated_delta_rule_update"
L2NORM_EPS = 1e-6


#: Calls of at least this many tokens take the chunked tensor-core path.
CHUNKED_MIN_TOKENS = 64


@dataclasses.dataclass(frozen=True)
class RecurrentOptions:
    """Launch options; ``None`` fields are filled by :func:`recurrent_options`."""

    block_v: int | None = None    # value columns per program (power of two)
    num_warps: int | None = None
    chunked: bool | None = None   # the chunked (WY, tf32 tensor-core) path instead of token steps
    passes: int | None = None     # chunked: 1 (one launch carries everything) or 3 (WY, state chain, outputs)


def recurrent_options(B: int, T: int, HV: int, K: int, V: int, sms: int | None,
                      given: RecurrentOptions | None = None) -> RecurrentOptions:
    """Decode (T = 1) is one load and one store of the state: value blocks shrink until the
    launch covers two waves of SMs, so every SM streams. A few tokens stay token steps (narrow
    blocks on one warp keep each step's K-reductions inside a warp); long calls go by chunks of
    64 on tensor cores, value blocks of 32 (16 where those programs still fit one wave) on 4
    warps.
    ``passes=3`` (off by default until timed) runs the chunked form as three launches: the WY terms
    of every chunk in parallel, a serial chain of two products a chunk, every output in parallel.
    ``SOLBENCH_GDR`` (``block_v,num_warps,chunked,passes``, or ``name=value`` items) fills what
    ``given`` leaves open, for GPU A/B runs."""
    given = env_filled("SOLBENCH_GDR", given or RecurrentOptions())
    chunked = given.chunked if given.chunked is not None else T >= CHUNKED_MIN_TOKENS
    bk, vp = next_pow2(K), next_pow2(V)
    if chunked:
        # A chunk program takes ~180 KB of shared memory on sm_90, so one runs an SM: 16-column
        # blocks only where their programs still fit one wave (as the chunk state's rule), else 32
        # (at 32 value heads, 16 columns made two waves of the whole serial chunk chain).
        bv = min(max(vp, 16), 32)
        if sms and B * HV * cdiv(V, 16) <= sms:
            bv = 16
        warps = 4
    elif T <= 1:
        bv = min(vp, 64)
        while bv > 8 and sms and B * HV * cdiv(V, bv) < 2 * sms:
            bv //= 2
        warps = max(1, min(8, bk * bv // 512))
    else:
        bv, warps = min(vp, 8), 1
    bv = given.block_v or bv
    if bv & (bv - 1) or (chunked and bv < 16):
        raise ValueError(f"{WHAT}: block_v must be a power of two (at least 16 when chunked), got {bv}")
    passes = given.passes or 1
    if passes not in (1, 3):
        raise ValueError(f"{WHAT}: passes must be 1 or 3, got {passes}")
    return RecurrentOptions(block_v=bv, num_warps=given.num_warps or warps, chunked=chunked, passes=passes)


def _check_aliasing(q, k, v, a, b, initial_state, initial_state_indices, out) -> None:
    check_disjoint(WHAT, (("out", out), ("initial_state", initial_state)),
                   (("q", q), ("k", k), ("v", v), ("a", a), ("b", b), ("initial_state_indices", initial_state_indices)))


def _eager(q, k, v, a, b, A_log, dt_bias, initial_state, initial_state_indices, out, scale, softplus_beta,
           softplus_threshold, use_qk_l2norm, block_v, num_warps, chunked, passes=1) -> None:
    _check_aliasing(q, k, v, a, b, initial_state, initial_state_indices, out)
    _torch.gated_delta_rule_update(q, k, v, a, b, A_log, dt_bias, initial_state, initial_state_indices, out, scale,
                                   softplus_beta, softplus_threshold, use_qk_l2norm, L2NORM_EPS)


@kernel_op("solbench::gated_delta_rule_update_", mutates_args=("initial_state", "out"), eager=_eager)
def _gdr_update_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                   A_log: torch.Tensor, dt_bias: torch.Tensor, initial_state: torch.Tensor,
                   initial_state_indices: torch.Tensor, out: torch.Tensor, scale: float, softplus_beta: float,
                   softplus_threshold: float, use_qk_l2norm: bool, block_v: int, num_warps: int,
                   chunked: bool, passes: int = 1) -> None:
    _check_aliasing(q, k, v, a, b, initial_state, initial_state_indices, out)
    if v.shape[0] == 0 or v.shape[1] == 0:
        return
    from solbench.kernels.linear_attention._recurrent_triton import launch

    launch(q, k, v, a, b, A_log, dt_bias, initial_state, initial_state_indices, out, scale, softplus_beta,
           softplus_threshold, bool(use_qk_l2norm), L2NORM_EPS, block_v, num_warps, chunked, passes)


@_gdr_update_op.register_fake
def _gdr_update_fake(q, k, v, a, b, A_log, dt_bias, initial_state, initial_state_indices, out, scale,
                     softplus_beta, softplus_threshold, use_qk_l2norm, block_v, num_warps, chunked, passes=1) -> None:
    return None


def gated_delta_rule_update(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                            A_log: torch.Tensor, dt_bias: torch.Tensor, initial_state: torch.Tensor,
                            initial_state_indices: torch.Tensor, *, scale: float | None = None,
                            softplus_beta: float = 1.0, softplus_threshold: float = 20.0,
                            use_qk_l2norm: bool = True, out: torch.Tensor | None = None,
                            options: RecurrentOptions | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gated DeltaNet recurrent update (formula in the module docstring); returns
    ``(out, initial_state)``, the pool updated in place at the sequences' indices.

    ``q, k [B, T, H, K]``, ``v [B, T, HV, V]``, ``a, b [B, T, HV]`` (bf16/fp16/fp32; strided in
    every dim but the last); ``A_log [HV]``, ``dt_bias [HV]``; ``initial_state [N, HV, K, V]``
    fp32 with contiguous ``[K, V]`` states; ``initial_state_indices [B]`` int32/int64 (negative:
    start from zeros, write nothing back). ``out [B, T, HV, V]`` in v's dtype. ``scale`` defaults
    to ``K^-0.5``. HV must be a multiple of H; K <= 256.
    """
    for name, t, dims in (("q", q, 4), ("k", k, 4), ("v", v, 4), ("a", a, 3), ("b", b, 3)):
        check_tensor(t, WHAT, name, dims, float_dtypes())
    B, T, H, K = q.shape
    HV, V = v.shape[2], v.shape[3]
    check_shape(k, q.shape, WHAT, "k")
    if tuple(v.shape[:2]) != (B, T) or HV % H:
        raise ValueError(f"{WHAT}: v must be [B={B}, T={T}, HV, V] with HV a multiple of H={H}, got {tuple(v.shape)}")
    check_shape(a, (B, T, HV), WHAT, "a")
    check_shape(b, (B, T, HV), WHAT, "b")
    for name, t in (("A_log", A_log), ("dt_bias", dt_bias)):
        check_tensor(t, WHAT, name, 1, float_dtypes())
        check_shape(t, (HV,), WHAT, name)
    check_tensor(initial_state, WHAT, "initial_state", 4, (torch.float32,))
    if tuple(initial_state.shape[1:]) != (HV, K, V) or initial_state.stride(2) != V:
        raise ValueError(f"{WHAT}: initial_state must be [N, HV={HV}, K={K}, V={V}] with contiguous [K, V] states, "
                         f"got shape {tuple(initial_state.shape)} strides {initial_state.stride()}")
    check_tensor(initial_state_indices, WHAT, "initial_state_indices", 1, index_dtypes(), last_contiguous=False)
    check_shape(initial_state_indices, (B,), WHAT, "initial_state_indices")
    if K > 256 or V > 256:
        raise ValueError(f"{WHAT}: key_dim and value_dim up to 256 are supported, got K={K}, V={V}")
    same_device(WHAT, q, k=k, v=v, a=a, b=b, A_log=A_log, dt_bias=dt_bias, initial_state=initial_state,
                initial_state_indices=initial_state_indices, out=out)
    if out is None:
        out = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    else:
        check_out(out, v.shape, v.dtype, v.device, WHAT)
        if V > 1 and out.stride(-1) != 1:
            raise ValueError(f"{WHAT}: out must be contiguous in its last dimension")
    opts = recurrent_options(B, T, HV, K, V, sm_count(v), options)
    _gdr_update_op(q, k, v, a, b, A_log, dt_bias, initial_state, initial_state_indices, out,
                   float(K ** -0.5 if scale is None else scale), float(softplus_beta), float(softplus_threshold),
                   bool(use_qk_l2norm), opts.block_v, opts.num_warps, opts.chunked, opts.passes)
    return out, initial_state
