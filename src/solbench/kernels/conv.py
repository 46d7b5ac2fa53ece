"""Depthwise causal conv1d (Mamba / Gated DeltaNet short convolution) for prefill and decode.

For one sequence of ``L`` tokens ``x[:, 0..L)`` (``[dim, L]``), width ``W`` and the conv state
``s`` (``[dim, W - 1]``, oldest column first; zeros without one), let ``p = [s | x]``. Then::

    out[:, t] = act(bias + sum_j weight[:, j] * p[:, t + j])          (act: SiLU or none)

and the new state is ``p[:, -(W - 1):]`` (a sequence shorter than the state shifts it).

Two public functions share one kernel:

* :func:`causal_conv1d` -- the serving contract (sglang/vLLM ``causal_conv1d_fn``): a varlen batch
  packed along tokens (``query_start_loc``), states in a pool indexed by ``cache_indices``
  (``has_initial_state`` says which sequences continue one), the new states written back in place.
  Sequences whose index is negative (padding) are skipped: no output, no state write.
* :func:`causal_conv1d_single` -- one sequence, no index arrays, output only (Atrex-Bench's
  ``causal_conv1d`` contract).

A program owns ``BT`` tokens x ``BD`` channels of one sequence; the taps reread the tile shifted
by one token (L1 hits), so DRAM sees x once. Only the first token block of a sequence touches its
pool line: it adds the old state's share to its first ``W - 1`` outputs (channel vectors, so the
other blocks carry no state code in their tiles) and then writes the new state, from x's last
columns, after all its reads.
"""
from __future__ import annotations

import dataclasses

import torch
import triton
import triton.language as tl

from solbench.kernels.common import check_disjoint, check_out, kernel_op, next_pow2
from solbench.kernels.linear_attention._util import (check_shape, check_tensor, float_dtypes, index_dtypes,
                                                     rounds_by_hand, rtne_bf16, same_device, sm_count)

WHAT = "causal_conv1d"


@dataclasses.dataclass(frozen=True)
class ConvOptions:
    """Launch options; ``None`` fields are filled by :func:`conv_options`."""

    block_t: int | None = None   # tokens per program (power of two)
    block_d: int | None = None   # channels per program (power of two)
    num_warps: int | None = None


