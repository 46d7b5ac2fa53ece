"""Public gated RMSNorm API: ``gated_rms_norm(x, z, weight, eps=1e-6, norm_before_gate=True,
group_size=None, bias=None, out=None)`` (SGLang/fla ``rms_norm_gated``).

Custom ops ``torch.ops.solbench.gated_rms_norm`` (functional) and ``gated_rms_norm.out`` (mutates
``out``), with fake implementations; off CUDA they compute with torch.
"""
from __future__ import annotations

from typing import Optional

import torch

from solbench.core.rowwise import check_param, output_like, rows_of
from solbench.kernels.common import check_disjoint, functional_op, kernel_op
from solbench.kernels.eager import rms_normalize, silu

_WHAT = "gated_rms_norm"


def _eager(x, z, weight, bias, out, eps, norm_before_gate, group_size) -> None:
    check_disjoint(_WHAT, (("out", out),), (("x", x), ("z", z), ("weight", weight), ("bias", bias)))
    gate = silu(z.float()) if z is not None else None
    v = x.float() if norm_before_gate or gate is None else x.float() * gate
    y = rms_normalize(v, eps, group_size)
    if weight is not None:
        y = y * weight.float()
    if bias is not None:
        y = y + bias.float()
    if norm_before_gate and gate is not None:
        y = y * gate
    out.copy_(y)


@kernel_op("solbench::gated_rms_norm.out", mutates_args=("out",), eager=_eager)
def _gated_op(x: torch.Tensor, z: Optional[torch.Tensor], weight: Optional[torch.Tensor],
              bias: Optional[torch.Tensor], out: torch.Tensor, eps: float, norm_before_gate: bool,
              group_size: int) -> None:
    from solbench.core.rownorm import launch_rownorm

    check_disjoint(_WHAT, (("out", out),), (("x", x), ("z", z), ("weight", weight), ("bias", bias)))
    x2, n = rows_of(x, _WHAT)
    segs = n // group_size
    # Groups are segments of one row: the kernel normalizes each group and steps the weight
    # and bias by group_size per group.
    launch_rownorm(x2, rows_of(out, _WHAT, "out")[0], mode="rms", eps=eps, n=group_size, rows=x2.shape[0] * segs,
                   weight=weight, bias=bias, z=rows_of(z, _WHAT, "z")[0] if z is not None else None,
                   norm_before_gate=norm_before_gate, segs=segs, seg_stride=group_size,
                   w_seg_stride=group_size, kernel=_WHAT)


@_gated_op.register_fake
def _gated_fake(x, z, weight, bias, out, eps, norm_before_gate, group_size) -> None:
    return None


functional_op("solbench::gated_rms_norm", _gated_op, lambda x, *_: (torch.empty_like(x),))


def gated_rms_norm(x: torch.Tensor, z: torch.Tensor | None, weight: torch.Tensor | None, eps: float = 1e-6,
                   norm_before_gate: bool = True, group_size: int | None = None,
                   bias: torch.Tensor | None = None, out: torch.Tensor | None = None,
                   activation: str = "silu") -> torch.Tensor:
    """RMSNorm gated by ``silu(z)``, per group of ``group_size`` channels (default: the whole row).

    ``norm_before_gate``: ``out = rmsnorm(x) * weight (+ bias) * silu(z)``; otherwise
    ``out = rmsnorm(x * silu(z)) * weight (+ bias)``. ``z=None`` gives a plain (group) RMSNorm.
    fp32 math, one rounding to ``x.dtype``. Returns ``out``.
    """
    if activation not in ("silu", "swish"):
        raise ValueError(f"{_WHAT}: activation {activation!r} is not supported; supported: silu, swish")
    _, n = rows_of(x, _WHAT)
    g = n if group_size is None else int(group_size)
    if g <= 0 or n % g:
        raise ValueError(f"{_WHAT}: group_size {group_size} must divide the hidden size {n}")
    if z is not None:
        rows_of(z, _WHAT, "z")
        if z.shape != x.shape:
            raise ValueError(f"{_WHAT}: z must have x's shape {tuple(x.shape)}, got {tuple(z.shape)}")
        if z.device != x.device:
            raise ValueError(f"{_WHAT}: z is on {z.device}, x on {x.device}")
    for arg, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            check_param(t, n, x, _WHAT, arg)
    out = output_like(out, x, _WHAT)
    rows_of(out, _WHAT, "out")
    _gated_op(x, z, weight, bias, out, float(eps), bool(norm_before_gate), g)
    return out
