"""FP8 (e4m3fn) quantization of activations, one pass over HBM each, with its Triton kernels in
``_fp8_quant_triton`` (imported at the first launch):

* :func:`dynamic_per_token_quant_fp8` (aiter ``dynamic_per_token_scaled_quant``): one scale per row;
* :func:`rms_norm_quant`, :func:`fused_add_rms_norm_quant` (aiter ``rmsnorm2d_fwd_with_dynamicquant``,
  ``rmsnorm2d_fwd_with_add_dynamicquant``): (residual add +) RMSNorm, then per-row quantization;
* :func:`per_token_group_quant_fp8` (vLLM ``per_token_group_quant_fp8``): one scale per group.

Each is a custom op ``torch.ops.solbench.<name>`` (functional) with its ``.out`` form, with a fake
implementation; off CUDA they compute with the torch formulations of
:mod:`solbench.kernels.fp8_format` (the format and its scale conventions), which the benchmark's
references use too.
"""
from __future__ import annotations

import torch

from solbench.kernels.common import as_rows, check_disjoint, check_out, functional_op, kernel_op
from solbench.kernels.eager import rms_normalize
from solbench.kernels.fp8_format import GROUP_EPS, MIN_AMAX, fp8_dtype, quantize_per_group, quantize_per_token
from solbench.kernels.rowwise import check_param, check_residual, output_like, rows_of


# ---- dynamic_per_token_quant_fp8 -------------------------------------------------------------------

_PER_TOKEN = "dynamic_per_token_quant_fp8"


def _per_token_eager(x, q, scale, min_amax) -> None:
    check_disjoint(_PER_TOKEN, (("q", q), ("scale", scale)), (("x", x),))
    qq, ss = quantize_per_token(as_rows(x, _PER_TOKEN).float(), min_amax)
    as_rows(q, _PER_TOKEN, "q").copy_(qq)
    as_rows(scale, _PER_TOKEN, "scale").copy_(ss)


@kernel_op("solbench::dynamic_per_token_quant_fp8.out", mutates_args=("q", "scale"), eager=_per_token_eager)
def _per_token_quant_op(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, min_amax: float) -> None:
    from solbench.kernels._fp8_quant_triton import launch_per_token_quant

    check_disjoint(_PER_TOKEN, (("q", q), ("scale", scale)), (("x", x),))
    launch_per_token_quant(as_rows(x, _PER_TOKEN), as_rows(q, _PER_TOKEN, "q"), as_rows(scale, _PER_TOKEN, "scale"), min_amax)


@_per_token_quant_op.register_fake
def _per_token_quant_fake(x, q, scale, min_amax) -> None:
    return None


functional_op("solbench::dynamic_per_token_quant_fp8", _per_token_quant_op,
              lambda x, min_amax: quant_outputs(x, None, _PER_TOKEN))


