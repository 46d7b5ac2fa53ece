"""Public LayerNorm API: ``layer_norm(x, weight=None, bias=None, eps=1e-5, out=None)``.

Custom ops ``torch.ops.solbench.layer_norm`` (functional) and ``layer_norm.out`` (mutates ``out``),
with fake implementations; off CUDA they compute with torch.
"""
from __future__ import annotations

from typing import Optional

import torch

from solbench.core.rowwise import check_param, output_like, rows_of
from solbench.kernels.common import check_disjoint, functional_op, kernel_op


def _eager(x, weight, bias, out, eps) -> None:
    check_disjoint("layer_norm", (("out", out),), (("x", x), ("weight", weight), ("bias", bias)))
    xf = x.float()
    xc = xf - xf.mean(dim=-1, keepdim=True)
    y = xc * torch.rsqrt(xc.square().mean(dim=-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.float()
    if bias is not None:
        y = y + bias.float()
    out.copy_(y)


@kernel_op("solbench::layer_norm.out", mutates_args=("out",), eager=_eager)
def _layer_norm_op(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                   out: torch.Tensor, eps: float) -> None:
    from solbench.core.rownorm import launch_rownorm

    check_disjoint("layer_norm", (("out", out),), (("x", x), ("weight", weight), ("bias", bias)))
    x2, n = rows_of(x, "layer_norm")
    launch_rownorm(x2, rows_of(out, "layer_norm", "out")[0], mode="layer", eps=eps, n=n, rows=x2.shape[0],
                   weight=weight, bias=bias, kernel="layer_norm")


@_layer_norm_op.register_fake
def _layer_norm_fake(x, weight, bias, out, eps) -> None:
    return None


functional_op("solbench::layer_norm", _layer_norm_op, lambda x, *_: (torch.empty_like(x),))


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
