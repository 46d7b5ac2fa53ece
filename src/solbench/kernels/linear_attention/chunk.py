"""The two tensor-core stages of chunked gated-delta-rule prefill (flash-linear-attention's
``chunk_gated_delta_rule_fwd_h`` and ``chunk_fwd_o`` jobs), on chunks of ``BT`` tokens, per
sequence b and value head i (key head ``i // (H // Hg)``), with ``g`` the chunk-local cumulative
log-decay:

* :func:`chunk_gated_delta_rule_state` -- the sequential part. From ``S = pool[indices[b], i]``::

      h[c] = S;  v_new[c] = u[c] - w[c] S;  S = exp(g_last) S + k[c]^T (v_new[c] exp(g_last - g[c]))

  returning ``h [B, NT, H, K, V]``, ``v_new [B, T, H, V]`` and the final states ``[B, H, K, V]``.
  One program carries a ``[K, BV]`` fp32 slice of one state through all chunks; the two products
  per chunk run on tensor cores with bf16 operands (fp32 accumulation), as upstream.
* :func:`chunk_delta_rule_output` -- the parallel part, one program per (chunk, value block)::

      out[t] = scale (exp(g[t]) q[t] h[c] + sum_{s <= t in c} (q[t].k[s]) exp(g[t] - g[s]) v[s])

Ops: ``solbench::chunk_gated_delta_rule_state(.out)`` and ``solbench::chunk_delta_rule_output(.out)``;
the kernels are in :mod:`._chunk_triton`, and off CUDA the ops compute with :mod:`._torch`.
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import (check_disjoint, check_out, check_warps, env_filled, functional_op, kernel_op,
                                     next_pow2)
from solbench.kernels.linear_attention import _torch
from solbench.kernels.linear_attention._util import cdiv, check_shape, check_tensor, index_dtypes, same_device, sm_count

STATE = "chunk_gated_delta_rule_state"
OUTPUT = "chunk_delta_rule_output"


def output_chunk_len(T: int, chunk_size: int) -> int:
    """Tokens per chunk of the output stage, as upstream's launcher picks them: short prompts get
    a power-of-two chunk of at least 16 (so ``h`` must have been computed with the same)."""
    if T >= chunk_size:
        return int(chunk_size)
    return min(int(chunk_size), max(16, next_pow2(int(T))))


@dataclasses.dataclass(frozen=True)
class ChunkOptions:
    """Launch options; ``None`` fields are filled by the stage's heuristic."""

    block_v: int | None = None
    num_warps: int | None = None
    num_stages: int | None = None


def _act_dtypes():
    return (torch.bfloat16, torch.float16)


def _check_acts(what, **tensors):
    """Activations in fla's ``[B, T, heads, dim]`` layout, any strides but the last (g: ``[B, T,
    heads]`` fp32, any strides)."""
    for name, (t, dims) in tensors.items():
        check_tensor(t, what, name, dims, _act_dtypes() if name != "g" else (torch.float32,), name != "g")


# ---- the chunk-state recurrence -------------------------------------------------------------------
def state_options(B: int, H: int, V: int, sms: int | None, given: ChunkOptions | None = None) -> ChunkOptions:
    """The recurrence is a chain of chunk steps per (sequence, head, value block): the narrowest
    value block (16, 32 or 64) whose programs fit one wave of SMs, 4 warps, 3 stages. Every value
    block of a head loads the head's whole w and k tiles each step, so narrower blocks trade more
    chains for more of those loads; past one wave the extra chains only queue, and the third
    stage hides the next step's loads (docs/DECISIONS.md has the measurements).
    ``SOLBENCH_CHUNK_STATE`` (fields ``block_v,num_warps,num_stages``, any subset as
    ``name=value``) fills what ``given`` leaves open, for GPU A/B runs (read at each call)."""
    given = env_filled("SOLBENCH_CHUNK_STATE", given or ChunkOptions())
    bv = 16
    while bv < min(64, next_pow2(V)) and sms and B * H * cdiv(V, bv) > sms:
        bv *= 2
    bv = given.block_v or bv
    if bv & (bv - 1) or bv < 16:
        raise ValueError(f"{STATE}: block_v must be a power of two >= 16, got {bv}")
    if (given.num_stages or 3) < 1:
        raise ValueError(f"{STATE}: num_stages must be >= 1, got {given.num_stages}")
    return ChunkOptions(block_v=bv, num_warps=check_warps(STATE, given.num_warps or 4),
                        num_stages=given.num_stages or 3)


