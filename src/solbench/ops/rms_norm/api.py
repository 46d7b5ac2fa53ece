"""Public RMSNorm API: ``rms_norm(x, weight, eps=1e-6, out=None)``.

Custom ops ``torch.ops.solbench.rms_norm`` (functional) and ``rms_norm.out`` (mutates ``out``),
with fake implementations, so ``torch.compile`` traces through them and CUDA graphs capture them.
Off CUDA they compute with torch (:mod:`solbench.kernels.eager`).
"""
from __future__ import annotations

import torch

from solbench.core.rowwise import check_param, output_like, rows_of
from solbench.kernels.common import check_disjoint, functional_op, kernel_op
from solbench.kernels.eager import rms_normalize


def _rms_norm_eager(x, weight, out, eps) -> None:
    check_disjoint("rms_norm", (("out", out),), (("x", x), ("weight", weight)))
    out.copy_(rms_normalize(x, eps) * weight.float())


@kernel_op("solbench::rms_norm.out", mutates_args=("out",), eager=_rms_norm_eager)
def _rms_norm_op(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor, eps: float) -> None:
    from solbench.core.rownorm import launch_rownorm

    check_disjoint("rms_norm", (("out", out),), (("x", x), ("weight", weight)))
    x2, n = rows_of(x, "rms_norm")
    launch_rownorm(x2, rows_of(out, "rms_norm", "out")[0], mode="rms", eps=eps, n=n, rows=x2.shape[0],
                   weight=weight, kernel="rms_norm")


@_rms_norm_op.register_fake
def _rms_norm_fake(x, weight, out, eps) -> None:
    return None


functional_op("solbench::rms_norm", _rms_norm_op, lambda x, weight, eps: (torch.empty_like(x),))


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6,
             out: torch.Tensor | None = None) -> torch.Tensor:
    """``out = x / sqrt(mean(x^2, -1) + eps) * weight`` over the last dim (vLLM ``rms_norm``).

    ``x``: ``[..., n]`` bf16/fp16/fp32, any leading dims, rows may be strided (last dim
    contiguous). ``weight``: ``[n]``. Math in fp32, one rounding to ``x.dtype``. Returns ``out``.
    """
    _, n = rows_of(x, "rms_norm")
    check_param(weight, n, x, "rms_norm", "weight")
    out = output_like(out, x, "rms_norm")
    rows_of(out, "rms_norm", "out")
    _rms_norm_op(x, weight, out, float(eps))
    return out
