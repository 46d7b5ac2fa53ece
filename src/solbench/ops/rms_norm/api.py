"""Public RMSNorm API: ``rms_norm(x, weight, eps=1e-6, out=None)``.

The kernel is the ``torch.library`` custom op ``solbench::rms_norm_`` (mutates ``out``) with a
fake implementation, so ``torch.compile`` traces through it and CUDA graphs capture it.
"""
from __future__ import annotations

import torch

from solbench.kernels.common import check_disjoint, kernel_op
from solbench.core.rownorm import launch_rownorm
from solbench.core.rowwise import check_param, output_like, rows_of


@kernel_op("solbench::rms_norm_", mutates_args=("out",))
def _rms_norm_op(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor, eps: float) -> None:
    check_disjoint("rms_norm", (("out", out),), (("x", x), ("weight", weight)))
    x2, n = rows_of(x, "rms_norm")
    launch_rownorm(x2, rows_of(out, "rms_norm", "out")[0], mode="rms", eps=eps, n=n, rows=x2.shape[0],
                   weight=weight, kernel="rms_norm")


@_rms_norm_op.register_fake
def _rms_norm_fake(x, weight, out, eps) -> None:
    return None


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