def _check_state_aliasing(k, w, u, g, initial_state, initial_state_indices, h, v_new, final_state) -> None:
    check_disjoint(STATE, (("h", h), ("v_new", v_new), ("final_state", final_state)),
                   (("k", k), ("w", w), ("u", u), ("g", g), ("initial_state", initial_state),
                    ("initial_state_indices", initial_state_indices)))


def _state_eager(k, w, u, g, initial_state, initial_state_indices, h, v_new, final_state, chunk_size, block_v,
                 num_warps, num_stages) -> None:
    _check_state_aliasing(k, w, u, g, initial_state, initial_state_indices, h, v_new, final_state)
    _torch.chunk_gated_delta_rule_state(k, w, u, g, initial_state, initial_state_indices, h, v_new, final_state,
                                        chunk_size)


@kernel_op("solbench::chunk_gated_delta_rule_state.out", mutates_args=("h", "v_new", "final_state"),
           eager=_state_eager)
def _chunk_state_op(k: torch.Tensor, w: torch.Tensor, u: torch.Tensor, g: torch.Tensor, initial_state: torch.Tensor,
                    initial_state_indices: torch.Tensor, h: torch.Tensor, v_new: torch.Tensor,
                    final_state: torch.Tensor, chunk_size: int, block_v: int, num_warps: int,
                    num_stages: int) -> None:
    _check_state_aliasing(k, w, u, g, initial_state, initial_state_indices, h, v_new, final_state)
    if u.shape[0] == 0 or u.shape[2] == 0:
        return
    from solbench.kernels.linear_attention._chunk_triton import launch_state

    launch_state(k, w, u, g, initial_state, initial_state_indices, h, v_new, final_state, chunk_size, block_v,
                 num_warps, num_stages)


@_chunk_state_op.register_fake
def _chunk_state_fake(k, w, u, g, initial_state, initial_state_indices, h, v_new, final_state, chunk_size, block_v,
                      num_warps, num_stages) -> None:
    return None


def _state_outputs(k, w, u, g, initial_state, initial_state_indices, chunk_size, *options):
    B, T, _, K = k.shape
    H, V = u.shape[2], u.shape[3]
    return (k.new_empty((B, cdiv(T, chunk_size), H, K, V)), k.new_empty((B, T, H, V)),
            torch.empty((B, H, K, V), dtype=torch.float32, device=k.device))


functional_op("solbench::chunk_gated_delta_rule_state", _chunk_state_op, _state_outputs)


