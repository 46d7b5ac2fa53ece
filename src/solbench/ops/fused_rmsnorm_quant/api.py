"""Public API: RMSNorm fused with dynamic per-token fp8 quantization (aiter
``rmsnorm2d_fwd_with_add_dynamicquant`` / ``rmsnorm2d_fwd_with_dynamicquant``).

* ``fused_add_rms_norm_quant(x, residual, weight, eps, out=None)`` -> ``(q, scale, residual_out)``;
* ``rms_norm_quant(x, weight, eps, out=None)`` -> ``(q, scale)``.

Per row, fp32: ``v = x + residual`` (``residual_out = v`` rounded to the residual dtype; the
norm uses the unrounded sum), ``y = v / sqrt(mean(v^2) + eps) * weight``,
``scale = max|y| / 448`` (fp32, shape ``x.shape[:-1] + (1,)``; 0 for an all-zero row),
``q = fp8_e4m3fn(clamp(y / scale, -448, 448))`` (0 where the scale is 0).

Custom ops ``torch.ops.solbench.fused_add_rms_norm_quant`` and ``rms_norm_quant`` (functional)
and their ``.out`` forms (mutating the outputs they are given), with fake implementations; off
CUDA they compute with torch.
"""
from __future__ import annotations

import torch

from solbench.core.fp8 import fp8_dtype, quantize_per_token
from solbench.kernels.rowwise import check_param, check_residual, output_like, rows_of
from solbench.kernels.common import as_rows, check_disjoint, functional_op, kernel_op
from solbench.kernels.eager import rms_normalize
from solbench.ops.fp8_dynamic_per_token_quant.api import quant_outputs

_WHAT = "fused_add_rms_norm_quant"
_WHAT_PLAIN = "rms_norm_quant"


def _eager(x, weight, q, scale, eps, residual=None, residual_out=None):
    v = x.float() if residual is None else x.float() + residual.float()
    if residual_out is not None:
        residual_out.copy_(v)
    qq, ss = quantize_per_token(as_rows(rms_normalize(v, eps) * weight.float(), _WHAT), 0.0)
    as_rows(q, _WHAT, "q").copy_(qq)
    as_rows(scale, _WHAT, "scale").copy_(ss)


def _eager_add_op(x, residual, weight, q, scale, residual_out, eps) -> None:
    check_disjoint(_WHAT, (("q", q), ("scale", scale), ("residual_out", residual_out)),
                   (("x", x), ("residual", residual), ("weight", weight)))
    _eager(x, weight, q, scale, eps, residual, residual_out)


def _eager_plain_op(x, weight, q, scale, eps) -> None:
    check_disjoint(_WHAT_PLAIN, (("q", q), ("scale", scale)), (("x", x), ("weight", weight)))
    _eager(x, weight, q, scale, eps)


def _quant_alloc(x):
    return (torch.empty(x.shape, dtype=fp8_dtype(), device=x.device),
            torch.empty((*x.shape[:-1], 1), dtype=torch.float32, device=x.device))


def _launch(x, weight, q, scale, eps, residual=None, residual_out=None):
    from solbench.ops.fused_rmsnorm_quant.triton import launch_rmsnorm_quant

    launch_rmsnorm_quant(as_rows(x, _WHAT), weight, as_rows(q, _WHAT, "q"), as_rows(scale, _WHAT, "scale"), eps,
                         None if residual is None else as_rows(residual, _WHAT, "residual"),
                         None if residual_out is None else as_rows(residual_out, _WHAT, "residual_out"))


@kernel_op("solbench::fused_add_rms_norm_quant.out", mutates_args=("q", "scale", "residual_out"), eager=_eager_add_op)
def _add_rmsnorm_quant_op(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, q: torch.Tensor,
                          scale: torch.Tensor, residual_out: torch.Tensor, eps: float) -> None:
    check_disjoint(_WHAT, (("q", q), ("scale", scale), ("residual_out", residual_out)),
                   (("x", x), ("residual", residual), ("weight", weight)))
    _launch(x, weight, q, scale, eps, residual, residual_out)


@_add_rmsnorm_quant_op.register_fake
def _add_rmsnorm_quant_fake(x, residual, weight, q, scale, residual_out, eps) -> None:
    return None


@kernel_op("solbench::rms_norm_quant.out", mutates_args=("q", "scale"), eager=_eager_plain_op)
def _rmsnorm_quant_op(x: torch.Tensor, weight: torch.Tensor, q: torch.Tensor, scale: torch.Tensor,
                      eps: float) -> None:
    check_disjoint(_WHAT_PLAIN, (("q", q), ("scale", scale)), (("x", x), ("weight", weight)))
    _launch(x, weight, q, scale, eps)


@_rmsnorm_quant_op.register_fake
def _rmsnorm_quant_fake(x, weight, q, scale, eps) -> None:
    return None


functional_op("solbench::fused_add_rms_norm_quant", _add_rmsnorm_quant_op,
              lambda x, residual, weight, eps: (*_quant_alloc(x), torch.empty_like(residual)))
functional_op("solbench::rms_norm_quant", _rmsnorm_quant_op, lambda x, weight, eps: _quant_alloc(x))


def _check_eps(eps, what):
    if not (eps >= 0.0):
        raise ValueError(f"{what}: eps must be >= 0, got {eps}")


def fused_add_rms_norm_quant(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6,
                             out=None):
    """``residual_out = x + residual``; ``y = rms_norm(x + residual) * weight``; per-row fp8 quant of y.

    ``x``, ``residual``: same shape and dtype (bf16, fp16 or fp32), any leading dims, rows may be
    strided (last dim contiguous), 0 rows allowed. ``weight``: ``[n]``. ``out``: optional triple
    ``(q, scale, residual_out)``; outputs must not overlap the inputs. Returns
    ``(q, scale, residual_out)``.
    """
    _, n = rows_of(x, _WHAT)
    check_residual(x, residual, _WHAT)
    check_param(weight, n, x, _WHAT, "weight")
    _check_eps(eps, _WHAT)
    if out is None:
        q, scale, residual_out = None, None, None
    elif isinstance(out, (tuple, list)) and len(out) == 3:
        q, scale, residual_out = out
    else:
        raise ValueError(f"{_WHAT}: out must be a triple (q, scale, residual_out)")
    residual_out = output_like(residual_out, x, _WHAT, "residual_out")
    rows_of(residual_out, _WHAT, "residual_out")
    q, scale = quant_outputs(x, None if q is None and scale is None else (q, scale), _WHAT)
    _add_rmsnorm_quant_op(x, residual, weight, q, scale, residual_out, float(eps))
    return q, scale, residual_out


def rms_norm_quant(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, out=None):
    """``y = rms_norm(x) * weight`` quantized per row to fp8 e4m3fn; returns ``(q, scale)``
    (aiter ``rmsnorm2d_fwd_with_dynamicquant``). ``out``: optional pair ``(q, scale)``."""
    _, n = rows_of(x, _WHAT_PLAIN)
    check_param(weight, n, x, _WHAT_PLAIN, "weight")
    _check_eps(eps, _WHAT_PLAIN)
    q, scale = quant_outputs(x, out, _WHAT_PLAIN)
    _rmsnorm_quant_op(x, weight, q, scale, float(eps))
    return q, scale