def quant_outputs(x: torch.Tensor, out, what: str):
    """``(q, scale)`` for a per-token quantization of ``x``: validated ``out`` (a pair) or new
    tensors. ``q`` is fp8 e4m3fn shaped like ``x``; ``scale`` fp32 ``x.shape[:-1] + (1,)``;
    either may have a row stride."""
    q_shape, s_shape = tuple(x.shape), (*x.shape[:-1], 1)
    if out is None:
        return (torch.empty(q_shape, dtype=fp8_dtype(), device=x.device),
                torch.empty(s_shape, dtype=torch.float32, device=x.device))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ValueError(f"{what}: out must be a pair (q, scale)")
    q, scale = out
    for name, t, shape, dtype in (("q", q, q_shape, fp8_dtype()), ("scale", scale, s_shape, torch.float32)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{what}: out {name} must be a torch.Tensor, got {type(t).__name__}")
        check_out(t, shape, dtype, x.device, what, f"out {name}")
        as_rows(t, what, f"out {name}")
    return q, scale


def dynamic_per_token_quant_fp8(x: torch.Tensor, out=None, *, min_amax: float = MIN_AMAX):
    """Quantize each row of ``x[..., n]`` to fp8 e4m3fn with its own scale.

    ``scale = max(max|x_row|, min_amax) / 448``; ``q = fp8(clamp(x / scale, -448, 448))``
    (round to nearest even). ``x``: bf16, fp16 or fp32, any leading dims, rows may be strided
    (the last dim must be contiguous), 0 rows allowed. ``out``: optional pair ``(q, scale)``.
    Returns ``(q, scale)`` with ``scale`` shaped ``x.shape[:-1] + (1,)``.
    """
    rows_of(x, _PER_TOKEN)
    if not (min_amax >= 0.0):
        raise ValueError(f"{_PER_TOKEN}: min_amax must be >= 0, got {min_amax}")
    q, scale = quant_outputs(x, out, _PER_TOKEN)
    _per_token_quant_op(x, q, scale, float(min_amax))
    return q, scale


# ---- rms_norm_quant, fused_add_rms_norm_quant -----------------------------------------------------

_ADD_NORM_QUANT = "fused_add_rms_norm_quant"
_NORM_QUANT = "rms_norm_quant"


def _norm_quant_eager(x, weight, q, scale, eps, residual=None, residual_out=None):
    v = x.float() if residual is None else x.float() + residual.float()
    if residual_out is not None:
        residual_out.copy_(v)
    qq, ss = quantize_per_token(as_rows(rms_normalize(v, eps) * weight.float(), _ADD_NORM_QUANT), 0.0)
    as_rows(q, _ADD_NORM_QUANT, "q").copy_(qq)
    as_rows(scale, _ADD_NORM_QUANT, "scale").copy_(ss)


def _eager_add_op(x, residual, weight, q, scale, residual_out, eps) -> None:
    check_disjoint(_ADD_NORM_QUANT, (("q", q), ("scale", scale), ("residual_out", residual_out)),
                   (("x", x), ("residual", residual), ("weight", weight)))
    _norm_quant_eager(x, weight, q, scale, eps, residual, residual_out)


def _eager_plain_op(x, weight, q, scale, eps) -> None:
    check_disjoint(_NORM_QUANT, (("q", q), ("scale", scale)), (("x", x), ("weight", weight)))
    _norm_quant_eager(x, weight, q, scale, eps)


def _quant_alloc(x):
    return (torch.empty(x.shape, dtype=fp8_dtype(), device=x.device),
            torch.empty((*x.shape[:-1], 1), dtype=torch.float32, device=x.device))


def _norm_quant_launch(x, weight, q, scale, eps, residual=None, residual_out=None):
    from solbench.kernels._fp8_quant_triton import launch_rmsnorm_quant

    launch_rmsnorm_quant(as_rows(x, _ADD_NORM_QUANT), weight, as_rows(q, _ADD_NORM_QUANT, "q"), as_rows(scale, _ADD_NORM_QUANT, "scale"), eps,
                         None if residual is None else as_rows(residual, _ADD_NORM_QUANT, "residual"),
                         None if residual_out is None else as_rows(residual_out, _ADD_NORM_QUANT, "residual_out"))


@kernel_op("solbench::fused_add_rms_norm_quant.out", mutates_args=("q", "scale", "residual_out"), eager=_eager_add_op)
def _add_rmsnorm_quant_op(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, q: torch.Tensor,
                          scale: torch.Tensor, residual_out: torch.Tensor, eps: float) -> None:
    check_disjoint(_ADD_NORM_QUANT, (("q", q), ("scale", scale), ("residual_out", residual_out)),
                   (("x", x), ("residual", residual), ("weight", weight)))
    _norm_quant_launch(x, weight, q, scale, eps, residual, residual_out)


@_add_rmsnorm_quant_op.register_fake
def _add_rmsnorm_quant_fake(x, residual, weight, q, scale, residual_out, eps) -> None:
    return None


@kernel_op("solbench::rms_norm_quant.out", mutates_args=("q", "scale"), eager=_eager_plain_op)
def _rmsnorm_quant_op(x: torch.Tensor, weight: torch.Tensor, q: torch.Tensor, scale: torch.Tensor,
                      eps: float) -> None:
    check_disjoint(_NORM_QUANT, (("q", q), ("scale", scale)), (("x", x), ("weight", weight)))
    _norm_quant_launch(x, weight, q, scale, eps)


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
    _, n = rows_of(x, _ADD_NORM_QUANT)
    check_residual(x, residual, _ADD_NORM_QUANT)
    check_param(weight, n, x, _ADD_NORM_QUANT, "weight")
    _check_eps(eps, _ADD_NORM_QUANT)
    if out is None:
        q, scale, residual_out = None, None, None
    elif isinstance(out, (tuple, list)) and len(out) == 3:
        q, scale, residual_out = out
    else:
        raise ValueError(f"{_ADD_NORM_QUANT}: out must be a triple (q, scale, residual_out)")
    residual_out = output_like(residual_out, x, _ADD_NORM_QUANT, "residual_out")
    rows_of(residual_out, _ADD_NORM_QUANT, "residual_out")
    q, scale = quant_outputs(x, None if q is None and scale is None else (q, scale), _ADD_NORM_QUANT)
    _add_rmsnorm_quant_op(x, residual, weight, q, scale, residual_out, float(eps))
    return q, scale, residual_out


def rms_norm_quant(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, out=None):
    """``y = rms_norm(x) * weight`` quantized per row to fp8 e4m3fn; returns ``(q, scale)``
    (aiter ``rmsnorm2d_fwd_with_dynamicquant``). ``out``: optional pair ``(q, scale)``."""
    _, n = rows_of(x, _NORM_QUANT)
    check_param(weight, n, x, _NORM_QUANT, "weight")
    _check_eps(eps, _NORM_QUANT)
    q, scale = quant_outputs(x, out, _NORM_QUANT)
    _rmsnorm_quant_op(x, weight, q, scale, float(eps))
    return q, scale


# ---- per_token_group_quant_fp8 ---------------------------------------------------------------------

_GROUP = "per_token_group_quant_fp8"


def _group_eager(x, q, scales, group_size, eps, ue8m0) -> None:
    check_disjoint(_GROUP, (("q", q), ("scales", scales)), (("x", x),))
    k = x.shape[-1]
    qq, ss = quantize_per_group(as_rows(x, _GROUP), group_size, eps, ue8m0)
    as_rows(q, _GROUP, "q").copy_(qq)
    _scales_2d(scales, qq.shape[0], k // group_size).copy_(ss)


@kernel_op("solbench::per_token_group_quant_fp8.out", mutates_args=("q", "scales"), eager=_group_eager)
def _group_quant_op(x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor, group_size: int, eps: float,
                    ue8m0: bool) -> None:
    from solbench.kernels._fp8_quant_triton import launch_group_quant

    check_disjoint(_GROUP, (("q", q), ("scales", scales)), (("x", x),))
    k = x.shape[-1]
    x2 = as_rows(x, _GROUP)
    launch_group_quant(x2, as_rows(q, _GROUP, "q"), _scales_2d(scales, x2.shape[0], k // group_size),
                       group_size, eps, ue8m0)


@_group_quant_op.register_fake
def _group_quant_fake(x, q, scales, group_size, eps, ue8m0) -> None:
    return None


functional_op("solbench::per_token_group_quant_fp8", _group_quant_op,
              lambda x, group_size, eps, ue8m0: (torch.empty(x.shape, dtype=fp8_dtype(), device=x.device),
                                                _alloc_scales(x, x.shape[-1] // group_size, False, False)))


def _scales_2d(scales, rows: int, groups: int):
    """``[rows, groups]`` view of the scales with two strides (no copy)."""
    if scales.dim() == 2:
        return scales
    try:
        return scales.view(rows, groups)
    except RuntimeError:
        raise ValueError(f"{_GROUP}: scales with shape {tuple(scales.shape)} and strides {scales.stride()} "
                         "cannot be viewed as [rows, groups]; use row-major scales or a 2-D x") from None


def _alloc_scales(x, groups: int, column_major: bool, tma_aligned: bool):
    if not column_major:
        return torch.empty((*x.shape[:-1], groups), dtype=torch.float32, device=x.device)
    if x.dim() != 2:
        raise ValueError(f"{_GROUP}: column_major_scales needs a 2-D x, got shape {tuple(x.shape)}")
    m = x.shape[0]
    m_pad = (m + 3) // 4 * 4 if tma_aligned else m
    return torch.empty_strided((m, groups), (1, m_pad), dtype=torch.float32, device=x.device)


def per_token_group_quant_fp8(x: torch.Tensor, group_size: int = 128, eps: float = GROUP_EPS, *,
                              column_major_scales: bool = False, tma_aligned_scales: bool = False,
                              use_ue8m0: bool = False, out=None):
    """Quantize ``x[..., K]`` to fp8 e4m3fn with one fp32 scale per ``group_size`` elements.

    ``x``: bf16, fp16 or fp32, any leading dims, rows may be strided (the last dim must be
    contiguous), 0 rows allowed; ``K`` must be divisible by ``group_size``. ``out``: optional
    pair ``(q, scales)``; ``scales`` may have any strides (e.g. column-major). Returns
    ``(q, scales)``.
    """
    _, k = rows_of(x, _GROUP)
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"{_GROUP}: group_size must be a positive int, got {group_size!r}")
    if k % group_size:
        raise ValueError(f"{_GROUP}: the last dimension of x ({k}) must be divisible by group_size ({group_size})")
    from solbench.kernels._fp8_quant_triton import max_group_size

    if group_size > max_group_size():
        raise ValueError(f"{_GROUP}: group_size {group_size} is not supported (supported: up to {max_group_size()})")
    if not (eps > 0.0):
        raise ValueError(f"{_GROUP}: eps must be > 0, got {eps}")
    groups = k // group_size
    if out is None:
        q = torch.empty(x.shape, dtype=fp8_dtype(), device=x.device)
        scales = _alloc_scales(x, groups, column_major_scales, tma_aligned_scales)
    else:
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError(f"{_GROUP}: out must be a pair (q, scales)")
        q, scales = out
        for name, t in (("q", q), ("scales", scales)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{_GROUP}: out {name} must be a torch.Tensor, got {type(t).__name__}")
        check_out(q, x.shape, fp8_dtype(), x.device, _GROUP, "out q")
        check_out(scales, (*x.shape[:-1], groups), torch.float32, x.device, _GROUP, "out scales")
    as_rows(q, _GROUP, "q")
    _scales_2d(scales, x.numel() // k if k else 0, groups)
    _group_quant_op(x, q, scales, int(group_size), float(eps), bool(use_ue8m0))
    return q, scales
