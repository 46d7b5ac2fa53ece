"""Public L2-norm API: ``l2_norm(x, eps=1e-6, out=None)`` (vLLM/fla ``l2norm_fwd``).

Custom ops ``torch.ops.solbench.l2_norm`` (functional) and ``l2_norm.out`` (mutates ``out``), with
fake implementations; off CUDA they compute with torch.
"""
from __future__ import annotations

import torch

from solbench.core.rowwise import output_like, rows_of
from solbench.kernels.common import check_disjoint, functional_op, kernel_op


def _eager(x, out, eps) -> None:
    check_disjoint("l2_norm", (("out", out),), (("x", x),))
    xf = x.float()
    out.copy_(xf * torch.rsqrt(xf.square().sum(dim=-1, keepdim=True) + eps))


@kernel_op("solbench::l2_norm.out", mutates_args=("out",), eager=_eager)
def _l2_norm_op(x: torch.Tensor, out: torch.Tensor, eps: float) -> None:
    from solbench.core.rownorm import launch_rownorm

    check_disjoint("l2_norm", (("out", out),), (("x", x),))
    x2, n = rows_of(x, "l2_norm")
    launch_rownorm(x2, rows_of(out, "l2_norm", "out")[0], mode="l2", eps=eps, n=n, rows=x2.shape[0],
                   kernel="l2_norm")


@_l2_norm_op.register_fake
def _l2_norm_fake(x, out, eps) -> None:
    return None


functional_op("solbench::l2_norm", _l2_norm_op, lambda x, eps: (torch.empty_like(x),))


def l2_norm(x: torch.Tensor, eps: float = 1e-6, out: torch.Tensor | None = None) -> torch.Tensor:
    """``out = x / sqrt(sum(x^2, -1) + eps)`` over the last dim; fp32 math, one rounding.

    ``x``: ``[..., n]`` bf16/fp16/fp32, rows may be strided (last dim contiguous). Returns ``out``.
    """
    rows_of(x, "l2_norm")
    out = output_like(out, x, "l2_norm")
    rows_of(out, "l2_norm", "out")
    _l2_norm_op(x, out, float(eps))
    return out
