"""Public API: ``per_token_group_quant_fp8(x, group_size=128, ...)`` -> ``(q, scales)``, following
vLLM's ``per_token_group_quant_fp8`` (vllm/model_executor/layers/quantization/utils/fp8_utils.py).

Per group of ``group_size`` consecutive elements of a row of ``x[..., K]``:
``scale = max(max|x_group|, eps) / 448`` (``use_ue8m0``: rounded up to a power of two),
``q = fp8_e4m3fn(clamp(x / scale, -448, 448))``. Scales are fp32 ``[..., K // group_size]``,
row-major by default, column-major with ``column_major_scales`` (2-D ``x``; the tensor is a
transposed ``[G, M]`` buffer, as DeepGEMM reads it; ``tma_aligned_scales`` pads M to a multiple
of 4 like vLLM), or any layout passed in ``out``.

Custom ops ``torch.ops.solbench.per_token_group_quant_fp8`` (functional, row-major scales) and
``per_token_group_quant_fp8.out`` (any scales layout), with fake implementations; off CUDA they
compute with torch (dividing by the scale, as vLLM's reference does).
"""
from __future__ import annotations

import torch

from solbench.core.fp8 import GROUP_EPS, fp8_dtype, quantize_per_group
from solbench.kernels.common import as_rows, check_disjoint, check_out, functional_op, kernel_op
from solbench.kernels.rowwise import rows_of

_WHAT = "per_token_group_quant_fp8"


def _eager(x, q, scales, group_size, eps, ue8m0) -> None:
    check_disjoint(_WHAT, (("q", q), ("scales", scales)), (("x", x),))
    k = x.shape[-1]
    qq, ss = quantize_per_group(as_rows(x, _WHAT), group_size, eps, ue8m0)
    as_rows(q, _WHAT, "q").copy_(qq)
    _scales_2d(scales, qq.shape[0], k // group_size).copy_(ss)


@kernel_op("solbench::per_token_group_quant_fp8.out", mutates_args=("q", "scales"), eager=_eager)
def _group_quant_op(x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor, group_size: int, eps: float,
                    ue8m0: bool) -> None:
    from solbench.ops.per_token_group_quant_fp8.triton import launch_group_quant

    check_disjoint(_WHAT, (("q", q), ("scales", scales)), (("x", x),))
    k = x.shape[-1]
    x2 = as_rows(x, _WHAT)
    launch_group_quant(x2, as_rows(q, _WHAT, "q"), _scales_2d(scales, x2.shape[0], k // group_size),
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
        raise ValueError(f"{_WHAT}: scales with shape {tuple(scales.shape)} and strides {scales.stride()} "
                         "cannot be viewed as [rows, groups]; use row-major scales or a 2-D x") from None


def _alloc_scales(x, groups: int, column_major: bool, tma_aligned: bool):
    if not column_major:
        return torch.empty((*x.shape[:-1], groups), dtype=torch.float32, device=x.device)
    if x.dim() != 2:
        raise ValueError(f"{_WHAT}: column_major_scales needs a 2-D x, got shape {tuple(x.shape)}")
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
    _, k = rows_of(x, _WHAT)
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"{_WHAT}: group_size must be a positive int, got {group_size!r}")
    if k % group_size:
        raise ValueError(f"{_WHAT}: the last dimension of x ({k}) must be divisible by group_size ({group_size})")
    from solbench.ops.per_token_group_quant_fp8.triton import max_group_size

    if group_size > max_group_size():
        raise ValueError(f"{_WHAT}: group_size {group_size} is not supported (supported: up to {max_group_size()})")
    if not (eps > 0.0):
        raise ValueError(f"{_WHAT}: eps must be > 0, got {eps}")
    groups = k // group_size
    if out is None:
        q = torch.empty(x.shape, dtype=fp8_dtype(), device=x.device)
        scales = _alloc_scales(x, groups, column_major_scales, tma_aligned_scales)
    else:
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError(f"{_WHAT}: out must be a pair (q, scales)")
        q, scales = out
        for name, t in (("q", q), ("scales", scales)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{_WHAT}: out {name} must be a torch.Tensor, got {type(t).__name__}")
        check_out(q, x.shape, fp8_dtype(), x.device, _WHAT, "out q")
        check_out(scales, (*x.shape[:-1], groups), torch.float32, x.device, _WHAT, "out scales")
    as_rows(q, _WHAT, "q")
    _scales_2d(scales, x.numel() // k if k else 0, groups)
    _group_quant_op(x, q, scales, int(group_size), float(eps), bool(use_ue8m0))
    return q, scales
