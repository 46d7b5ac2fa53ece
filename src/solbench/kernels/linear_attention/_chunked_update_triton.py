"""The gated delta rule update over many tokens in chunks of 64 (WY form) on tf32 tensor cores, at
the recurrent kernel's fp32-class accuracy (bf16 operands would round the carried state): the
chunked path of :mod:`.recurrent`, imported at its first launch.

Per sequence, value head and chunk of tokens (``g`` the chunk-local cumulative log-decay,
``beta`` the write strengths, ``k, q`` l2-normalized)::

    L    = strict_tril(beta_i (k_i . k_j) exp(g_i - g_j))     Tinv = (I + L)^-1
    v'   = Tinv (beta (v - exp(g) k S))                        (the chunk's corrected values)
    out  = scale (exp(g) q S + tril(q k^T exp(g_i - g_j)) v')
    S    = exp(g_last) S + k^T (exp(g_last - g) v')

Two launches: :func:`_wy_inverse_kernel` builds ``Tinv`` for every (chunk, head) in parallel (16 x 16
diagonal blocks by recursive block inversion, then block substitution, kept out of the chunk chain),
then :func:`_chunk_step_kernel` carries a ``[K, BV]`` fp32 state slice through the chunks of one
(sequence, head), reading each state row once and writing it once as the recurrent kernel does.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from solbench.kernels.linear_attention._common_triton import gdn_gates, l2norm, load_state, rtne_bf16

CHUNK = 64
SUB = 16   # Tinv is built from 16 x 16 blocks: four diagonal inverses, then block substitution


@triton.jit
def _load_sub(a, b, k, t, m_t, o_k, m_k, sa_t, sb_t, sk_t, neg_A, bias, sp_beta, sp_threshold,
              L2NORM: tl.constexpr, EPS: tl.constexpr):
    """One 16-token block: gates (per-token log-decay, beta) and normalized keys."""
    tt = t.to(tl.int64)
    gt, beta = gdn_gates(tl.load(a + tt * sa_t, mask=m_t, other=0.0), tl.load(b + tt * sb_t, mask=m_t, other=0.0),
                      neg_A, bias, sp_beta, sp_threshold, m_t, True)
    kb = tl.load(k + tt[:, None] * sk_t + o_k[None, :], mask=m_t[:, None] & m_k[None, :], other=0.0)
    return gt, beta, l2norm(kb, 1, L2NORM, EPS)


@triton.jit
def _l_block(ki, kj, beta_i, g_i, g_j, DIAG: tl.constexpr):
    """beta_i (k_i . k_j) exp(g_i - g_j) for token i of one block and j of an earlier one (strictly
    lower inside a diagonal block)."""
    o = tl.arange(0, 16)
    dg = g_i[:, None] - g_j[None, :]
    if DIAG:
        dg = tl.where(o[:, None] > o[None, :], dg, float("-inf"))
    return tl.dot(ki, tl.trans(kj), input_precision="tf32") * beta_i[:, None] * tl.exp(dg)


@triton.jit
def _inv_unit_lower16(Lb):
    """(I + Lb)^-1 for a strictly lower 16 x 16 ``Lb`` by recursive block inversion: if X inverts
    the block diagonal of (I + Lb) in k x k blocks, X - X M X inverts it in 2k x 2k blocks, M being
    Lb's lower-left k x k block of each 2k x 2k one ([[A, 0], [B, C]]^-1 = [[A^-1, 0],
    [-C^-1 B A^-1, C^-1]]). k = 1 is I - M; then three levels of two 16 x 16 products. A row-by-row
    substitution reduces across the warps twice a row (289 barriers in the WY kernel on sm_90);
    this has no row loop, and its error is the substitution's (both ~2e-7 relative in fp32 on
    nearly parallel keys without decay, where the Neumann product (I - L)(I + L^2)(I + L^4)(I + L^8)
    loses two digits)."""
    o = tl.arange(0, 16)
    r = o[:, None]
    c = o[None, :]
    X = tl.where(r == c, 1.0, 0.0) - tl.where((r // 2 == c // 2) & (r % 2 == 1) & (c % 2 == 0), Lb, 0.0)
    X = _inv_level(X, Lb, r, c, 2)
    X = _inv_level(X, Lb, r, c, 4)
    return _inv_level(X, Lb, r, c, 8)


@triton.jit
def _inv_level(X, Lb, r, c, K: tl.constexpr):
    """From the inverse of (I + Lb)'s K x K diagonal blocks to its 2K x 2K ones."""
    M = tl.where((r // (2 * K) == c // (2 * K)) & ((r // K) % 2 == 1) & ((c // K) % 2 == 0), Lb, 0.0)
    return X - _mm(_mm(X, M), X)


@triton.jit
def _mm(a, b):
    # The inverse's 16 x 16 block products in full fp32: they are few and cheap.
    return tl.dot(a, b, input_precision="ieee")


@triton.jit
def _store16(p, X, o16, ld, r: tl.constexpr, c: tl.constexpr):
    tl.store(p + (r * 16 + o16)[:, None] * ld + (c * 16 + o16)[None, :], X)


@triton.jit
def _wy_inverse_kernel(k, a, b, A_log, dt_bias, tinv, T, NT,
                       sk_b, sk_t, sk_h, sa_b, sa_t, sb_b, sb_t, sp_beta, sp_threshold,
                       HV: tl.constexpr, GROUP: tl.constexpr, K: tl.constexpr, BK: tl.constexpr,
                       L2NORM: tl.constexpr, EPS: tl.constexpr):
    i_c = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = (i_bh // HV).to(tl.int64)
    i_h = i_bh % HV
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    o16 = tl.arange(0, 16)
    neg_A = -tl.exp(tl.load(A_log + i_h).to(tl.float32))
    bias = tl.load(dt_bias + i_h).to(tl.float32)
    k += i_b * sk_b + (i_h // GROUP) * sk_h
    a += i_b * sa_b + i_h
    b += i_b * sb_b + i_h
    t0 = i_c * 64
    t = t0 + o16
    gt0, be0, k0 = _load_sub(a, b, k, t, t < T, o_k, m_k, sa_t, sb_t, sk_t, neg_A, bias, sp_beta, sp_threshold,
                             L2NORM, EPS)
    gt1, be1, k1 = _load_sub(a, b, k, t + 16, t + 16 < T, o_k, m_k, sa_t, sb_t, sk_t, neg_A, bias, sp_beta,
                             sp_threshold, L2NORM, EPS)
    gt2, be2, k2 = _load_sub(a, b, k, t + 32, t + 32 < T, o_k, m_k, sa_t, sb_t, sk_t, neg_A, bias, sp_beta,
                             sp_threshold, L2NORM, EPS)
    gt3, be3, k3 = _load_sub(a, b, k, t + 48, t + 48 < T, o_k, m_k, sa_t, sb_t, sk_t, neg_A, bias, sp_beta,
                             sp_threshold, L2NORM, EPS)
    # Chunk-local cumulative log-decays, block by block.
    g0 = tl.cumsum(gt0, 0)
    g1 = tl.cumsum(gt1, 0) + tl.sum(gt0, 0)
    g2 = tl.cumsum(gt2, 0) + tl.sum(gt0, 0) + tl.sum(gt1, 0)
    g3 = tl.cumsum(gt3, 0) + tl.sum(gt0, 0) + tl.sum(gt1, 0) + tl.sum(gt2, 0)
    # Every L block first, so the four [16, K] key blocks are dead before the inverses (255
    # registers either way on sm_90; this order spills less).
    L00 = _l_block(k0, k0, be0, g0, g0, True)
    L10 = _l_block(k1, k0, be1, g1, g0, False)
    L20 = _l_block(k2, k0, be2, g2, g0, False)
    L30 = _l_block(k3, k0, be3, g3, g0, False)
    L11 = _l_block(k1, k1, be1, g1, g1, True)
    L21 = _l_block(k2, k1, be2, g2, g1, False)
    L31 = _l_block(k3, k1, be3, g3, g1, False)
    L22 = _l_block(k2, k2, be2, g2, g2, True)
    L32 = _l_block(k3, k2, be3, g3, g2, False)
    L33 = _l_block(k3, k3, be3, g3, g3, True)
    # Block forward substitution: T_ii = (I + L_ii)^-1, T_ij = -T_ii sum_{j <= m < i} L_im T_mj.
    T00 = _inv_unit_lower16(L00)
    T11 = _inv_unit_lower16(L11)
    T22 = _inv_unit_lower16(L22)
    T33 = _inv_unit_lower16(L33)
    T10 = -_mm(T11, _mm(L10, T00))
    T21 = -_mm(T22, _mm(L21, T11))
    T20 = -_mm(T22, _mm(L20, T00) + _mm(L21, T10))
    T32 = -_mm(T33, _mm(L32, T22))
    T31 = -_mm(T33, _mm(L31, T11) + _mm(L32, T21))
    T30 = -_mm(T33, _mm(L30, T00) + _mm(L31, T10) + _mm(L32, T20))
    p = tinv + ((i_b * NT + i_c) * HV + i_h) * 4096
    zero = tl.zeros((16, 16), tl.float32)
    _store16(p, T00, o16, 64, 0, 0)
    _store16(p, zero, o16, 64, 0, 1)
    _store16(p, zero, o16, 64, 0, 2)
    _store16(p, zero, o16, 64, 0, 3)
    _store16(p, T10, o16, 64, 1, 0)
    _store16(p, T11, o16, 64, 1, 1)
    _store16(p, zero, o16, 64, 1, 2)
    _store16(p, zero, o16, 64, 1, 3)
    _store16(p, T20, o16, 64, 2, 0)
    _store16(p, T21, o16, 64, 2, 1)
    _store16(p, T22, o16, 64, 2, 2)
    _store16(p, zero, o16, 64, 2, 3)
    _store16(p, T30, o16, 64, 3, 0)
    _store16(p, T31, o16, 64, 3, 1)
    _store16(p, T32, o16, 64, 3, 2)
    _store16(p, T33, o16, 64, 3, 3)


@triton.jit
def _chunk_step_kernel(q, k, v, a, b, A_log, dt_bias, pool, idx, tinv, out, T, NT,
                       sq_b, sq_t, sq_h, sk_b, sk_t, sk_h, sv_b, sv_t, sv_h, sa_b, sa_t, sb_b, sb_t,
                       so_b, so_t, so_h, sp_n, sp_h, scale, sp_beta, sp_threshold,
                       HV: tl.constexpr, GROUP: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                       BK: tl.constexpr, BV: tl.constexpr, L2NORM: tl.constexpr, EPS: tl.constexpr,
                       RTNE: tl.constexpr):
    i_b, i_h, i_hk, o_k, o_v, m_k, m_v, m_s, p_s, S, neg_A, bias = load_state(
        pool, idx, A_log, dt_bias, sp_n, sp_h, HV, GROUP, K, V, BK, BV)
    o_t = tl.arange(0, 64)
    q += i_b * sq_b + i_hk * sq_h
    k += i_b * sk_b + i_hk * sk_h
    v += i_b * sv_b + i_h * sv_h
    a += i_b * sa_b + i_h
    b += i_b * sb_b + i_h
    out += i_b * so_b + i_h * so_h
    tinv += (i_b * NT * HV + i_h) * 4096
    causal = o_t[:, None] >= o_t[None, :]
    for c in range(NT):
        t = c * 64 + o_t
        m_t = t < T
        tt = t.to(tl.int64)
        gt, beta = gdn_gates(tl.load(a + tt * sa_t, mask=m_t, other=0.0), tl.load(b + tt * sb_t, mask=m_t, other=0.0),
                          neg_A, bias, sp_beta, sp_threshold, m_t, True)
        g = tl.cumsum(gt, 0)
        g_last = tl.sum(gt, 0)
        m_tk = m_t[:, None] & m_k[None, :]
        kc = l2norm(tl.load(k + tt[:, None] * sk_t + o_k[None, :], mask=m_tk, other=0.0), 1, L2NORM, EPS)
        qc = l2norm(tl.load(q + tt[:, None] * sq_t + o_k[None, :], mask=m_tk, other=0.0), 1, L2NORM, EPS) * scale
        vc = tl.load(v + tt[:, None] * sv_t + o_v[None, :], mask=m_t[:, None] & m_v[None, :], other=0.0)
        Ti = tl.load(tinv + o_t[:, None] * 64 + o_t[None, :])
        eg = tl.exp(g)
        y = beta[:, None] * (vc.to(tl.float32) - eg[:, None] * tl.dot(kc, S, input_precision="tf32"))
        vn = tl.dot(Ti, y, input_precision="tf32")
        P = tl.dot(qc, tl.trans(kc), input_precision="tf32")
        P = P * tl.exp(tl.where(causal, g[:, None] - g[None, :], float("-inf")))
        o = eg[:, None] * tl.dot(qc, S, input_precision="tf32") + tl.dot(P, vn, input_precision="tf32")
        tl.store(out + tt[:, None] * so_t + o_v[None, :], rtne_bf16(o, RTNE).to(out.dtype.element_ty),
                 mask=m_t[:, None] & m_v[None, :])
        vn = vn * tl.where(m_t, tl.exp(g_last - g), 0.0)[:, None]
        S = S * tl.exp(g_last) + tl.dot(tl.trans(kc), vn, input_precision="tf32")
        tinv += HV * 4096
    tl.store(p_s, S.to(pool.dtype.element_ty), mask=m_s)


@triton.jit
def _wy_apply_kernel(k, v, a, b, A_log, dt_bias, tinv, w, u, g, T, NT,
                     sk_b, sk_t, sk_h, sv_b, sv_t, sv_h, sa_b, sa_t, sb_b, sb_t, sp_beta, sp_threshold,
                     HV: tl.constexpr, GROUP: tl.constexpr, K: tl.constexpr, V: tl.constexpr,
                     BK: tl.constexpr, BV: tl.constexpr, L2NORM: tl.constexpr, EPS: tl.constexpr):
    """The three-pass form's first pass, for one (chunk, value head): the chunk-local cumulative
    log-decays g and the WY terms w = Tinv (beta exp(g) k) and u = Tinv (beta v), all fp32 ([B, T,
    HV, ...] contiguous), so the serial pass only carries v' = u - w S and the state."""
    i_c = tl.program_id(0)
    i_bh = tl.program_id(1)
    i_b = (i_bh // HV).to(tl.int64)
    i_h = i_bh % HV
    o_t = tl.arange(0, 64)
    o_k = tl.arange(0, BK)
    o_v = tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    t = i_c * 64 + o_t
    m_t = t < T
    tt = t.to(tl.int64)
    neg_A = -tl.exp(tl.load(A_log + i_h).to(tl.float32))
    bias = tl.load(dt_bias + i_h).to(tl.float32)
    gt, beta = gdn_gates(tl.load(a + i_b * sa_b + i_h + tt * sa_t, mask=m_t, other=0.0),
                         tl.load(b + i_b * sb_b + i_h + tt * sb_t, mask=m_t, other=0.0),
                         neg_A, bias, sp_beta, sp_threshold, m_t, True)
    gc = tl.cumsum(gt, 0)
    row = (i_b * T + tt) * HV + i_h  # the token's row of the [B, T, HV, ...] outputs
    tl.store(g + row, gc, mask=m_t)
    kc = l2norm(tl.load(k + i_b * sk_b + (i_h // GROUP) * sk_h + tt[:, None] * sk_t + o_k[None, :],
                        mask=m_t[:, None] & m_k[None, :], other=0.0), 1, L2NORM, EPS)
    vc = tl.load(v + i_b * sv_b + i_h * sv_h + tt[:, None] * sv_t + o_v[None, :],
                 mask=m_t[:, None] & m_v[None, :], other=0.0).to(tl.float32)
    Ti = tl.load(tinv + ((i_b * NT + i_c) * HV + i_h) * 4096 + o_t[:, None] * 64 + o_t[None, :])
    wc = tl.dot(Ti, kc * (beta * tl.exp(gc))[:, None], input_precision="tf32")
    tl.store(w + row[:, None] * K + o_k[None, :], wc, mask=m_t[:, None] & m_k[None, :])
    uc = tl.dot(Ti, vc * beta[:, None], input_precision="tf32")
    tl.store(u + row[:, None] * V + o_v[None, :], uc, mask=m_t[:, None] & m_v[None, :])


def _tinv(k, a, b, A_log, dt_bias, HV: int, T: int, sp_beta, sp_threshold, use_l2norm, eps):
    """Tinv of every (chunk, value head), both chunked forms' first launch: fp32 [B, NT, HV, 64,
    64], 16 KB each. sm_90 (K = 128, 4 warps): 255 registers, 264 bytes spilled, 121 barriers (`solbench sass`)."""
    B, _, H, K = k.shape
    NT = triton.cdiv(T, CHUNK)
    tinv = torch.empty((B, NT, HV, CHUNK, CHUNK), dtype=torch.float32, device=k.device)
    _wy_inverse_kernel[(NT, B * HV)](
        k, a, b, A_log, dt_bias, tinv, T, NT, k.stride(0), k.stride(1), k.stride(2), a.stride(0), a.stride(1),
        b.stride(0), b.stride(1), float(sp_beta), float(sp_threshold), HV=HV, GROUP=HV // H, K=K,
        BK=max(16, triton.next_power_of_2(K)), L2NORM=use_l2norm, EPS=eps, num_warps=4)
    return tinv


def launch_three_pass_update(q, k, v, a, b, A_log, dt_bias, pool, idx, out, scale, sp_beta, sp_threshold,
                             use_l2norm, eps, sms):
    """The update as three passes (``passes=3``): the WY terms of every chunk in parallel, the
    serial chain of chunk states (chunk_gated_delta_rule_state's kernel in tf32, carrying only
    v' = u - w S and S), then every chunk's output in parallel (chunk_delta_rule_output's kernel
    in tf32). The serial chain is two products a chunk instead of the one-launch form's six, at
    the price of fp32 intermediates: w, u, v' ([B, T, HV, K or V]) and the chunk-start states h
    ([B, NT, HV, K, V])."""
    from solbench.kernels.linear_attention._chunk_triton import launch_output, launch_state
    from solbench.kernels.linear_attention.chunk import ChunkOptions, output_options, state_options

    B, T, HV, V = v.shape
    H, K = q.shape[2], q.shape[3]
    NT = triton.cdiv(T, CHUNK)
    bk = max(16, triton.next_power_of_2(K))
    bvf = max(16, triton.next_power_of_2(V))
    f32 = dict(dtype=torch.float32, device=v.device)
    tinv = _tinv(k, a, b, A_log, dt_bias, HV, T, sp_beta, sp_threshold, use_l2norm, eps)
    g = torch.empty((B, T, HV), **f32)
    w = torch.empty((B, T, HV, K), **f32)
    u = torch.empty((B, T, HV, V), **f32)
    _wy_apply_kernel[(NT, B * HV)](
        k, v, a, b, A_log, dt_bias, tinv, w, u, g, T, NT, k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), a.stride(0), a.stride(1), b.stride(0), b.stride(1),
        float(sp_beta), float(sp_threshold), HV=HV, GROUP=HV // H, K=K, V=V, BK=bk, BV=bvf,
        L2NORM=use_l2norm, EPS=eps, num_warps=8)
    h = torch.empty((B, NT, HV, K, V), **f32)
    v_new = torch.empty((B, T, HV, V), **f32)
    l2 = eps if use_l2norm else None
    # The state pass reads k by key head (its GROUP) and writes the final states into the pool.
    # (the chunk state's launch rule: the narrowest value block whose chains fit one wave)
    opts = state_options(B, HV, V, sms)
    launch_state(k, w, u, g, pool, idx, h, v_new, pool, CHUNK, opts.block_v, opts.num_warps, opts.num_stages,
                 tf32=True, l2norm_eps=l2, pool_out=True)
    # The output stage's launch with value blocks of at most 64: its fp32 h and v' tiles take twice
    # the registers of the bf16 stage's (sm_90: 188 registers at 64 columns, no spill; unmeasured).
    out_opts = output_options(V, ChunkOptions(block_v=min(64, bvf)))
    launch_output(q, k, v_new, h, g, out, scale, CHUNK, out_opts.block_v, out_opts.num_warps, out_opts.num_stages,
                  tf32=True, l2norm_eps=l2)


def launch_chunked_update(q, k, v, a, b, A_log, dt_bias, pool, idx, out, scale, sp_beta, sp_threshold, l2norm, eps,
                          block_v, num_warps, rtne):
    """Both launches of the chunked update (shapes already validated by the public wrapper)."""
    B, T, HV, V = v.shape
    H, K = q.shape[2], q.shape[3]
    NT = triton.cdiv(T, CHUNK)
    bk = max(16, triton.next_power_of_2(K))
    # Tinv is read back by the value blocks of its head. sm_90 (K = V = 128): the chunk kernel at
    # 4 warps, value blocks of 32 and two stages holds 255 registers (~0.5 KB spilled) and 184 KB
    # of shared memory (three stages would pass the 227 KB an SM has).
    tinv = _tinv(k, a, b, A_log, dt_bias, HV, T, sp_beta, sp_threshold, l2norm, eps)
    _chunk_step_kernel[(triton.cdiv(V, block_v), B * HV)](
        q, k, v, a, b, A_log, dt_bias, pool, idx, tinv, out, T, NT,
        q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), a.stride(0), a.stride(1), b.stride(0), b.stride(1),
        out.stride(0), out.stride(1), out.stride(2), pool.stride(0), pool.stride(1),
        float(scale), float(sp_beta), float(sp_threshold),
        HV=HV, GROUP=HV // H, K=K, V=V, BK=bk, BV=block_v, L2NORM=l2norm, EPS=eps, RTNE=rtne, num_warps=num_warps,
        num_stages=2)
