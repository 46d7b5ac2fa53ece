"""Public GLU API: ``glu(x, spec, out=None)`` and the classic fused names.

The kernel is registered as the ``torch.library`` custom op ``solbench::glu_`` (mutating
``out``) with a fake implementation, so ``torch.compile`` traces through it and CUDA graphs
capture it.
"""
from __future__ import annotations

import torch

from solbench.kernels.common import as_rows, check_disjoint, check_dtype, check_out, kernel_op, require_device
from solbench.ops.silu_and_mul.activation import ACT_MODES, ActivationSpec, get_activation

SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@kernel_op("solbench::glu_", mutates_args=("out",))
def _glu_op(x: torch.Tensor, out: torch.Tensor, act: int, alpha: float, limit: float, has_limit: bool,
            up_shift: float, interleaved: bool) -> None:
    from solbench.ops.silu_and_mul.triton import launch_glu

    check_disjoint("glu", (("out", out),), (("x", x),))
    launch_glu(as_rows(x, "glu"), as_rows(out, "glu", "out"), act, alpha, limit if has_limit else None,
               up_shift, interleaved)


@_glu_op.register_fake
def _glu_fake(x, out, act, alpha, limit, has_limit, up_shift, interleaved) -> None:
    return None


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
    out_shape = (*x.shape[:-1], x.shape[-1] // 2)
    if out is None:
        out = torch.empty(out_shape, dtype=x.dtype, device=x.device)
    else:
        check_out(out, out_shape, x.dtype, x.device, "glu")
    require_device(x, "glu")
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
