"""The row normalizations: RMSNorm, LayerNorm and the L2 norm, with an optional fused residual add,
sigmoid-linear gate, affine weight/bias and per-segment rows, all from one Triton kernel
(``_rownorm_triton``, imported at the first launch). Public functions: :func:`rms_norm`,
:func:`fused_add_rms_norm` / :func:`fused_add_rms_norm_`, :func:`fused_qk_rmsnorm` /
:func:`fused_qk_rmsnorm_`, :func:`gated_rms_norm`, :func:`l2_norm`, :func:`layer_norm`; each is
also the custom op ``torch.ops.solbench.<name>`` (functional, ``.out``, and ``<name>_`` in place
where upstream works in place), with a fake implementation, computed with torch off CUDA.

All math in fp32; each output is rounded once. Segment ``r`` of ``n`` elements lives in token
``t = r // segs`` at offset ``t * stride + (r % segs) * seg_stride`` (``segs = 1``: plain
``[rows, n]``; more: per-head and group norms without copies). Per segment: ``v = x (+ residual``,
stored rounded as ``residual_out``, as vLLM normalizes the bf16 sum); ``v *= silu(z)`` when the
gate comes first; ``y = v / sqrt(mean(v^2) + eps)`` (RMS), ``(v - mean(v)) / sqrt(var(v) + eps)``
(LayerNorm, biased) or ``v / sqrt(sum(v^2) + eps)`` (L2); ``y = y * w (+ b)`` (``weight2`` from
segment ``w2_from``; ``w_seg_stride`` per segment, or shared); ``y *= silu(z)`` when the gate
comes after.

Chosen per launch: the tile (kernels/rowwise.row_options, optionally split into unpadded column
tiles), when the weight/bias/gate are loaded (:func:`params_first`), cache hints
(:func:`streaming_hints`) and LayerNorm's statistics (:func:`shifted_stats`; one Welford reduction
was 1.3-2x slower).
"""
from __future__ import annotations

from typing import Optional

import torch

from solbench.kernels.common import MANY_WAVES_PER_SM, check_disjoint, functional_op, kernel_op
from solbench.kernels.common import streaming_hints as kernel_streaming_hints
from solbench.kernels.eager import rms_normalize, silu
from solbench.kernels.rowwise import check_param, check_residual, output_like, rows_of
from solbench.runtime import tuning

MODES = {"rms": 0, "layer": 1, "l2": 2}


#: Programs per SM up to which the whole-row path loads the weight/bias/gate with the row (which
#: wins on decode and few-program launches; after the reduction wins on many waves): the launches
#: that gained had at most 4.8, the ones that lost at least 14 (the many-waves line of
#: kernels/common; docs/DECISIONS.md).
FEW_WAVES_PER_SM = MANY_WAVES_PER_SM


def params_first(programs: int) -> bool:
    """Whether a launch of ``programs`` programs issues the parameter loads with the row's: up to
    :data:`FEW_WAVES_PER_SM` programs per SM, and always without a device's SM count (CPU, the
    interpreter)."""
    sms = tuning.sm_count()
    if not sms:
        return True
    return programs <= FEW_WAVES_PER_SM * sms


def shifted_stats(programs: int) -> bool:
    """Whether a LayerNorm launch of ``programs`` programs takes its mean and variance from one
    reduction of the row's sums of d and d^2, d = v - its first value (one cross-warp round
    instead of two dependent ones, merged by additions), rather than the mean's reduction and
    then the centred squares'. Shifted on launches that give every SM a program but at most
    :data:`FEW_WAVES_PER_SM`: it wins where the cross-warp round dominates and loses where
    instruction issue does, or on one-program launches (docs/DECISIONS.md). Without a device's SM
    count (CPU, the interpreter) the two passes: the interpreter runs a reduction with a combine
    function element by element in Python, so the shifted sums made one catalog layer_norm
    record (276 x 1152) take 388 s on CPU against 12 s (the tests check both ways explicitly)."""
    sms = tuning.sm_count()
    return bool(sms) and sms <= programs <= FEW_WAVES_PER_SM * sms


def streaming_hints(programs: int, chunked: bool = False) -> dict:
    """The cache hints (``LOAD_EVICT`` / ``STORE_CACHE`` constexprs) on a whole-row launch's own
    accesses (x, residual, gate: each read once; the outputs: written once): evict-first loads and
    streaming stores together are 1-4% faster on 14-256 MB, either alone is level or slower
    (docs/DECISIONS.md). Only on launches of more than :data:`FEW_WAVES_PER_SM` programs per SM,
    where the gains were measured (a decode-sized launch keeps its output an ordinary L2 line for
    the kernel that reads it next; kernels/common.streaming_hints), and never on the chunked path,
    whose later passes re-read the row from L2."""
    return kernel_streaming_hints(programs, None if chunked else tuning.sm_count())  # no SM count: no hints