def conv_options(n_seq: int, max_len: int, dim: int, sms: int | None, given: ConvOptions | None = None) -> ConvOptions:
    """Tiles of up to 32 tokens x 128 channels (8 KB of bf16 per tap; 64 tokens doubles the
    registers, 96 -> 230 per thread on sm_90); short calls (decode) take a token block no longer
    than the sequence and narrower channel blocks until two waves of programs cover the SMs."""
    given = given or ConvOptions()
    bt = given.block_t or min(32, next_pow2(max(1, max_len)))
    bd = given.block_d or 128
    if not given.block_d:
        while bd > 32 and sms and n_seq * triton.cdiv(max(1, max_len), bt) * triton.cdiv(dim, bd) < 2 * sms:
            bd //= 2
    for name, v in (("block_t", bt), ("block_d", bd)):
        if v & (v - 1):
            raise ValueError(f"{WHAT}: {name} must be a power of two, got {v}")
    warps = given.num_warps or max(1, min(4, bt * bd // 256))
    return ConvOptions(block_t=bt, block_d=bd, num_warps=warps)


@triton.jit
def _causal_conv1d_kernel(x, w, bias, state, qsl, idx, has, out, blocks_per_seq, T_single, dim,
                          sx_c, sx_t, so_c, so_t, ss_n, ss_c, ss_j, sw_c, sw_j,
                          W: tl.constexpr, WP: tl.constexpr, BT: tl.constexpr, BD: tl.constexpr,
                          VARLEN: tl.constexpr, USE_STATE: tl.constexpr, WRITE_STATE: tl.constexpr,
                          HAS_BIAS: tl.constexpr, SILU: tl.constexpr, RTNE: tl.constexpr):
    pid = tl.program_id(0)
    n = pid // blocks_per_seq
    blk = pid % blocks_per_seq
    c0 = tl.program_id(1).to(tl.int64) * BD
    o_d = tl.arange(0, BD)
    m_c = c0 + o_d < dim
    o_t = tl.arange(0, BT)
    t0 = blk * BT
    if VARLEN:
        start = tl.load(qsl + n).to(tl.int64)
        L = tl.load(qsl + n + 1).to(tl.int64) - start
        slot = tl.load(idx + n).to(tl.int64)
        use_state = tl.load(has + n).to(tl.int32)
    else:
        start = 0
        L = T_single
        slot = 0
        use_state = 1 if USE_STATE else 0
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
            # New state column i is p[L + i]: x[L + i - (W - 1)], or old column L + i when L < W - 1.
            # All of them are read before any is stored (a short sequence shifts the old line).
            o_i = tl.arange(0, WP)
            new = tl.zeros((BD, WP), tl.float32)
            for i in tl.static_range(W - 1):
                p = L + (i - (W - 1))
                col = tl.load(x + (start + p) * sx_t + c0 * sx_c + o_d * sx_c,
                              mask=m_c & (o_d * 0 + p >= 0), other=0.0).to(tl.float32)
                col += tl.load(line + (p + (W - 1)) * ss_j + o_d * ss_c, mask=m_line & (o_d * 0 + p < 0),
                               other=0.0).to(tl.float32)
                new = tl.where((o_i == i)[None, :], col[:, None], new)
            # This program read the old line above; keep its stores after those reads.
            tl.debug_barrier()
            tl.store(line + (o_i[None, :] * ss_j + o_d[:, None] * ss_c), new.to(state.dtype.element_ty),
                     mask=(m_c & (o_d * 0 + slot >= 0))[:, None] & (o_i < W - 1)[None, :])


def _is_silu(activation) -> bool:
    if activation is None or activation is False:
        return False
    if activation is True or activation in ("silu", "swish"):
        return True
    raise ValueError(f"{WHAT}: activation must be None, True, 'silu' or 'swish', got {activation!r}")


def _launch(x, weight, bias, state, qsl, idx, has, out, n_seq, max_len, varlen, use_state, write_state, silu,
            options):
    dim, T = x.shape
    W = weight.shape[1]
    if T == 0 or n_seq == 0 or dim == 0:
        return
    opts = conv_options(n_seq, max_len, dim, sm_count(x), options)
    blocks = triton.cdiv(max(1, max_len), opts.block_t)
    st = state if state is not None else weight            # any pointer; never read without USE_STATE
    s_strides = state.stride() if state is not None else (0, 0, 0)
    grid = (n_seq * blocks, triton.cdiv(dim, opts.block_d))
    _causal_conv1d_kernel[grid](
        x, weight, bias if bias is not None else weight, st, qsl if varlen else weight, idx if varlen else weight,
        has if varlen else weight, out, blocks, T, dim,
        x.stride(0), x.stride(1), out.stride(0), out.stride(1), *s_strides, weight.stride(0), weight.stride(1),
        W=W, WP=next_pow2(max(1, W - 1)), BT=opts.block_t, BD=opts.block_d, VARLEN=varlen, USE_STATE=use_state,
        WRITE_STATE=write_state, HAS_BIAS=bias is not None, SILU=silu, RTNE=rounds_by_hand(out),
        num_warps=opts.num_warps)


@kernel_op("solbench::causal_conv1d_varlen_", mutates_args=("initial_state", "out"))
def _conv_varlen_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, initial_state: torch.Tensor,
                    query_start_loc: torch.Tensor, cache_indices: torch.Tensor, has_initial_state: torch.Tensor,
                    out: torch.Tensor, max_len: int, silu: bool, block_t: int, block_d: int, num_warps: int) -> None:
    check_disjoint(WHAT, (("out", out), ("initial_state", initial_state)),
                   (("x", x), ("weight", weight), ("bias", bias), ("query_start_loc", query_start_loc),
                    ("cache_indices", cache_indices), ("has_initial_state", has_initial_state)))
    _launch(x, weight, bias, initial_state, query_start_loc, cache_indices, has_initial_state, out,
            cache_indices.shape[0], max_len, True, True, True, silu, ConvOptions(block_t, block_d, num_warps))


@_conv_varlen_op.register_fake
def _conv_varlen_fake(x, weight, bias, initial_state, query_start_loc, cache_indices, has_initial_state, out,
                      max_len, silu, block_t, block_d, num_warps) -> None:
    return None


@kernel_op("solbench::causal_conv1d_single_", mutates_args=("out",))
def _conv_single_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    initial_state: torch.Tensor | None, out: torch.Tensor, silu: bool, block_t: int, block_d: int,
                    num_warps: int) -> None:
    check_disjoint(WHAT, (("out", out),), (("x", x), ("weight", weight), ("bias", bias),
                                            ("initial_state", initial_state)))
    state = initial_state.unsqueeze(0) if initial_state is not None else None
    _launch(x, weight, bias, state, None, None, None, out, 1, x.shape[1], False, initial_state is not None, False,
            silu, ConvOptions(block_t, block_d, num_warps))


@_conv_single_op.register_fake
def _conv_single_fake(x, weight, bias, initial_state, out, silu, block_t, block_d, num_warps) -> None:
    return None


