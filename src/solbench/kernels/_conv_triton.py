"""The Triton kernel of :mod:`solbench.kernels.conv` (imported at the first launch, so
``import solbench`` decorates no Triton kernel)."""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.kernels.common import next_pow2
from solbench.kernels.conv import conv_options
from solbench.kernels.linear_attention._common_triton import rtne_bf16
from solbench.kernels.linear_attention._util import rounds_by_hand, sm_count


@triton.jit
def _program_block(qsl, idx, has, blocks_per_seq, T_single, dim, BT: tl.constexpr, BD: tl.constexpr,
                   VARLEN: tl.constexpr, USE_STATE: tl.constexpr):
    """This program's block: its token block ``blk`` of sequence ``n`` (first token ``t0`` within
    the sequence) and channels ``c0 + o_d`` (``m_c``: those below ``dim``), with the sequence's
    first token, length, pool line and whether it continues a state."""
    pid = tl.program_id(0)
    n = pid // blocks_per_seq
    blk = pid % blocks_per_seq
    c0 = tl.program_id(1).to(tl.int64) * BD
    o_d = tl.arange(0, BD)
    m_c = c0 + o_d < dim
    if VARLEN:
        start = tl.load(qsl + n).to(tl.int64)
        L = tl.load(qsl + n + 1).to(tl.int64) - start
        slot = tl.load(idx + n).to(tl.int64)
        use_state = tl.load(has + n).to(tl.int32)
    else:
        start = tl.zeros((), tl.int64)
        L = tl.zeros((), tl.int64) + T_single
        slot = tl.zeros((), tl.int64)
        use_state = tl.zeros((), tl.int32) + (1 if USE_STATE else 0)
    return blk, blk * BT, c0, o_d, m_c, start, L, slot, use_state


@triton.jit
def _seq_col(x, line, start, p, c0, o_d, m_c, m_line, sx_c, sx_t, ss_c, ss_j, W: tl.constexpr):
    """Column ``p`` of the sequence padded by its state, ``[state | x]`` (p < 0: state column
    p + W - 1, zeros without a state or before it), as fp32 channels ``c0 + o_d``."""
    col = tl.load(x + (start + p) * sx_t + c0 * sx_c + o_d * sx_c, mask=m_c & (o_d * 0 + p >= 0),
                  other=0.0).to(tl.float32)
    col += tl.load(line + (p + (W - 1)) * ss_j + o_d * ss_c,
                   mask=m_line & (o_d * 0 + p < 0) & (o_d * 0 + p >= -(W - 1)), other=0.0).to(tl.float32)
    return col


@triton.jit
def _write_state(x, line, start, L, slot, c0, o_d, m_c, m_line, sx_c, sx_t, ss_c, ss_j, state_ty,
                 W: tl.constexpr, WP: tl.constexpr, BD: tl.constexpr):
    """The new state line: column i is ``[state | x]`` at L + i - (W - 1) (the old line's column
    L + i when L < W - 1). Every column is read before any is stored: a short sequence shifts
    the old line, which this program may also have read for its outputs."""
    o_i = tl.arange(0, WP)
    new = tl.zeros((BD, WP), tl.float32)
    for i in tl.static_range(W - 1):
        col = _seq_col(x, line, start, L + (i - (W - 1)), c0, o_d, m_c, m_line, sx_c, sx_t, ss_c, ss_j, W)
        new = tl.where((o_i == i)[None, :], col[:, None], new)
    tl.debug_barrier()
    tl.store(line + (o_i[None, :] * ss_j + o_d[:, None] * ss_c), new.to(state_ty),
             mask=(m_c & (o_d * 0 + slot >= 0))[:, None] & (o_i < W - 1)[None, :])


