"""The Triton kernel of :mod:`solbench.kernels.linear_attention.recurrent` (imported at the first
launch, so ``import solbench`` decorates no Triton kernel)."""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.kernels.common import next_pow2
from solbench.kernels.linear_attention._common_triton import gdn_gates, load_state, rtne_bf16
from solbench.kernels.linear_attention._util import rounds_by_hand, sm_count


@triton.jit
def _gdr_recurrent_kernel(q, k, v, a, b, A_log, dt_bias, pool, idx, out, T,
                          sq_b, sq_t, sq_h, sk_b, sk_t, sk_h, sv_b, sv_t, sv_h,
                          sa_b, sa_t, sb_b, sb_t, so_b, so_t, so_h, sp_n, sp_h,
                          scale, sp_beta, sp_threshold,
                          HV: tl.constexpr, GROUP: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                          BK: tl.constexpr, BV: tl.constexpr, L2NORM: tl.constexpr, EPS: tl.constexpr,
                          RTNE: tl.constexpr):
    i_b, i_h, i_hk, o_k, o_v, m_k, m_v, m_s, p_s, S, neg_A, bias = load_state(
        pool, idx, A_log, dt_bias, sp_n, sp_h, HV, GROUP, K, V, BK, BV)
    q += i_b * sq_b + i_hk * sq_h
    k += i_b * sk_b + i_hk * sk_h
    v += i_b * sv_b + i_h * sv_h
    a += i_b * sa_b + i_h
    b += i_b * sb_b + i_h
    out += i_b * so_b + i_h * so_h
    # Pointers step by one token each iteration (64-bit pointer arithmetic, no index product).
    for _ in range(T):
        bq = tl.load(q + o_k, mask=m_k, other=0.0).to(tl.float32)
        bk = tl.load(k + o_k, mask=m_k, other=0.0).to(tl.float32)
        bv = tl.load(v + o_v, mask=m_v, other=0.0).to(tl.float32)
        g, beta = gdn_gates(tl.load(a), tl.load(b), neg_A, bias, sp_beta, sp_threshold, None, False)
        decay = tl.exp(g)
        if L2NORM:
            bq = bq * tl.rsqrt(tl.sum(bq * bq) + EPS)
            bk = bk * tl.rsqrt(tl.sum(bk * bk) + EPS)
        bq = bq * scale
        S = S * decay
        delta = (bv - tl.sum(S * bk[:, None], 0)) * beta
        S = S + bk[:, None] * delta[None, :]
        o = tl.sum(S * bq[:, None], 0)
        tl.store(out + o_v, rtne_bf16(o, RTNE).to(out.dtype.element_ty), mask=m_v)
        q += sq_t
        k += sk_t
        v += sv_t
        a += sa_t
        b += sb_t
        out += so_t
    tl.store(p_s, S.to(pool.dtype.element_ty), mask=m_s)


def launch(q, k, v, a, b, A_log, dt_bias, pool, idx, out, scale, softplus_beta, softplus_threshold, l2norm, eps,
           block_v, num_warps, chunked, passes=1):
    """The token-step kernel, or the launches of the chunked path, in one chain (``passes`` 1) or
    three passes (shapes validated by the public wrapper)."""
    B, T, HV, V = v.shape
    H, K = q.shape[2], q.shape[3]
    if chunked and passes == 3:
        from solbench.kernels.linear_attention._chunked_update_triton import launch_three_pass_update

        launch_three_pass_update(q, k, v, a, b, A_log, dt_bias, pool, idx, out, scale, softplus_beta,
                                 softplus_threshold, l2norm, eps, sm_count(v))
        return
    if chunked:
        from solbench.kernels.linear_attention._chunked_update_triton import launch_chunked_update

        launch_chunked_update(q, k, v, a, b, A_log, dt_bias, pool, idx, out, scale, softplus_beta,
                              softplus_threshold, l2norm, eps, block_v, num_warps, rounds_by_hand(out))
        return
    grid = (triton.cdiv(V, block_v), B * HV)
    _gdr_recurrent_kernel[grid](
        q, k, v, a, b, A_log, dt_bias, pool, idx, out, T,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), a.stride(0), a.stride(1), b.stride(0), b.stride(1),
        out.stride(0), out.stride(1), out.stride(2), pool.stride(0), pool.stride(1),
        float(scale), float(softplus_beta), float(softplus_threshold),
        HV=HV, GROUP=HV // H, K=K, V=V, BK=next_pow2(K), BV=block_v, L2NORM=l2norm,
        EPS=eps, RTNE=rounds_by_hand(out), num_warps=num_warps)
