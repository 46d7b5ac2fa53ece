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
"""
from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl

from solbench.kernels.common import check_disjoint, check_out, kernel_op, next_pow2
from solbench.kernels.linear_attention._util import (check_shape, check_tensor, dot_lp, index_dtypes,
                                                     rounds_by_hand, rtne_bf16, same_device, sm_count)

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
    """The recurrence is a chain of chunk steps per (sequence, head, value block): value blocks of
    64 where that still gives a program per SM, else 32 or 16 (more, shorter chains in flight)."""
    given = given or ChunkOptions()
    bv = min(64, max(16, next_pow2(V)))
    while bv > 16 and sms and B * H * triton.cdiv(V, bv) < sms:
        bv //= 2
    bv = given.block_v or bv
    if bv & (bv - 1) or bv < 16:
        raise ValueError(f"{STATE}: block_v must be a power of two >= 16, got {bv}")
    return ChunkOptions(block_v=bv, num_warps=given.num_warps or 4, num_stages=given.num_stages or 2)


@triton.jit
def _chunk_state_kernel(k, w, u, g, pool, idx, h, v_new, final, T, NT, sp_n, sp_h,
                        sk_b, sk_t, sk_h, sw_b, sw_t, sw_h, su_b, su_t, su_h, sg_b, sg_t, sg_h,
                        H: tl.constexpr, GROUP: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                        BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, RTNE: tl.constexpr):
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = (i_bh // H).to(tl.int64)
    i_h = i_bh % H
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_kv = m_k[:, None] & m_v[None, :]
    slot = tl.load(idx + i_b).to(tl.int64)
    S = tl.load(pool + slot * sp_n + i_h * sp_h + o_k[:, None] * V + o_v[None, :], mask=m_kv, other=0.0)
    S = S.to(tl.float32)
    # Row bases in int64 (i_b is): B * T * H * K passes 2^31 elements on long prompts.
    k += i_b * sk_b + (i_h // GROUP) * sk_h
    w += i_b * sw_b + i_h * sw_h
    u += i_b * su_b + i_h * su_h
    v_new += (i_b * T * H + i_h) * V
    g += i_b * sg_b + i_h * sg_h
    h += ((i_b * NT) * H + i_h) * K * V
    o_t = tl.arange(0, BT)
    for c in range(NT):
        t = c * BT + o_t
        m_t = t < T
        tt = t[:, None].to(tl.int64)
        m_tv = m_t[:, None] & m_v[None, :]
        # h[c] is the state rounded once to the activations' dtype, the operand of w @ S as well.
        s_lp = rtne_bf16(S, RTNE).to(h.dtype.element_ty)
        tl.store(h + o_k[:, None] * V + o_v[None, :], s_lp, mask=m_kv)
        bw = tl.load(w + tt * sw_t + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
        bu = tl.load(u + tt * su_t + o_v[None, :], mask=m_tv, other=0.0)
        vn = bu.to(tl.float32) - dot_lp(bw, s_lp, RTNE)
        tl.store(v_new + tt * (H * V) + o_v[None, :], rtne_bf16(vn, RTNE).to(v_new.dtype.element_ty), mask=m_tv)
        last = tl.minimum(c * BT + BT, T) - 1
        g_last = tl.load(g + last * sg_t).to(tl.float32)
        bg = tl.load(g + t * sg_t, mask=m_t, other=0.0).to(tl.float32)
        vn = vn * tl.where(m_t, tl.exp(g_last - bg), 0.0)[:, None]
        bkt = tl.load(k + o_k[:, None] + t[None, :].to(tl.int64) * sk_t, mask=m_k[:, None] & m_t[None, :], other=0.0)
        S = S * tl.exp(g_last) + dot_lp(bkt, rtne_bf16(vn, RTNE).to(bkt.dtype), RTNE)
        h += H * K * V
    tl.store(final + (i_b * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :], S, mask=m_kv)


@kernel_op("solbench::chunk_gated_delta_rule_state_", mutates_args=("h", "v_new", "final_state"))
def _chunk_state_op(k: torch.Tensor, w: torch.Tensor, u: torch.Tensor, g: torch.Tensor, initial_state: torch.Tensor,
                    initial_state_indices: torch.Tensor, h: torch.Tensor, v_new: torch.Tensor,
                    final_state: torch.Tensor, chunk_size: int, block_v: int, num_warps: int,
                    num_stages: int) -> None:
    check_disjoint(STATE, (("h", h), ("v_new", v_new), ("final_state", final_state)),
                   (("k", k), ("w", w), ("u", u), ("g", g), ("initial_state", initial_state),
                    ("initial_state_indices", initial_state_indices)))
    B, T, H, V = u.shape
    Hg, K = k.shape[2], k.shape[3]
    if B == 0 or H == 0:
        return
    NT = h.shape[1]
    grid = (triton.cdiv(V, block_v), B * H)
    _chunk_state_kernel[grid](k, w, u, g, initial_state, initial_state_indices, h, v_new, final_state, T, NT,
                              initial_state.stride(0), initial_state.stride(1), *k.stride()[:3], *w.stride()[:3],
                              *u.stride()[:3], *g.stride(), H=H, GROUP=H // Hg, K=K, V=V,
                              BT=chunk_size, BK=max(16, next_pow2(K)), BV=block_v, RTNE=rounds_by_hand(v_new),
                              num_warps=num_warps, num_stages=num_stages)


@_chunk_state_op.register_fake
def _chunk_state_fake(k, w, u, g, initial_state, initial_state_indices, h, v_new, final_state, chunk_size, block_v,
                      num_warps, num_stages) -> None:
    return None


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
    NT = triton.cdiv(T, chunk_size)
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


@triton.jit
def _chunk_output_kernel(q, k, v, h, g, out, T, NT, scale, sq_b, sq_t, sq_h, sk_b, sk_t, sk_h,
                         sv_b, sv_t, sv_h, sg_b, sg_t, sg_h,
                         H: tl.constexpr, GROUP: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                         BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, RTNE: tl.constexpr):
    i_v = tl.program_id(0)
    i_c = tl.program_id(1)
    i_bh = tl.program_id(2)
    i_b = (i_bh // H).to(tl.int64)
    i_h = i_bh % H
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    o_t = tl.arange(0, BT)
    t = i_c * BT + o_t
    m_k = o_k < K
    m_v = o_v < V
    m_t = t < T
    tok0 = i_b * T
    tt = t.to(tl.int64)
    i_hk = i_h // GROUP
    m_tk = m_t[:, None] & m_k[None, :]
    bq = tl.load(q + i_b * sq_b + i_hk * sq_h + tt[:, None] * sq_t + o_k[None, :], mask=m_tk, other=0.0)
    bk = tl.load(k + i_b * sk_b + i_hk * sk_h + tt[:, None] * sk_t + o_k[None, :], mask=m_tk, other=0.0)
    bh = tl.load(h + ((i_b * NT + i_c) * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :],
                 mask=m_k[:, None] & m_v[None, :], other=0.0)
    bg = tl.load(g + i_b * sg_b + i_h * sg_h + tt * sg_t, mask=m_t, other=0.0).to(tl.float32)
    o = dot_lp(bq, bh, RTNE) * tl.exp(bg)[:, None]
    a = dot_lp(bq, tl.trans(bk), RTNE)
    # exp only where visible: above the diagonal g[t] - g[s] > 0 could overflow.
    vis = (o_t[:, None] >= o_t[None, :]) & m_t[None, :]
    a = a * tl.exp(tl.where(vis, bg[:, None] - bg[None, :], float("-inf")))
    bv = tl.load(v + i_b * sv_b + i_h * sv_h + tt[:, None] * sv_t + o_v[None, :],
                 mask=m_t[:, None] & m_v[None, :], other=0.0)
    o += dot_lp(rtne_bf16(a, RTNE).to(bv.dtype), bv, RTNE)
    o = o * scale
    tl.store(out + ((tok0 + t) * H + i_h)[:, None] * V + o_v[None, :], rtne_bf16(o, RTNE).to(out.dtype.element_ty),
             mask=m_t[:, None] & m_v[None, :])


@kernel_op("solbench::chunk_delta_rule_output_", mutates_args=("out",))
def _chunk_output_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: torch.Tensor, g: torch.Tensor,
                     out: torch.Tensor, scale: float, bt: int, block_v: int, num_warps: int, num_stages: int) -> None:
    check_disjoint(OUTPUT, (("out", out),), (("q", q), ("k", k), ("v", v), ("h", h), ("g", g)))
    B, T, H, V = v.shape
    Hg, K = q.shape[2], q.shape[3]
    NT = h.shape[1]
    if B == 0 or T == 0 or H == 0:
        return
    grid = (triton.cdiv(V, block_v), NT, B * H)
    _chunk_output_kernel[grid](q, k, v, h, g, out, T, NT, float(scale), *q.stride()[:3], *k.stride()[:3],
                               *v.stride()[:3], *g.stride(), H=H, GROUP=H // Hg, K=K, V=V, BT=bt,
                               BK=max(16, next_pow2(K)), BV=block_v, RTNE=rounds_by_hand(out), num_warps=num_warps,
                               num_stages=num_stages)


@_chunk_output_op.register_fake
def _chunk_output_fake(q, k, v, h, g, out, scale, bt, block_v, num_warps, num_stages) -> None:
    return None


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
    check_shape(h, (B, triton.cdiv(T, bt), H, K, V), OUTPUT, "h")
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