# ---- rms_norm --------------------------------------------------------------------------------

def _rms_norm_eager(x, weight, out, eps) -> None:
    check_disjoint("rms_norm", (("out", out),), (("x", x), ("weight", weight)))
    out.copy_(rms_normalize(x, eps) * weight.float())


@kernel_op("solbench::rms_norm.out", mutates_args=("out",), eager=_rms_norm_eager)
def _rms_norm_op(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor, eps: float) -> None:
    from solbench.kernels._rownorm_triton import launch_rownorm

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


# ---- fused_add_rms_norm ----------------------------------------------------------------------

_ADD = "fused_add_rms_norm"


def _add_eager(x, residual, weight, out, residual_out, eps):
    s = (x.float() + residual.float()).to(residual.dtype)
    normed = rms_normalize(s, eps) * weight.float()
    residual_out.copy_(s)
    out.copy_(normed)


def _add_eager_op(x, residual, weight, out, residual_out, eps) -> None:
    check_disjoint(_ADD, (("out", out), ("residual_out", residual_out)),
                   (("x", x), ("residual", residual), ("weight", weight)))
    _add_eager(x, residual, weight, out, residual_out, eps)


def _add_eager_inplace_op(x, residual, weight, eps) -> None:
    check_disjoint(_ADD, (("x", x), ("residual", residual)), (("weight", weight),))
    _add_eager(x, residual, weight, x, residual, eps)


def _add_launch(x, residual, weight, out, residual_out, eps):
    from solbench.kernels._rownorm_triton import launch_rownorm

    x2, n = rows_of(x, _ADD)
    launch_rownorm(x2, rows_of(out, _ADD, "out")[0], mode="rms", eps=eps, n=n, rows=x2.shape[0], weight=weight,
                   residual=rows_of(residual, _ADD, "residual")[0],
                   residual_out=rows_of(residual_out, _ADD, "residual_out")[0], kernel="fused_add_rms_norm")


@kernel_op("solbench::fused_add_rms_norm.out", mutates_args=("out", "residual_out"), eager=_add_eager_op)
def _fused_add_op(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, out: torch.Tensor,
                  residual_out: torch.Tensor, eps: float) -> None:
    # Aliasing is checked here, where the tensors are real under torch.compile and graph capture
    # too (the wrapper sees fake tensors while it is traced).
    check_disjoint(_ADD, (("out", out), ("residual_out", residual_out)),
                   (("x", x), ("residual", residual), ("weight", weight)))
    _add_launch(x, residual, weight, out, residual_out, eps)


@_fused_add_op.register_fake
def _fused_add_fake(x, residual, weight, out, residual_out, eps) -> None:
    return None


@kernel_op("solbench::fused_add_rms_norm_", mutates_args=("x", "residual"), eager=_add_eager_inplace_op)
def _fused_add_inplace_op(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float) -> None:
    # Safe in place: each program reads its rows of x and residual before it writes them; but x
    # and residual must be distinct memory, and weight (read by every program) untouched.
    check_disjoint(_ADD, (("x", x), ("residual", residual)), (("weight", weight),))
    _add_launch(x, residual, weight, x, residual, eps)


@_fused_add_inplace_op.register_fake
def _fused_add_inplace_fake(x, residual, weight, eps) -> None:
    return None


functional_op("solbench::fused_add_rms_norm", _fused_add_op,
              lambda x, residual, weight, eps: (torch.empty_like(x), torch.empty_like(residual)))


def _add_check(x, residual, weight):
    _, n = rows_of(x, _ADD)
    check_residual(x, residual, _ADD)
    check_param(weight, n, x, _ADD, "weight")


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6,
                       out: torch.Tensor | None = None, residual_out: torch.Tensor | None = None):
    """``s = x + residual`` (rounded to the input dtype); ``out = s / sqrt(mean(s^2) + eps) * weight``.

    Returns ``(out, residual_out)`` with ``residual_out = s``. Out of place: new tensors unless
    given; ``out=(out, residual_out)`` (a pair, as the benchmark runner passes it) also works.
    """
    if isinstance(out, (tuple, list)):
        if residual_out is not None or len(out) != 2:
            raise ValueError(f"{_ADD}: out must be a tensor, or a pair (out, residual_out)")
        out, residual_out = out
    _add_check(x, residual, weight)
    out = output_like(out, x, _ADD)
    residual_out = output_like(residual_out, x, _ADD, "residual_out")
    rows_of(out, _ADD, "out")
    rows_of(residual_out, _ADD, "residual_out")
    _fused_add_op(x, residual, weight, out, residual_out, float(eps))
    return out, residual_out