def chunk_gated_delta_rule_state(k: torch.Tensor, w: torch.Tensor, u: torch.Tensor, g: torch.Tensor,
                                 initial_state: torch.Tensor, initial_state_indices: torch.Tensor, *,
                                 chunk_size: int = 64, out: tuple | None = None,
                                 options: ChunkOptions | None = None):
    """Chunk-state recurrence (formula in the module docstring); returns ``(h, v_new, final_state)``.

    ``k [B, T, Hg, K]``, ``w [B, T, H, K]``, ``u [B, T, H, V]`` bf16/fp16 (last dim contiguous);
    ``g [B, T, H]`` fp32 chunk-local cumulative log-decays (restarting every ``chunk_size`` tokens);
    ``initial_state [N, H, K, V]`` fp32 (contiguous ``[K, V]`` states) read at
    ``initial_state_indices [B]`` (int32/int64, each in ``[0, N)``). ``chunk_size`` is a power of
    two in [16, 128]; K, V <= 256. ``out``: ``(h [B, NT, H, K, V], v_new, final_state [B, H, K,
    V] fp32)`` with h and v_new in k's dtype.
    """
    _check_acts(STATE, k=(k, 4), w=(w, 4), u=(u, 4), g=(g, 3))
    B, T, Hg, K = k.shape
    H, V = u.shape[2], u.shape[3]
    if tuple(u.shape[:2]) != (B, T) or H % max(Hg, 1):
        raise ValueError(f"{STATE}: u must be [B={B}, T={T}, H, V] with H a multiple of Hg={Hg}, got {tuple(u.shape)}")
    check_shape(w, (B, T, H, K), STATE, "w")
    check_shape(g, (B, T, H), STATE, "g")
    if w.dtype != k.dtype or u.dtype != k.dtype:
        raise TypeError(f"{STATE}: k, w and u must share one dtype, got {k.dtype}, {w.dtype}, {u.dtype}")
    check_tensor(initial_state, STATE, "initial_state", 4, (torch.float32,))
    if tuple(initial_state.shape[1:]) != (H, K, V) or initial_state.stride(2) != V:
        raise ValueError(f"{STATE}: initial_state must be [N, H={H}, K={K}, V={V}] with contiguous [K, V] states, "
                         f"got shape {tuple(initial_state.shape)} strides {initial_state.stride()}")
    check_tensor(initial_state_indices, STATE, "initial_state_indices", 1, index_dtypes(), last_contiguous=False)
    check_shape(initial_state_indices, (B,), STATE, "initial_state_indices")
    if chunk_size not in (16, 32, 64, 128):
        raise ValueError(f"{STATE}: chunk_size must be 16, 32, 64 or 128, got {chunk_size}")
    if K > 256 or V > 256:
        raise ValueError(f"{STATE}: key_dim and value_dim up to 256 are supported, got K={K}, V={V}")
    same_device(STATE, k, w=w, u=u, g=g, initial_state=initial_state, initial_state_indices=initial_state_indices)
    NT = cdiv(T, chunk_size)
    shapes = ((B, NT, H, K, V), (B, T, H, V), (B, H, K, V))
    dtypes = (k.dtype, k.dtype, torch.float32)
    if out is None:
        out = tuple(torch.empty(s, dtype=d, device=k.device) for s, d in zip(shapes, dtypes))
    else:
        if len(out) != 3:
            raise ValueError(f"{STATE}: out must be (h, v_new, final_state)")
        for name, t, s, d in zip(("h", "v_new", "final_state"), out, shapes, dtypes):
            check_out(t, s, d, k.device, STATE, f"out {name}")
            if not t.is_contiguous():
                raise ValueError(f"{STATE}: out {name} must be contiguous")
    opts = state_options(B, H, V, sm_count(k), options)
    _chunk_state_op(k, w, u, g, initial_state, initial_state_indices, *out, int(chunk_size), opts.block_v,
                    opts.num_warps, opts.num_stages)
    return tuple(out)


# ---- the chunk outputs ----------------------------------------------------------------------------
def output_options(V: int, given: ChunkOptions | None = None) -> ChunkOptions:
    """Every (chunk, head) is independent, so there are programs enough: one value block of up to
    128 columns, which reads q and k once for the whole head."""
    given = given or ChunkOptions()
    bv = given.block_v or min(128, max(16, next_pow2(V)))
    if bv & (bv - 1) or bv < 16:
        raise ValueError(f"{OUTPUT}: block_v must be a power of two >= 16, got {bv}")
    return ChunkOptions(block_v=bv, num_warps=given.num_warps or 4, num_stages=given.num_stages or 2)


def _output_eager(q, k, v, h, g, out, scale, bt, block_v, num_warps, num_stages) -> None:
    check_disjoint(OUTPUT, (("out", out),), (("q", q), ("k", k), ("v", v), ("h", h), ("g", g)))
    _torch.chunk_delta_rule_output(q, k, v, h, g, out, scale, bt)


