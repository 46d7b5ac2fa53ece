"""Public LayerNorm API: ``layer_norm(x, weight=None, bias=None, eps=1e-5, out=None)``.

Custom op ``solbench::layer_norm_`` (mutates ``out``) with a fake implementation.
"""
from __future__ import annotations

from typing import Optional

import torch

from solbench.kernels.common import check_disjoint, kernel_op
from solbench.core.rownorm import launch_rownorm
from solbench.core.rowwise import check_param, output_like, rows_of


@kernel_op("solbench::layer_norm_", mutates_args=("out",))
def _layer_norm_op(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                   out: torch.Tensor, eps: float) -> None:
    check_disjoint("layer_norm", (("out", out),), (("x", x), ("weight", weight), ("bias", bias)))
    x2, n = rows_of(x, "layer_norm")
    launch_rownorm(x2, rows_of(out, "layer_norm", "out")[0], mode="layer", eps=eps, n=n, rows=x2.shape[0],
                   weight=weight, bias=bias, kernel="layer_norm")


@_layer_norm_op.register_fake
def _layer_norm_fake(x, weight, bias, out, eps) -> None:
    return None


def layer_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
               eps: float = 1e-5, out: torch.Tensor | None = None) -> torch.Tensor:
    """``out = (x - mean) / sqrt(var + eps) * weight + bias`` over the last dim (biased variance,
    as ``F.layer_norm``). ``weight``/``bias`` are optional ``[n]``. fp32 math, one rounding.
    Returns ``out``."""
    _, n = rows_of(x, "layer_norm")
    for arg, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            check_param(t, n, x, "layer_norm", arg)
    out = output_like(out, x, "layer_norm")
    rows_of(out, "layer_norm", "out")
    _layer_norm_op(x, weight, bias, out, float(eps))
    return out