@triton.jit
def _causal_conv1d_kernel(x, w, bias, state, qsl, idx, has, out, blocks_per_seq, T_single, dim,
                          sx_c, sx_t, so_c, so_t, ss_n, ss_c, ss_j, sw_c, sw_j,
                          W: tl.constexpr, WP: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr,
                          VARLEN: tl.constexpr, USE_STATE: tl.constexpr, WRITE_STATE: tl.constexpr,
                          HAS_BIAS: tl.constexpr, SILU: tl.constexpr, RTNE: tl.constexpr):
    blk, t0, c0, o_d, m_c, start, L, slot, use_state = _program_block(qsl, idx, has, blocks_per_seq, T_single, dim,
                                                                      BT, BD, VARLEN, USE_STATE)
    o_t = tl.arange(0, BT)
    # 64-bit arithmetic on scalar bases only (a long prompt times dim passes 2^31 elements); the
    # in-tile offsets stay 32-bit. Scalar conditions enter masks as vectors (the interpreter
    # refuses scalar mask operands).
    live_t = (t0 + o_t < L) & (o_t * 0 + slot >= 0)
    x_blk = x + (start + t0) * sx_t + c0 * sx_c
    line = state + slot * ss_n + c0 * ss_c
    m_line = m_c & (o_d * 0 + slot >= 0) & (o_d * 0 + use_state != 0)
    acc = tl.zeros((BT, BD), tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias + c0 + o_d, mask=m_c, other=0.0).to(tl.float32)[None, :]
    # The taps read x tiles shifted by one token (L1 hits after the first); columns before the
    # sequence start read as zeros here and come from the state below.
    for j in tl.static_range(W):
        rel = o_t + (j - (W - 1))
        xv = tl.load(x_blk + (rel[:, None] * sx_t + o_d[None, :] * sx_c),
                     mask=(live_t & (t0 + rel >= 0))[:, None] & m_c[None, :], other=0.0)
        wj = tl.load(w + (c0 + o_d) * sw_c + j * sw_j, mask=m_c, other=0.0).to(tl.float32)
        acc += xv.to(tl.float32) * wj[None, :]
    if USE_STATE:
        if blk == 0:
            # Output row r < W - 1 also sees state columns r + j through taps j < W - 1 - r.
            for r in tl.static_range(W - 1):
                corr = tl.zeros((BD,), tl.float32)
                for j in tl.static_range(W - 1 - r):
                    col = tl.load(line + (r + j) * ss_j + o_d * ss_c, mask=m_line, other=0.0).to(tl.float32)
                    corr += col * tl.load(w + (c0 + o_d) * sw_c + j * sw_j, mask=m_c, other=0.0).to(tl.float32)
                acc += tl.where((o_t == r)[:, None], corr[None, :], 0.0)
    if SILU:
        acc = acc * tl.sigmoid(acc)
    out_blk = out + (start + t0) * so_t + c0 * so_c
    tl.store(out_blk + (o_t[:, None] * so_t + o_d[None, :] * so_c), rtne_bf16(acc, RTNE).to(out.dtype.element_ty),
             mask=live_t[:, None] & m_c[None, :])
    if WRITE_STATE:
        if blk == 0:
            _write_state(x, line, start, L, slot, c0, o_d, m_c, m_line, sx_c, sx_t, ss_c, ss_j,
                         state.dtype.element_ty, W, WP, BD)


@triton.jit
def _tap4(w0, w1, w2, w3, a, b, c, d, bias, SILU: tl.constexpr):
    y = bias + w0 * a + w1 * b + w2 * c + w3 * d
    if SILU:
        y = y * tl.sigmoid(y)
    return y


