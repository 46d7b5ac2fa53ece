"""Public fused QK RMSNorm API (rtp-llm ``fusedQkRmsNorm``).

* ``fused_qk_rmsnorm_(qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps=1e-6)``:
  in place, as upstream; returns ``qkv``.
* ``fused_qk_rmsnorm(..., out=None)``: out of place (v heads are copied into ``out``).

Every (token, head) pair of the q and k heads is one row of the row-norm kernel: the kernel
addresses head ``s`` of token ``t`` at ``t * row_stride + s * size_per_head`` and picks
``k_weight`` for ``s >= head_num``. Custom ops ``torch.ops.solbench.fused_qk_rmsnorm``
(functional), ``fused_qk_rmsnorm.out`` and ``fused_qk_rmsnorm_`` (in place, mutates qkv), with
fake implementations; off CUDA they compute with torch.
"""
from __future__ import annotations

import torch

from solbench.core.rowwise import check_param, output_like, rows_of
from solbench.kernels.common import check_disjoint, functional_op, kernel_op
from solbench.kernels.eager import rms_normalize

_WHAT = "fused_qk_rmsnorm"


def _eager(qkv, out, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps):
    h, kv, d = head_num, kv_head_num, size_per_head
    heads = qkv.unflatten(-1, (h + 2 * kv, d))
    w = torch.cat([q_weight.float().expand(h, d), k_weight.float().expand(kv, d)])
    normed = rms_normalize(heads[..., : h + kv, :], eps) * w
    dst = out.unflatten(-1, (h + 2 * kv, d))
    if out is not qkv:
        dst[..., h + kv:, :].copy_(heads[..., h + kv:, :])
    dst[..., : h + kv, :].copy_(normed)


def _eager_inplace_op(qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps) -> None:
    check_disjoint(_WHAT, (("qkv", qkv),), (("q_weight", q_weight), ("k_weight", k_weight)))
    _eager(qkv, qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps)


def _eager_out_op(qkv, q_weight, k_weight, out, head_num, kv_head_num, size_per_head, eps) -> None:
    check_disjoint(_WHAT, (("out", out),), (("qkv", qkv), ("q_weight", q_weight), ("k_weight", k_weight)))
    _eager(qkv, out, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps)


def _launch(qkv, out, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps):
    from solbench.core.rownorm import launch_rownorm

    x2, _ = rows_of(qkv, _WHAT, "qkv")
    segs = head_num + kv_head_num
    launch_rownorm(x2, rows_of(out, _WHAT, "out")[0], mode="rms", eps=eps, n=size_per_head,
                   rows=x2.shape[0] * segs, weight=q_weight, weight2=k_weight, segs=segs,
                   seg_stride=size_per_head, w_seg_stride=0, w2_from=head_num, kernel=_WHAT)


@kernel_op("solbench::fused_qk_rmsnorm_", mutates_args=("qkv",), eager=_eager_inplace_op)
def _qk_inplace_op(qkv: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor, head_num: int,
                   kv_head_num: int, size_per_head: int, eps: float) -> None:
    # In place is safe: every head is read whole before it is written, by the same program.
    check_disjoint(_WHAT, (("qkv", qkv),), (("q_weight", q_weight), ("k_weight", k_weight)))
    _launch(qkv, qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps)


@_qk_inplace_op.register_fake
def _qk_inplace_fake(qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps) -> None:
    return None


@kernel_op("solbench::fused_qk_rmsnorm.out", mutates_args=("out",), eager=_eager_out_op)
def _qk_out_op(qkv: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor, out: torch.Tensor,
               head_num: int, kv_head_num: int, size_per_head: int, eps: float) -> None:
    check_disjoint(_WHAT, (("out", out),), (("qkv", qkv), ("q_weight", q_weight), ("k_weight", k_weight)))
    _launch(qkv, out, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps)
    v0 = (head_num + kv_head_num) * size_per_head
    out[..., v0:].copy_(qkv[..., v0:])


@_qk_out_op.register_fake
def _qk_out_fake(qkv, q_weight, k_weight, out, head_num, kv_head_num, size_per_head, eps) -> None:
    return None


functional_op("solbench::fused_qk_rmsnorm", _qk_out_op, lambda qkv, *_: (torch.empty_like(qkv),))


def _check(qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head):
    rows_of(qkv, _WHAT, "qkv")
    if min(head_num, size_per_head) < 1 or kv_head_num < 0:
        raise ValueError(f"{_WHAT}: need head_num >= 1, kv_head_num >= 0, size_per_head >= 1; got "
                         f"{head_num}, {kv_head_num}, {size_per_head}")
    width = (head_num + 2 * kv_head_num) * size_per_head
    if qkv.shape[-1] != width:
        raise ValueError(f"{_WHAT}: qkv's last dim must be (head_num + 2 * kv_head_num) * size_per_head = {width}, "
                         f"got {qkv.shape[-1]}")
    check_param(q_weight, size_per_head, qkv, _WHAT, "q_weight")
    check_param(k_weight, size_per_head, qkv, _WHAT, "k_weight")


def fused_qk_rmsnorm_(qkv: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor, head_num: int,
                      kv_head_num: int, size_per_head: int, eps: float = 1e-6) -> torch.Tensor:
    """Normalize every q and k head of the packed ``qkv [..., (H + 2 KV) * D]`` in place:
    ``head / sqrt(mean(head^2) + eps) * weight`` (fp32 math, one rounding). Returns ``qkv``."""
    _check(qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head)
    _qk_inplace_op(qkv, q_weight, k_weight, int(head_num), int(kv_head_num),
                                         int(size_per_head), float(eps))
    return qkv


def fused_qk_rmsnorm(qkv: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor, head_num: int,
                     kv_head_num: int, size_per_head: int, eps: float = 1e-6,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """Out-of-place form of :func:`fused_qk_rmsnorm_`: ``out`` gets the normalized q and k heads
    and a copy of the v heads. Returns ``out``."""
    _check(qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head)
    out = output_like(out, qkv, _WHAT)
    rows_of(out, _WHAT, "out")
    _qk_out_op(qkv, q_weight, k_weight, out, int(head_num), int(kv_head_num),
                                             int(size_per_head), float(eps))
    return out