def fused_add_rms_norm_(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6):
    """In place, like vLLM: ``residual <- x + residual``; ``x <- rms_norm(residual) * weight``.
    Returns ``(x, residual)``."""
    _add_check(x, residual, weight)
    _fused_add_inplace_op(x, residual, weight, float(eps))
    return x, residual


# ---- fused_qk_rmsnorm ------------------------------------------------------------------------

_QK = "fused_qk_rmsnorm"


def _qk_eager(qkv, out, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps):
    h, kv, d = head_num, kv_head_num, size_per_head
    heads = qkv.unflatten(-1, (h + 2 * kv, d))
    w = torch.cat([q_weight.float().expand(h, d), k_weight.float().expand(kv, d)])
    normed = rms_normalize(heads[..., : h + kv, :], eps) * w
    dst = out.unflatten(-1, (h + 2 * kv, d))
    if out is not qkv:
        dst[..., h + kv:, :].copy_(heads[..., h + kv:, :])
    dst[..., : h + kv, :].copy_(normed)


def _qk_eager_inplace_op(qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps) -> None:
    check_disjoint(_QK, (("qkv", qkv),), (("q_weight", q_weight), ("k_weight", k_weight)))
    _qk_eager(qkv, qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps)


def _qk_eager_out_op(qkv, q_weight, k_weight, out, head_num, kv_head_num, size_per_head, eps) -> None:
    check_disjoint(_QK, (("out", out),), (("qkv", qkv), ("q_weight", q_weight), ("k_weight", k_weight)))
    _qk_eager(qkv, out, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps)


def _qk_launch(qkv, out, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps):
    from solbench.kernels._rownorm_triton import launch_rownorm

    x2, _ = rows_of(qkv, _QK, "qkv")
    segs = head_num + kv_head_num
    launch_rownorm(x2, rows_of(out, _QK, "out")[0], mode="rms", eps=eps, n=size_per_head,
                   rows=x2.shape[0] * segs, weight=q_weight, weight2=k_weight, segs=segs,
                   seg_stride=size_per_head, w_seg_stride=0, w2_from=head_num, kernel=_QK)


@kernel_op("solbench::fused_qk_rmsnorm_", mutates_args=("qkv",), eager=_qk_eager_inplace_op)
def _qk_inplace_op(qkv: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor, head_num: int,
                   kv_head_num: int, size_per_head: int, eps: float) -> None:
    # In place is safe: every head is read whole before it is written, by the same program.
    check_disjoint(_QK, (("qkv", qkv),), (("q_weight", q_weight), ("k_weight", k_weight)))
    _qk_launch(qkv, qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps)


@_qk_inplace_op.register_fake
def _qk_inplace_fake(qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps) -> None:
    return None


@kernel_op("solbench::fused_qk_rmsnorm.out", mutates_args=("out",), eager=_qk_eager_out_op)
def _qk_out_op(qkv: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor, out: torch.Tensor,
               head_num: int, kv_head_num: int, size_per_head: int, eps: float) -> None:
    check_disjoint(_QK, (("out", out),), (("qkv", qkv), ("q_weight", q_weight), ("k_weight", k_weight)))
    _qk_launch(qkv, out, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps)
    v0 = (head_num + kv_head_num) * size_per_head
    out[..., v0:].copy_(qkv[..., v0:])


@_qk_out_op.register_fake
def _qk_out_fake(qkv, q_weight, k_weight, out, head_num, kv_head_num, size_per_head, eps) -> None:
    return None


functional_op("solbench::fused_qk_rmsnorm", _qk_out_op, lambda qkv, *_: (torch.empty_like(qkv),))


def _qk_check(qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head):
    rows_of(qkv, _QK, "qkv")
    if min(head_num, size_per_head) < 1 or kv_head_num < 0:
        raise ValueError(f"{_QK}: need head_num >= 1, kv_head_num >= 0, size_per_head >= 1; got "
                         f"{head_num}, {kv_head_num}, {size_per_head}")
    width = (head_num + 2 * kv_head_num) * size_per_head
    if qkv.shape[-1] != width:
        raise ValueError(f"{_QK}: qkv's last dim must be (head_num + 2 * kv_head_num) * size_per_head = {width}, "
                         f"got {qkv.shape[-1]}")
    check_param(q_weight, size_per_head, qkv, _QK, "q_weight")
    check_param(k_weight, size_per_head, qkv, _QK, "k_weight")


def fused_qk_rmsnorm_(qkv: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor, head_num: int,
                      kv_head_num: int, size_per_head: int, eps: float = 1e-6) -> torch.Tensor:
    """Normalize every q and k head of the packed ``qkv [..., (H + 2 KV) * D]`` in place:
    ``head / sqrt(mean(head^2) + eps) * weight`` (fp32 math, one rounding). Returns ``qkv``."""
    _qk_check(qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head)
    _qk_inplace_op(qkv, q_weight, k_weight, int(head_num), int(kv_head_num),
                                         int(size_per_head), float(eps))
    return qkv