@triton.jit
def _causal_conv1d_stream_kernel(x, w, bias, state, qsl, idx, has, out, blocks_per_seq, T_single, dim,
                                 sx_c, sx_t, so_c, so_t, ss_n, ss_c, ss_j, sw_c, sw_j,
                                 W: tl.constexpr, WP: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr,
                                 VARLEN: tl.constexpr, USE_STATE: tl.constexpr, WRITE_STATE: tl.constexpr,
                                 HAS_BIAS: tl.constexpr, SILU: tl.constexpr, RTNE: tl.constexpr):
    """The same contract as :func:`_causal_conv1d_kernel` for W <= 4, streaming: a program owns
    ``BD`` channels of ``BT`` tokens and walks them four tokens a step, keeping the last three
    tokens in registers, so each element of x is loaded once (the tile kernel's taps reread the
    tile shifted by one token: four loads an element, which reach L2 as separate requests while
    the first is in flight). Taps are right-aligned to four (weights of missing taps are zero)."""
    blk, t0, c0, o_d, m_c, start, L, slot, use_state = _program_block(qsl, idx, has, blocks_per_seq, T_single, dim,
                                                                      BT, BD, VARLEN, USE_STATE)
    live = m_c & (o_d * 0 + slot >= 0)
    line = state + slot * ss_n + c0 * ss_c
    m_line = live & (o_d * 0 + use_state != 0)
    wp = w + (c0 + o_d) * sw_c
    zero = tl.zeros((BD,), tl.float32)
    w0 = zero
    w1 = zero
    w2 = zero
    if W >= 4:
        w0 = tl.load(wp + (W - 4) * sw_j, mask=m_c, other=0.0).to(tl.float32)
    if W >= 3:
        w1 = tl.load(wp + (W - 3) * sw_j, mask=m_c, other=0.0).to(tl.float32)
    if W >= 2:
        w2 = tl.load(wp + (W - 2) * sw_j, mask=m_c, other=0.0).to(tl.float32)
    w3 = tl.load(wp + (W - 1) * sw_j, mask=m_c, other=0.0).to(tl.float32)
    b = zero
    if HAS_BIAS:
        b = tl.load(bias + c0 + o_d, mask=m_c, other=0.0).to(tl.float32)
    x_row = x + c0 * sx_c + o_d * sx_c
    o_row = out + c0 * so_c + o_d * so_c
    # The three tokens before the block: x rows (BT >= 4), or for the first block the state's
    # columns before the sequence start.
    if blk == 0:
        xa = _seq_col(x, line, start, t0 - 3, c0, o_d, live, m_line, sx_c, sx_t, ss_c, ss_j, W)
        xb = _seq_col(x, line, start, t0 - 2, c0, o_d, live, m_line, sx_c, sx_t, ss_c, ss_j, W)
        xc = _seq_col(x, line, start, t0 - 1, c0, o_d, live, m_line, sx_c, sx_t, ss_c, ss_j, W)
    else:
        xa = tl.load(x_row + (start + t0 - 3) * sx_t, mask=live, other=0.0).to(tl.float32)
        xb = tl.load(x_row + (start + t0 - 2) * sx_t, mask=live, other=0.0).to(tl.float32)
        xc = tl.load(x_row + (start + t0 - 1) * sx_t, mask=live, other=0.0).to(tl.float32)
    for i in range(0, tl.minimum(BT, L - t0), 4):  # nothing past the sequence (a block past it: no step)
        t = t0 + i
        # Four independent row loads in flight before any is used.
        r0 = tl.load(x_row + (start + t) * sx_t, mask=live & (o_d * 0 + t < L), other=0.0).to(tl.float32)
        r1 = tl.load(x_row + (start + t + 1) * sx_t, mask=live & (o_d * 0 + t + 1 < L), other=0.0).to(tl.float32)
        r2 = tl.load(x_row + (start + t + 2) * sx_t, mask=live & (o_d * 0 + t + 2 < L), other=0.0).to(tl.float32)
        r3 = tl.load(x_row + (start + t + 3) * sx_t, mask=live & (o_d * 0 + t + 3 < L), other=0.0).to(tl.float32)
        y0 = _tap4(w0, w1, w2, w3, xa, xb, xc, r0, b, SILU)
        y1 = _tap4(w0, w1, w2, w3, xb, xc, r0, r1, b, SILU)
        y2 = _tap4(w0, w1, w2, w3, xc, r0, r1, r2, b, SILU)
        y3 = _tap4(w0, w1, w2, w3, r0, r1, r2, r3, b, SILU)
        ty = out.dtype.element_ty
        tl.store(o_row + (start + t) * so_t, rtne_bf16(y0, RTNE).to(ty), mask=live & (o_d * 0 + t < L))
        tl.store(o_row + (start + t + 1) * so_t, rtne_bf16(y1, RTNE).to(ty), mask=live & (o_d * 0 + t + 1 < L))
        tl.store(o_row + (start + t + 2) * so_t, rtne_bf16(y2, RTNE).to(ty), mask=live & (o_d * 0 + t + 2 < L))
        tl.store(o_row + (start + t + 3) * so_t, rtne_bf16(y3, RTNE).to(ty), mask=live & (o_d * 0 + t + 3 < L))
        xa = r1
        xb = r2
        xc = r3
    if WRITE_STATE:
        if blk == 0:
            _write_state(x, line, start, L, slot, c0, o_d, m_c, m_line, sx_c, sx_t, ss_c, ss_j,
                         state.dtype.element_ty, W, WP, BD)


def launch(x, weight, bias, state, qsl, idx, has, out, n_seq, max_len, varlen, use_state, write_state, silu,
            options):
    dim, T = x.shape
    W = weight.shape[1]
    if T == 0 or n_seq == 0 or dim == 0:
        return
    opts = conv_options(n_seq, max_len, dim, sm_count(x), options)
    if opts.stream and W > 4:
        raise ValueError(f"causal_conv1d: the streaming kernel (stream=1) takes width <= 4, got {W}")
    kernel = _causal_conv1d_stream_kernel if opts.stream else _causal_conv1d_kernel
    blocks = triton.cdiv(max(1, max_len), opts.block_t)
    st = state if state is not None else weight            # any pointer; never read without USE_STATE
    s_strides = state.stride() if state is not None else (0, 0, 0)
    grid = (n_seq * blocks, triton.cdiv(dim, opts.block_d))
    kernel[grid](
        x, weight, bias if bias is not None else weight, st, qsl if varlen else weight, idx if varlen else weight,
        has if varlen else weight, out, blocks, T, dim,
        x.stride(0), x.stride(1), out.stride(0), out.stride(1), *s_strides, weight.stride(0), weight.stride(1),
        W=W, WP=next_pow2(max(1, W - 1)), BT=opts.block_t, BD=opts.block_d, VARLEN=varlen, USE_STATE=use_state,
        WRITE_STATE=write_state, HAS_BIAS=bias is not None, SILU=silu, RTNE=rounds_by_hand(out),
        num_warps=opts.num_warps)
