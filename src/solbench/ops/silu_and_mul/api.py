"""Public GLU API: ``glu(x, spec, out=None)`` and the classic fused names.

Custom ops (with fake implementations, so ``torch.compile`` traces through them and CUDA graphs
capture them): ``torch.ops.solbench.glu`` / ``glu.out`` (the activation passed as its parameters)
and, for the classic names, ``silu_and_mul`` / ``silu_and_mul.out`` and the same for
``gelu_and_mul`` and ``gelu_tanh_and_mul``. Off CUDA they compute with torch.
"""
from __future__ import annotations

import torch

from solbench.kernels.common import as_rows, check_disjoint, check_dtype, check_out, functional_op, kernel_op
from solbench.ops.silu_and_mul.activation import ACT_MODES, ActivationSpec, get_activation, reference_glu

SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
_KINDS = {mode: kind for kind, mode in ACT_MODES.items()}


def _glu_eager(x, out, act, alpha, limit, has_limit, up_shift, interleaved) -> None:
    check_disjoint("glu", (("out", out),), (("x", x),))
    kind = _KINDS[act]
    spec = ActivationSpec(name="glu", kind=kind, alpha=alpha if kind == "silu" else None,
                          limit=limit if has_limit else None, up_shift=up_shift,
                          layout="interleaved" if interleaved else "halves")
    out.copy_(reference_glu(x, spec))


def _glu_out_shape(x):
    return (*x.shape[:-1], x.shape[-1] // 2)


@kernel_op("solbench::glu.out", mutates_args=("out",), eager=_glu_eager)
def _glu_op(x: torch.Tensor, out: torch.Tensor, act: int, alpha: float, limit: float, has_limit: bool,
            up_shift: float, interleaved: bool) -> None:
    from solbench.ops.silu_and_mul.triton import launch_glu

    check_disjoint("glu", (("out", out),), (("x", x),))
    launch_glu(as_rows(x, "glu"), as_rows(out, "glu", "out"), act, alpha, limit if has_limit else None,
               up_shift, interleaved)


@_glu_op.register_fake
def _glu_fake(x, out, act, alpha, limit, has_limit, up_shift, interleaved) -> None:
    return None


functional_op("solbench::glu", _glu_op, lambda x, *_: (x.new_empty(_glu_out_shape(x)),))


def _register_plain(name: str, activation: str):
    """``torch.ops.solbench.<name>(x)`` and ``<name>.out(x, out)``: the GLU op with a fixed
    built-in activation (vLLM's signature without the activation's parameters)."""
    spec = get_activation(activation)
    args = (ACT_MODES[spec.kind], spec.effective_alpha, 0.0, False, float(spec.up_shift), False)

    def body(x: torch.Tensor, out: torch.Tensor) -> None:
        _glu_op.fn(x, out, *args)

    out_op = kernel_op(f"solbench::{name}.out", mutates_args=("out",), eager=body)(body)  # glu.out picks the path
    out_op.register_fake(lambda x, out: None)
    functional_op(f"solbench::{name}", out_op, lambda x: (x.new_empty(_glu_out_shape(x)),))


for _name, _act in (("silu_and_mul", "silu"), ("gelu_and_mul", "gelu"), ("gelu_tanh_and_mul", "gelu_tanh")):
    _register_plain(_name, _act)


def glu(x: torch.Tensor, spec: ActivationSpec | str = "silu", out: torch.Tensor | None = None) -> torch.Tensor:
    """``act(gate) * (up + up_shift)`` over the last dim of ``x`` (``[..., 2d]`` -> ``[..., d]``).

    ``spec`` is an :class:`ActivationSpec` or a registered name. ``x`` may have any leading dims
    and a row stride (its last dim must be contiguous); bf16, fp16 and fp32 are supported. Math
    is in fp32 with one rounding to ``x.dtype``. Returns ``out``.
    """
    if isinstance(spec, str):
        spec = get_activation(spec)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"glu: x must be a torch.Tensor, got {type(x).__name__}")
    check_dtype(x, SUPPORTED_DTYPES, "glu")
    if x.dim() == 0 or x.shape[-1] % 2:
        raise ValueError(f"glu: the last dimension of x must be even ([..., 2*d] holding gate and up), "
                         f"got shape {tuple(x.shape)}")
    out_shape = _glu_out_shape(x)
    if out is None:
        out = torch.empty(out_shape, dtype=x.dtype, device=x.device)
    else:
        check_out(out, out_shape, x.dtype, x.device, "glu")
    as_rows(x, "glu")            # validate strides up front, with the public name in the error
    as_rows(out, "glu", "out")
    _glu_op(x, out, ACT_MODES[spec.kind], spec.effective_alpha,
                            float(spec.limit) if spec.limit is not None else 0.0, spec.limit is not None,
                            float(spec.up_shift), spec.layout == "interleaved")
    return out


def silu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """vLLM's ``silu_and_mul``: ``silu(x[..., :d]) * x[..., d:]``."""
    return glu(x, "silu", out=out)


def gelu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``gelu(x[..., :d]) * x[..., d:]`` with the exact (erf) GELU."""
    return glu(x, "gelu", out=out)


def gelu_tanh_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``gelu_tanh(x[..., :d]) * x[..., d:]`` with the tanh-approximated GELU."""
    return glu(x, "gelu_tanh", out=out)