def fused_qk_rmsnorm(qkv: torch.Tensor, q_weight: torch.Tensor, k_weight: torch.Tensor, head_num: int,
                     kv_head_num: int, size_per_head: int, eps: float = 1e-6,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """Out-of-place form of :func:`fused_qk_rmsnorm_`: ``out`` gets the normalized q and k heads
    and a copy of the v heads. Returns ``out``."""
    _qk_check(qkv, q_weight, k_weight, head_num, kv_head_num, size_per_head)
    out = output_like(out, qkv, _QK)
    rows_of(out, _QK, "out")
    _qk_out_op(qkv, q_weight, k_weight, out, int(head_num), int(kv_head_num),
                                             int(size_per_head), float(eps))
    return out


# ---- gated_rms_norm --------------------------------------------------------------------------

_GATED = "gated_rms_norm"


def _gated_eager(x, z, weight, bias, out, eps, norm_before_gate, group_size) -> None:
    check_disjoint(_GATED, (("out", out),), (("x", x), ("z", z), ("weight", weight), ("bias", bias)))
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


@kernel_op("solbench::gated_rms_norm.out", mutates_args=("out",), eager=_gated_eager)
def _gated_op(x: torch.Tensor, z: Optional[torch.Tensor], weight: Optional[torch.Tensor],
              bias: Optional[torch.Tensor], out: torch.Tensor, eps: float, norm_before_gate: bool,
              group_size: int) -> None:
    from solbench.kernels._rownorm_triton import launch_rownorm

    check_disjoint(_GATED, (("out", out),), (("x", x), ("z", z), ("weight", weight), ("bias", bias)))
    x2, n = rows_of(x, _GATED)
    segs = n // group_size
    # Groups are segments of one row: the kernel normalizes each group and steps the weight
    # and bias by group_size per group.
    launch_rownorm(x2, rows_of(out, _GATED, "out")[0], mode="rms", eps=eps, n=group_size, rows=x2.shape[0] * segs,
                   weight=weight, bias=bias, z=rows_of(z, _GATED, "z")[0] if z is not None else None,
                   norm_before_gate=norm_before_gate, segs=segs, seg_stride=group_size,
                   w_seg_stride=group_size, kernel=_GATED)


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
        raise ValueError(f"{_GATED}: activation {activation!r} is not supported; supported: silu, swish")
    _, n = rows_of(x, _GATED)
    g = n if group_size is None else int(group_size)
    if g <= 0 or n % g:
        raise ValueError(f"{_GATED}: group_size {group_size} must divide the hidden size {n}")
    if z is not None:
        rows_of(z, _GATED, "z")
        if z.shape != x.shape:
            raise ValueError(f"{_GATED}: z must have x's shape {tuple(x.shape)}, got {tuple(z.shape)}")
        if z.device != x.device:
            raise ValueError(f"{_GATED}: z is on {z.device}, x on {x.device}")
    for arg, t in (("weight", weight), ("bias", bias)):
        if t is not None:
            check_param(t, n, x, _GATED, arg)
    out = output_like(out, x, _GATED)
    rows_of(out, _GATED, "out")
    _gated_op(x, z, weight, bias, out, float(eps), bool(norm_before_gate), g)
    return out


# ---- l2_norm ---------------------------------------------------------------------------------

def _l2_eager(x, out, eps) -> None:
    check_disjoint("l2_norm", (("out", out),), (("x", x),))
    xf = x.float()
    out.copy_(xf * torch.rsqrt(xf.square().sum(dim=-1, keepdim=True) + eps))


@kernel_op("solbench::l2_norm.out", mutates_args=("out",), eager=_l2_eager)
def _l2_norm_op(x: torch.Tensor, out: torch.Tensor, eps: float) -> None:
    from solbench.kernels._rownorm_triton import launch_rownorm

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


# ---- layer_norm ------------------------------------------------------------------------------

def _layer_eager(x, weight, bias, out, eps) -> None:
    check_disjoint("layer_norm", (("out", out),), (("x", x), ("weight", weight), ("bias", bias)))
    xf = x.float()
    xc = xf - xf.mean(dim=-1, keepdim=True)
    y = xc * torch.rsqrt(xc.square().mean(dim=-1, keepdim=True) + eps)
    if weight is not None:
        y = y * weight.float()
    if bias is not None:
        y = y + bias.float()
    out.copy_(y)


@kernel_op("solbench::layer_norm.out", mutates_args=("out",), eager=_layer_eager)
def _layer_norm_op(x: torch.Tensor, weight: Optional[torch.Tensor], bias: Optional[torch.Tensor],
                   out: torch.Tensor, eps: float) -> None:
    from solbench.kernels._rownorm_triton import launch_rownorm

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