def _check_common(x, weight, bias, what=WHAT):
    check_tensor(x, what, "x", 2, float_dtypes(), last_contiguous=False)
    check_tensor(weight, what, "weight", 2, float_dtypes(), last_contiguous=False)
    dim, W = weight.shape
    if x.shape[0] != dim or W < 1:
        raise ValueError(f"{what}: x must be [dim={dim}, tokens] for weight [dim, width], got {tuple(x.shape)}")
    if bias is not None:
        check_tensor(bias, what, "bias", 1, float_dtypes(), last_contiguous=False)
        check_shape(bias, (dim,), what, "bias")
    return dim, W


def _output(out, x, what=WHAT):
    if out is None:
        return torch.empty_like(x)          # keeps x's layout (channel-last stays channel-last)
    check_out(out, x.shape, x.dtype, x.device, what)
    return out


def causal_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, initial_state: torch.Tensor,
                  query_start_loc: torch.Tensor, cache_indices: torch.Tensor, has_initial_state: torch.Tensor, *,
                  activation="silu", seq_lens: list[int] | None = None, out: torch.Tensor | None = None,
                  options: ConvOptions | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Varlen causal conv1d with a state pool (formula in the module docstring); returns
    ``(out, initial_state)``, the pool lines of the batch's sequences updated in place.

    ``x [dim, total_tokens]`` (any strides; channel-last is the fast layout), ``weight [dim,
    width]``, ``bias [dim]`` or None, ``initial_state [pool, dim, width - 1]``,
    ``query_start_loc [N + 1]`` and ``cache_indices [N]`` int32/int64, ``has_initial_state [N]``
    bool. ``seq_lens`` (host ints) sizes the launch without reading device memory; without it
    every sequence is assumed as long as the whole batch (correct, with idle programs).
    """
    dim, W = _check_common(x, weight, bias)
    check_tensor(initial_state, WHAT, "initial_state", 3, float_dtypes(), last_contiguous=False)
    if tuple(initial_state.shape[1:]) != (dim, W - 1):
        raise ValueError(f"{WHAT}: initial_state must be [pool, dim={dim}, width-1={W - 1}], got "
                         f"{tuple(initial_state.shape)}")
    for name, t in (("query_start_loc", query_start_loc), ("cache_indices", cache_indices)):
        check_tensor(t, WHAT, name, 1, index_dtypes(), last_contiguous=False)
    check_tensor(has_initial_state, WHAT, "has_initial_state", 1, (torch.bool,), last_contiguous=False)
    n = cache_indices.shape[0]
    check_shape(query_start_loc, (n + 1,), WHAT, "query_start_loc")
    check_shape(has_initial_state, (n,), WHAT, "has_initial_state")
    same_device(WHAT, x, weight=weight, bias=bias, initial_state=initial_state, query_start_loc=query_start_loc,
                cache_indices=cache_indices, has_initial_state=has_initial_state, out=out)
    if seq_lens is not None and len(seq_lens) != n:
        raise ValueError(f"{WHAT}: seq_lens has {len(seq_lens)} entries for {n} sequences")
    out = _output(out, x)
    max_len = max(seq_lens, default=0) if seq_lens is not None else x.shape[1]
    opts = conv_options(n, max_len, dim, sm_count(x), options)
    _conv_varlen_op(x, weight, bias, initial_state, query_start_loc, cache_indices, has_initial_state, out,
                    int(max_len), _is_silu(activation), opts.block_t, opts.block_d, opts.num_warps)
    return out, initial_state


def causal_conv1d_single(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                         initial_state: torch.Tensor | None = None, *, activation="silu",
                         out: torch.Tensor | None = None, options: ConvOptions | None = None) -> torch.Tensor:
    """Causal conv1d of one sequence ``x [dim, tokens]`` continuing ``initial_state`` (``[dim, width
    - 1]`` or ``[1, dim, width - 1]``; zeros when None); returns ``out`` (x's shape, dtype and
    layout). The state is only read."""
    dim, W = _check_common(x, weight, bias)
    if initial_state is not None:
        if initial_state.dim() == 3 and initial_state.shape[0] == 1:
            initial_state = initial_state[0]
        check_tensor(initial_state, WHAT, "initial_state", 2, float_dtypes(), last_contiguous=False)
        check_shape(initial_state, (dim, W - 1), WHAT, "initial_state")
    same_device(WHAT, x, weight=weight, bias=bias, initial_state=initial_state, out=out)
    out = _output(out, x)
    opts = conv_options(1, x.shape[1], dim, sm_count(x), options)
    _conv_single_op(x, weight, bias, initial_state, out, _is_silu(activation), opts.block_t, opts.block_d,
                    opts.num_warps)
    return out
