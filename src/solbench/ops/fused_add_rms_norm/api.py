"""Public fused add + RMSNorm API (vLLM ``fused_add_rms_norm``).

* ``fused_add_rms_norm(x, residual, weight, eps, out=None, residual_out=None)`` -> ``(out, residual_out)``:
  out of place; ``x`` and ``residual`` are only read.
* ``fused_add_rms_norm_(x, residual, weight, eps)`` -> ``(x, residual)``: in place, as vLLM does:
  ``residual`` becomes ``x + residual`` and ``x`` the normalized output.

Both read x, residual and weight once and write the two outputs once; the sum never leaves the
chip between the add and the normalization. Custom ops ``torch.ops.solbench.fused_add_rms_norm``
(functional), ``fused_add_rms_norm.out`` and ``fused_add_rms_norm_`` (in place), with fake
implementations; off CUDA they compute with torch.
"""
from __future__ import annotations

import torch

from solbench.core.rowwise import check_param, check_residual, output_like, rows_of
from solbench.kernels.common import check_disjoint, functional_op, kernel_op
from solbench.kernels.eager import rms_normalize

_WHAT = "fused_add_rms_norm"


def _eager(x, residual, weight, out, residual_out, eps):
    s = (x.float() + residual.float()).to(residual.dtype)
    normed = rms_normalize(s, eps) * weight.float()
    residual_out.copy_(s)
    out.copy_(normed)


def _eager_op(x, residual, weight, out, residual_out, eps) -> None:
    check_disjoint(_WHAT, (("out", out), ("residual_out", residual_out)),
                   (("x", x), ("residual", residual), ("weight", weight)))
    _eager(x, residual, weight, out, residual_out, eps)


def _eager_inplace_op(x, residual, weight, eps) -> None:
    check_disjoint(_WHAT, (("x", x), ("residual", residual)), (("weight", weight),))
    _eager(x, residual, weight, x, residual, eps)


def _launch(x, residual, weight, out, residual_out, eps):
    from solbench.core.rownorm import launch_rownorm

    x2, n = rows_of(x, _WHAT)
    launch_rownorm(x2, rows_of(out, _WHAT, "out")[0], mode="rms", eps=eps, n=n, rows=x2.shape[0], weight=weight,
                   residual=rows_of(residual, _WHAT, "residual")[0],
                   residual_out=rows_of(residual_out, _WHAT, "residual_out")[0], kernel="fused_add_rms_norm")


@kernel_op("solbench::fused_add_rms_norm.out", mutates_args=("out", "residual_out"), eager=_eager_op)
def _fused_add_op(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, out: torch.Tensor,
                  residual_out: torch.Tensor, eps: float) -> None:
    # Aliasing is checked here, where the tensors are real under torch.compile and graph capture
    # too (the wrapper sees fake tensors while it is traced).
    check_disjoint(_WHAT, (("out", out), ("residual_out", residual_out)),
                   (("x", x), ("residual", residual), ("weight", weight)))
    _launch(x, residual, weight, out, residual_out, eps)


@_fused_add_op.register_fake
def _fused_add_fake(x, residual, weight, out, residual_out, eps) -> None:
    return None


@kernel_op("solbench::fused_add_rms_norm_", mutates_args=("x", "residual"), eager=_eager_inplace_op)
def _fused_add_inplace_op(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float) -> None:
    # Safe in place: each program reads its rows of x and residual before it writes them; but x
    # and residual must be distinct memory, and weight (read by every program) untouched.
    check_disjoint(_WHAT, (("x", x), ("residual", residual)), (("weight", weight),))
    _launch(x, residual, weight, x, residual, eps)


@_fused_add_inplace_op.register_fake
def _fused_add_inplace_fake(x, residual, weight, eps) -> None:
    return None


functional_op("solbench::fused_add_rms_norm", _fused_add_op,
              lambda x, residual, weight, eps: (torch.empty_like(x), torch.empty_like(residual)))


def _check(x, residual, weight):
    _, n = rows_of(x, _WHAT)
    check_residual(x, residual, _WHAT)
    check_param(weight, n, x, _WHAT, "weight")


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6,
                       out: torch.Tensor | None = None, residual_out: torch.Tensor | None = None):
    """``s = x + residual`` (rounded to the input dtype); ``out = s / sqrt(mean(s^2) + eps) * weight``.

    Returns ``(out, residual_out)`` with ``residual_out = s``. Out of place: new tensors unless
    given; ``out=(out, residual_out)`` (a pair, as the benchmark runner passes it) also works.
    """
    if isinstance(out, (tuple, list)):
        if residual_out is not None or len(out) != 2:
            raise ValueError(f"{_WHAT}: out must be a tensor, or a pair (out, residual_out)")
        out, residual_out = out
    _check(x, residual, weight)
    out = output_like(out, x, _WHAT)
    residual_out = output_like(residual_out, x, _WHAT, "residual_out")
    rows_of(out, _WHAT, "out")
    rows_of(residual_out, _WHAT, "residual_out")
    _fused_add_op(x, residual, weight, out, residual_out, float(eps))
    return out, residual_out


def fused_add_rms_norm_(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """In place, like vLLM: ``residual <- x + residual``; ``x <- rms_norm(residual) * weight``.
    Returns ``(x, residual)``."""
    _check(x, residual, weight)
    _fused_add_inplace_op(x, residual, weight, float(eps))
    return x, residual