@kernel_op("solbench::chunk_delta_rule_output.out", mutates_args=("out",), eager=_output_eager)
def _chunk_output_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: torch.Tensor, g: torch.Tensor,
                     out: torch.Tensor, scale: float, bt: int, block_v: int, num_warps: int, num_stages: int) -> None:
    check_disjoint(OUTPUT, (("out", out),), (("q", q), ("k", k), ("v", v), ("h", h), ("g", g)))
    if v.shape[0] == 0 or v.shape[1] == 0 or v.shape[2] == 0:
        return
    from solbench.kernels.linear_attention._chunk_triton import launch_output

    launch_output(q, k, v, h, g, out, scale, bt, block_v, num_warps, num_stages)


@_chunk_output_op.register_fake
def _chunk_output_fake(q, k, v, h, g, out, scale, bt, block_v, num_warps, num_stages) -> None:
    return None


functional_op("solbench::chunk_delta_rule_output", _chunk_output_op, lambda q, k, v, *rest: (v.new_empty(v.shape),))


def chunk_delta_rule_output(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: torch.Tensor, g: torch.Tensor,
                            scale: float | None = None, *, chunk_size: int = 64, out: torch.Tensor | None = None,
                            options: ChunkOptions | None = None) -> torch.Tensor:
    """Chunk outputs (formula in the module docstring); returns ``out`` (v's shape and dtype).

    ``q, k [B, T, Hg, K]``, ``v [B, T, H, V]`` bf16/fp16 (last dim contiguous); ``h [B, NT, H, K, V]`` (contiguous) the
    states at the chunk starts; ``g [B, T, H]`` fp32 chunk-local cumulative log-decays. Chunks hold
    :func:`output_chunk_len` tokens (``chunk_size`` from 16 to 128, a power of two). ``scale``
    defaults to ``K^-0.5``.
    """
    _check_acts(OUTPUT, q=(q, 4), k=(k, 4), v=(v, 4), h=(h, 5), g=(g, 3))
    B, T, Hg, K = q.shape
    H, V = v.shape[2], v.shape[3]
    check_shape(k, q.shape, OUTPUT, "k")
    if tuple(v.shape[:2]) != (B, T) or H % max(Hg, 1):
        raise ValueError(f"{OUTPUT}: v must be [B={B}, T={T}, H, V] with H a multiple of Hg={Hg}, got {tuple(v.shape)}")
    if chunk_size not in (16, 32, 64, 128):
        raise ValueError(f"{OUTPUT}: chunk_size must be 16, 32, 64 or 128, got {chunk_size}")
    bt = output_chunk_len(T, chunk_size)
    check_shape(h, (B, cdiv(T, bt), H, K, V), OUTPUT, "h")
    check_shape(g, (B, T, H), OUTPUT, "g")
    if not h.is_contiguous():
        raise ValueError(f"{OUTPUT}: h must be contiguous ([B, NT, H, K, V] as the state stage writes it)")
    if len({q.dtype, k.dtype, v.dtype, h.dtype}) != 1:
        raise TypeError(f"{OUTPUT}: q, k, v and h must share one dtype")
    if K > 256 or V > 256:
        raise ValueError(f"{OUTPUT}: key_dim and value_dim up to 256 are supported, got K={K}, V={V}")
    same_device(OUTPUT, q, k=k, v=v, h=h, g=g, out=out)
    if out is None:
        out = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    else:
        check_out(out, v.shape, v.dtype, v.device, OUTPUT)
        if not out.is_contiguous():
            raise ValueError(f"{OUTPUT}: out must be contiguous")
    opts = output_options(V, options)
    _chunk_output_op(q, k, v, h, g, out, float(K ** -0.5 if scale is None else scale), bt, opts.block_v,
                     opts.num_warps, opts.num_stages)
    return out
