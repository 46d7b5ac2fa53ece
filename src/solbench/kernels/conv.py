"""Depthwise causal conv1d (Mamba / Gated DeltaNet short convolution) for prefill and decode.

For one sequence of ``L`` tokens ``x[:, 0..L)`` (``[dim, L]``), width ``W`` and the conv state
``s`` (``[dim, W - 1]``, oldest column first; zeros without one), let ``p = [s | x]``. Then::

    out[:, t] = act(bias + sum_j weight[:, j] * p[:, t + j])          (act: SiLU or none)

and the new state is ``p[:, -(W - 1):]`` (a sequence shorter than the state shifts it).

Two public functions share the kernels:

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
columns, after all its reads. The streaming kernel (``ConvOptions.stream``, width <= 4) instead
walks its tokens four at a time with the last three in registers, so each element of x is
loaded once rather than once a tap; its first block starts from the state's columns.

Ops: ``solbench::causal_conv1d_`` (the pool updated in place, ``out`` written) and
``solbench::causal_conv1d_single(.out)``; the kernel is in :mod:`._conv_triton`, and off CUDA the
ops compute with their torch formulation (fp32 taps, one rounding).
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import (check_disjoint, check_out, check_warps, env_filled, functional_op, kernel_op,
                                     next_pow2)
from solbench.kernels.linear_attention._util import (cdiv, check_shape, check_tensor, float_dtypes, index_dtypes,
                                                     same_device, sm_count)

WHAT = "causal_conv1d"


@dataclasses.dataclass(frozen=True)
class ConvOptions:
    """Launch options; ``None`` fields are filled by :func:`conv_options`."""

    block_t: int | None = None   # tokens per program (power of two)
    block_d: int | None = None   # channels per program (power of two)
    num_warps: int | None = None
    stream: int | None = None    # 1: the streaming kernel (width <= 4): x loaded once, four tokens a step


def conv_options(n_seq: int, max_len: int, dim: int, sms: int | None, given: ConvOptions | None = None) -> ConvOptions:
    """Tiles of up to 32 tokens x 128 channels (8 KB of bf16 per tap; 64 tokens doubles the
    registers, 96 -> 230 per thread on sm_90); short calls (decode) take a token block no longer
    than the sequence and narrower channel blocks until two waves of programs cover the SMs.
    ``SOLBENCH_CONV`` (``block_t,block_d,num_warps``, or any as ``name=value``) fills what
    ``given`` leaves open, for GPU A/B runs: a channel row holds only block_t tokens contiguous
    (64 bytes at 32), so longer, narrower tiles are the candidates on the large prefills."""
    given = env_filled("SOLBENCH_CONV", given or ConvOptions())
    stream = given.stream or 0
    if stream not in (0, 1):
        raise ValueError(f"{WHAT}: stream must be 0 or 1, got {stream}")
    if stream:
        # One row of channels a step for the whole program: 8 bf16 channels (16 bytes) a thread.
        bt = given.block_t or min(64, max(4, next_pow2(max(1, max_len))))
        warps = check_warps(WHAT, given.num_warps or 4)
        bd = given.block_d or warps * 32 * 8
        if bt < 4:
            raise ValueError(f"{WHAT}: the streaming kernel walks four tokens a step: block_t must be >= 4, got {bt}")
    else:
        bt = given.block_t or min(32, next_pow2(max(1, max_len)))
        bd = given.block_d or 128
        if not given.block_d:
            while bd > 32 and sms and n_seq * cdiv(max(1, max_len), bt) * cdiv(dim, bd) < 2 * sms:
                bd //= 2
        warps = check_warps(WHAT, given.num_warps or max(1, min(4, bt * bd // 256)))
    for name, v in (("block_t", bt), ("block_d", bd)):
        if v & (v - 1):
            raise ValueError(f"{WHAT}: {name} must be a power of two, got {v}")
    return ConvOptions(block_t=bt, block_d=bd, num_warps=warps, stream=stream)


def _is_silu(activation) -> bool:
    if activation is None or activation is False:
        return False
    if activation is True or activation in ("silu", "swish"):
        return True
    raise ValueError(f"{WHAT}: activation must be None, True, 'silu' or 'swish', got {activation!r}")


def _conv_eager(x, weight, bias, state, silu: bool):
    """The torch formulation of one sequence ``x [dim, L]`` after ``state [dim, W - 1]`` (zeros when
    None): fp32 taps over ``p = [state | x]`` in the kernel's order; returns ``(out fp32, new
    state = p's last W - 1 columns)``."""
    dim, L = x.shape
    W = weight.shape[1]
    head = state.float() if state is not None else x.new_zeros((dim, W - 1), dtype=torch.float32)
    p = torch.cat([head, x.float()], dim=1)
    acc = (bias.float()[:, None] if bias is not None else x.new_zeros((dim, 1), dtype=torch.float32)).expand(dim, L)
    for j in range(W):
        acc = acc + weight[:, j:j + 1].float() * p[:, j:j + L]
    if silu:
        acc = acc * torch.sigmoid(acc)
    return acc, p[:, p.shape[1] - (W - 1):]


