"""The Triton kernels of :mod:`solbench.kernels.linear_attention.chunk` (imported at the first
launch, so ``import solbench`` decorates no Triton kernel)."""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.kernels.common import next_pow2
from solbench.kernels.linear_attention._common_triton import dot_prec, l2norm, rtne_bf16
from solbench.kernels.linear_attention._util import rounds_by_hand


@triton.jit
def _chunk_state_kernel(k, w, u, g, pool, idx, h, v_new, final, T, NT, sp_n, sp_h,
                        sk_b, sk_t, sk_h, sw_b, sw_t, sw_h, su_b, su_t, su_h, sg_b, sg_t, sg_h,
                        H: tl.constexpr, GROUP: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                        BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, RTNE: tl.constexpr,
                        TF32: tl.constexpr = False, L2NORM: tl.constexpr = False, EPS: tl.constexpr = 1e-6,
                        POOL_OUT: tl.constexpr = False):
    # TF32 (the gated delta rule update's middle pass): w, u, h and v_new are fp32 and the products
    # tf32, the update's accuracy; L2NORM: k is normalized here; POOL_OUT: a negative index starts
    # from zeros and the final state goes back into the pool (nothing for a negative index).
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
    m_s = m_kv
    if POOL_OUT:  # the slot test as a vector (the interpreter takes no scalar mask operand)
        m_s = m_kv & (o_k * 0 + slot >= 0)[:, None]
    p_s = pool + slot * sp_n + i_h * sp_h + o_k[:, None] * V + o_v[None, :]
    S = tl.load(p_s, mask=m_s, other=0.0).to(tl.float32)
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
        if TF32:
            s_lp = S
        else:
            s_lp = rtne_bf16(S, RTNE).to(h.dtype.element_ty)
        tl.store(h + o_k[:, None] * V + o_v[None, :], s_lp.to(h.dtype.element_ty), mask=m_kv)
        bw = tl.load(w + tt * sw_t + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
        bu = tl.load(u + tt * su_t + o_v[None, :], mask=m_tv, other=0.0)
        vn = bu.to(tl.float32) - dot_prec(bw, s_lp, TF32, RTNE)
        tl.store(v_new + tt * (H * V) + o_v[None, :], rtne_bf16(vn, RTNE and not TF32).to(v_new.dtype.element_ty),
                 mask=m_tv)
        last = tl.minimum(c * BT + BT, T) - 1
        g_last = tl.load(g + last * sg_t).to(tl.float32)
        bg = tl.load(g + t * sg_t, mask=m_t, other=0.0).to(tl.float32)
        vn = vn * tl.where(m_t, tl.exp(g_last - bg), 0.0)[:, None]
        bkt = tl.load(k + o_k[:, None] + t[None, :].to(tl.int64) * sk_t, mask=m_k[:, None] & m_t[None, :], other=0.0)
        if TF32:
            S = S * tl.exp(g_last) + dot_prec(l2norm(bkt, 0, L2NORM, EPS), vn, TF32, RTNE)
        else:
            S = S * tl.exp(g_last) + dot_prec(bkt, rtne_bf16(vn, RTNE).to(bkt.dtype), TF32, RTNE)
        h += H * K * V
    if POOL_OUT:
        tl.store(p_s, S.to(pool.dtype.element_ty), mask=m_s)
    else:
        tl.store(final + (i_b * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :], S, mask=m_kv)


def launch_state(k, w, u, g, pool, idx, h, v_new, final, chunk_size, block_v, num_warps, num_stages,
                 tf32=False, l2norm_eps=None, pool_out=False):
    """The chunk-state launch; ``tf32``, ``l2norm_eps`` (normalize k) and ``pool_out`` are the
    gated delta rule update's middle pass (see the kernel)."""
    B, T, H, V = u.shape
    Hg, K = k.shape[2], k.shape[3]
    grid = (triton.cdiv(V, block_v), B * H)
    _chunk_state_kernel[grid](k, w, u, g, pool, idx, h, v_new, final, T, h.shape[1],
                              pool.stride(0), pool.stride(1), *k.stride()[:3], *w.stride()[:3],
                              *u.stride()[:3], *g.stride(), H=H, GROUP=H // Hg, K=K, V=V,
                              BT=chunk_size, BK=max(16, next_pow2(K)), BV=block_v, RTNE=rounds_by_hand(v_new),
                              TF32=tf32, L2NORM=l2norm_eps is not None, EPS=l2norm_eps or 1e-6, POOL_OUT=pool_out,
                              num_warps=num_warps, num_stages=num_stages)


@triton.jit
def _chunk_output_kernel(q, k, v, h, g, out, T, NT, scale, sq_b, sq_t, sq_h, sk_b, sk_t, sk_h,
                         sv_b, sv_t, sv_h, sg_b, sg_t, sg_h, so_b, so_t, so_h,
                         H: tl.constexpr, GROUP: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                         BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, RTNE: tl.constexpr,
                         TF32: tl.constexpr = False, L2NORM: tl.constexpr = False, EPS: tl.constexpr = 1e-6):
    # TF32 / L2NORM: the gated delta rule update's last pass (fp32 v and h, tf32 products, q and k
    # normalized here).
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
    tt = t.to(tl.int64)
    i_hk = i_h // GROUP
    m_tk = m_t[:, None] & m_k[None, :]
    bq = tl.load(q + i_b * sq_b + i_hk * sq_h + tt[:, None] * sq_t + o_k[None, :], mask=m_tk, other=0.0)
    bk = tl.load(k + i_b * sk_b + i_hk * sk_h + tt[:, None] * sk_t + o_k[None, :], mask=m_tk, other=0.0)
    if L2NORM:
        bq = l2norm(bq, 1, L2NORM, EPS)
        bk = l2norm(bk, 1, L2NORM, EPS)
    bh = tl.load(h + ((i_b * NT + i_c) * H + i_h) * K * V + o_k[:, None] * V + o_v[None, :],
                 mask=m_k[:, None] & m_v[None, :], other=0.0)
    bg = tl.load(g + i_b * sg_b + i_h * sg_h + tt * sg_t, mask=m_t, other=0.0).to(tl.float32)
    o = dot_prec(bq, bh, TF32, RTNE) * tl.exp(bg)[:, None]
    a = dot_prec(bq, tl.trans(bk), TF32, RTNE)
    # exp only where visible: above the diagonal g[t] - g[s] > 0 could overflow.
    vis = (o_t[:, None] >= o_t[None, :]) & m_t[None, :]
    a = a * tl.exp(tl.where(vis, bg[:, None] - bg[None, :], float("-inf")))
    bv = tl.load(v + i_b * sv_b + i_h * sv_h + tt[:, None] * sv_t + o_v[None, :],
                 mask=m_t[:, None] & m_v[None, :], other=0.0)
    if TF32:
        o += dot_prec(a, bv, TF32, RTNE)
    else:
        o += dot_prec(rtne_bf16(a, RTNE).to(bv.dtype), bv, TF32, RTNE)
    o = o * scale
    tl.store(out + i_b * so_b + i_h * so_h + tt[:, None] * so_t + o_v[None, :],
             rtne_bf16(o, RTNE).to(out.dtype.element_ty), mask=m_t[:, None] & m_v[None, :])


def launch_output(q, k, v, h, g, out, scale, bt, block_v, num_warps, num_stages, tf32=False, l2norm_eps=None):
    """The chunk-output launch; ``tf32`` and ``l2norm_eps`` (normalize q and k) are the gated
    delta rule update's last pass."""
    B, T, H, V = v.shape
    Hg, K = q.shape[2], q.shape[3]
    NT = h.shape[1]
    grid = (triton.cdiv(V, block_v), NT, B * H)
    _chunk_output_kernel[grid](q, k, v, h, g, out, T, NT, float(scale), *q.stride()[:3], *k.stride()[:3],
                               *v.stride()[:3], *g.stride(), *out.stride()[:3], H=H, GROUP=H // Hg, K=K, V=V, BT=bt,
                               BK=max(16, next_pow2(K)), BV=block_v, RTNE=rounds_by_hand(out), TF32=tf32,
                               L2NORM=l2norm_eps is not None, EPS=l2norm_eps or 1e-6, num_warps=num_warps,
                               num_stages=num_stages)