def _check_varlen_aliasing(x, weight, bias, initial_state, query_start_loc, cache_indices, has_initial_state,
                           out) -> None:
    check_disjoint(WHAT, (("out", out), ("initial_state", initial_state)),
                   (("x", x), ("weight", weight), ("bias", bias), ("query_start_loc", query_start_loc),
                    ("cache_indices", cache_indices), ("has_initial_state", has_initial_state)))


def _varlen_eager(x, weight, bias, initial_state, query_start_loc, cache_indices, has_initial_state, out, max_len,
                  silu, block_t, block_d, num_warps, stream=0) -> None:
    """Sequence by sequence (host loops: it syncs, as CPU code may); a negative index is padding:
    no output, no state write."""
    _check_varlen_aliasing(x, weight, bias, initial_state, query_start_loc, cache_indices, has_initial_state, out)
    starts = query_start_loc.tolist()
    for n, (slot, has) in enumerate(zip(cache_indices.tolist(), has_initial_state.tolist())):
        if slot < 0:
            continue
        a, e = starts[n], starts[n + 1]
        y, new = _conv_eager(x[:, a:e], weight, bias, initial_state[slot] if has else None, silu)
        out[:, a:e] = y.to(out.dtype)
        initial_state[slot] = new.to(initial_state.dtype)


@kernel_op("solbench::causal_conv1d_", mutates_args=("initial_state", "out"), eager=_varlen_eager)
def _conv_varlen_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, initial_state: torch.Tensor,
                    query_start_loc: torch.Tensor, cache_indices: torch.Tensor, has_initial_state: torch.Tensor,
                    out: torch.Tensor, max_len: int, silu: bool, block_t: int, block_d: int, num_warps: int,
                    stream: int = 0) -> None:
    _check_varlen_aliasing(x, weight, bias, initial_state, query_start_loc, cache_indices, has_initial_state, out)
    from solbench.kernels._conv_triton import launch

    launch(x, weight, bias, initial_state, query_start_loc, cache_indices, has_initial_state, out,
           cache_indices.shape[0], max_len, True, True, True, silu, ConvOptions(block_t, block_d, num_warps, stream))


@_conv_varlen_op.register_fake
def _conv_varlen_fake(x, weight, bias, initial_state, query_start_loc, cache_indices, has_initial_state, out,
                      max_len, silu, block_t, block_d, num_warps, stream=0) -> None:
    return None


def _check_single_aliasing(x, weight, bias, initial_state, out) -> None:
    check_disjoint(WHAT, (("out", out),), (("x", x), ("weight", weight), ("bias", bias),
                                            ("initial_state", initial_state)))


def _single_eager(x, weight, bias, initial_state, out, silu, block_t, block_d, num_warps, stream=0) -> None:
    _check_single_aliasing(x, weight, bias, initial_state, out)
    out.copy_(_conv_eager(x, weight, bias, initial_state, silu)[0])


@kernel_op("solbench::causal_conv1d_single.out", mutates_args=("out",), eager=_single_eager)
def _conv_single_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    initial_state: torch.Tensor | None, out: torch.Tensor, silu: bool, block_t: int, block_d: int,
                    num_warps: int, stream: int = 0) -> None:
    _check_single_aliasing(x, weight, bias, initial_state, out)
    from solbench.kernels._conv_triton import launch

    state = initial_state.unsqueeze(0) if initial_state is not None else None
    launch(x, weight, bias, state, None, None, None, out, 1, x.shape[1], False, initial_state is not None, False,
           silu, ConvOptions(block_t, block_d, num_warps, stream))


@_conv_single_op.register_fake
def _conv_single_fake(x, weight, bias, initial_state, out, silu, block_t, block_d, num_warps, stream=0) -> None:
    return None


# empty_like keeps x's layout (channel-last stays channel-last), as the public function's out.
functional_op("solbench::causal_conv1d_single", _conv_single_op, lambda x, *rest: (torch.empty_like(x),))


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
                    int(max_len), _is_silu(activation), opts.block_t, opts.block_d, opts.num_warps, opts.stream)
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
                    opts.num_warps, opts.stream)
    return out
