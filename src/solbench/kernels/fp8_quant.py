"""FP8 (e4m3fn) quantization of activations, one pass over HBM each, with its Triton kernels in
``_fp8_quant_triton`` (imported at the first launch):

* :func:`dynamic_per_token_quant_fp8` (aiter ``dynamic_per_token_scaled_quant``): one scale per row;
* :func:`rms_norm_quant`, :func:`fused_add_rms_norm_quant` (aiter ``rmsnorm2d_fwd_with_dynamicquant``,
  ``rmsnorm2d_fwd_with_add_dynamicquant``): (residual add +) RMSNorm, then per-row quantization;
* :func:`per_token_group_quant_fp8` (vLLM ``per_token_group_quant_fp8``): one scale per group.

Each is a custom op ``torch.ops.solbench.<name>`` (functional) with its ``.out`` form, with a fake
implementation; off CUDA they compute with the torch formulations below, which the benchmark's
references use too.

Format. NVIDIA's ``float8_e4m3fn`` (``torch.float8_e4m3fn``, Triton ``float8e4nv``): 1 sign, 4
exponent (bias 7), 3 mantissa bits, no infinities, largest finite value **448**, smallest normal
2^-6, subnormals in steps of 2^-9. ROCm MI300 uses ``float8_e4m3fnuz`` (bias 8, largest 240; aiter
reads it from ``torch.finfo(dtype).max``, vLLM clamps fnuz to 224); the aiter operators in the
catalog are measured here with the e4m3fn format and its 448, which is what aiter itself uses on
e4m3fn hardware (gfx950) and what vLLM uses on NVIDIA.

Scale conventions (``x ~= q * scale``, one fp32 scale per token or per group):

* ``scale = max(amax, min_amax) / 448`` where ``amax`` is the max-abs of the token (group);
  ``min_amax`` is 1e-10 for vLLM's group quant (its ``eps``) and for aiter's per-token quant
  (zero rows get a finite, positive scale), 0 for aiter's fused RMSNorm quant (a zero row stores
  scale 0 and quantizes to 0);
* ``q = fp8_rne(clamp(x / scale, -448, 448))`` (0 where ``scale == 0``);
* UE8M0 (vLLM ``use_ue8m0``, DeepGEMM on Blackwell): the scale is rounded *up* to a power of two,
  ``2^ceil(log2(scale))``, so it fits an 8-bit exponent. Computed exactly on the fp32 bits here;
  vLLM evaluates ``exp2(ceil(log2(s)))`` in fp32, which can differ only when ``s`` lies within
  one fp32 ulp above a power of two.

Kernels compute the scale with a correctly rounded division and quantize by multiplying with
the correctly rounded ``1 / scale`` (one reciprocal per row or group), which is exactly aiter's
formulation (``x * (1 / scale)``), so the per-token references do the same and our kernels match
them bit for bit. vLLM's group quantization divides (``x / scale``); the two differ only where
``x / scale`` is exactly a midpoint between two fp8 values (about 5e-4 of the elements of
activation-like data, one fp8 step each, RMS-relative 2e-3 after dequantization).
"""
from __future__ import annotations

import torch

from solbench.kernels.common import as_rows, check_disjoint, check_out, functional_op, kernel_op
from solbench.kernels.eager import rms_normalize
from solbench.kernels.rowwise import check_param, check_residual, output_like, rows_of

#: Largest finite float8_e4m3fn value (the quantization range is [-448, 448]).
FP8_E4M3FN_MAX = 448.0
#: vLLM's per_token_group_quant_fp8 ``eps`` (the floor of the group max-abs).
GROUP_EPS = 1e-10
#: aiter's floor of a row's max-abs: an all-zero row gets a finite, positive scale.
MIN_AMAX = 1e-10
#: Rows of the torch formulations are quantized in chunks of about this many elements, so a
#: multi-GB input never exists as fp32 at once.
_CHUNK_ELEMS = 1 << 25


def fp8_dtype():
    return torch.float8_e4m3fn


# ---- torch formulations (fp32 math, one rounding to fp8) ---------------------------------------
def ue8m0_ceil(scale):
    """Smallest power of two >= ``scale`` (fp32, exact on the bits; 0 stays 0)."""
    s = scale.float().contiguous()
    bits = s.view(torch.int32)
    # Adding 0x7FFFFF carries into the exponent exactly when some mantissa bit is set.
    up = ((bits + 0x7FFFFF) & 0x7F800000).view(torch.float32)
    return torch.where(s > 0, up, s)


def scale_from_amax(amax, min_amax: float = 0.0, ue8m0: bool = False):
    """``max(amax, min_amax) / 448`` in fp32, correctly rounded on every device, rounded up to a
    power of two when ``ue8m0``.

    The divisor is a tensor on purpose: torch's CUDA division by a Python scalar multiplies by the
    scalar's fp32 reciprocal (``1/448`` is inexact), which moves some scales by one ulp from the
    CPU's result and, through ``1 / scale``, flips midpoint roundings of the quantized values. The
    reference would then depend on the device it runs on; it must not."""
    a = amax.float().clamp_min(float(min_amax))
    s = torch.div(a, torch.full_like(a, FP8_E4M3FN_MAX))
    return ue8m0_ceil(s) if ue8m0 else s


def quantize(v, scale, reciprocal: bool = False):
    """``fp8(clamp(v / scale, -448, 448))`` (round to nearest even), 0 where ``scale == 0``.
    ``v`` is fp32; ``scale`` broadcasts against it. ``reciprocal``: multiply by the fp32
    ``1 / scale`` instead of dividing (aiter's formulation; it differs from the division only
    where ``v / scale`` is exactly a rounding midpoint, about 5e-4 of the elements)."""
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = v * torch.where(scale > 0, torch.div(torch.ones_like(safe), safe), torch.zeros_like(safe)) if reciprocal else \
        torch.where(scale > 0, v / safe, torch.zeros_like(v))
    return q.clamp(-FP8_E4M3FN_MAX, FP8_E4M3FN_MAX).to(fp8_dtype())


def quantize_per_token(v2d, min_amax: float = 0.0, reciprocal: bool = True):
    """Per-row dynamic quantization of an fp32 ``[rows, n]`` tensor: ``(q, scale[rows, 1])``,
    by default with aiter's reciprocal multiply (see :func:`quantize`)."""
    amax = v2d.abs().amax(dim=-1, keepdim=True) if v2d.shape[-1] else v2d.new_zeros((v2d.shape[0], 1))
    scale = scale_from_amax(amax, min_amax)
    return quantize(v2d, scale, reciprocal), scale


def quantize_per_group(x, group_size: int, eps: float = GROUP_EPS, ue8m0: bool = False,
                       reciprocal: bool = False):
    """vLLM ``per_token_group_quant_fp8`` semantics on ``x[..., K]`` (K divisible by
    ``group_size``): per group of ``group_size`` consecutive elements of a row,
    ``scale = max(amax, eps) / 448`` (UE8M0: rounded up to a power of two) and
    ``q = fp8(clamp(x / scale))``. Returns ``(q[..., K], scales[..., K // group_size])``
    (row-major). vLLM divides (its CUDA kernel computes ``val / y_s``); ``reciprocal`` multiplies
    by ``1 / scale`` as our kernel does (see :func:`quantize`). Processed in row chunks so that no fp32 copy of a multi-GB input is made."""
    k = int(x.shape[-1])
    if k % group_size:
        raise ValueError(f"last dim {k} is not divisible by group_size {group_size}")
    groups = k // group_size
    x2 = x.reshape(-1, k)
    rows = x2.shape[0]
    q = torch.empty((rows, k), dtype=fp8_dtype(), device=x.device)
    s = torch.empty((rows, groups), dtype=torch.float32, device=x.device)
    step = max(1, _CHUNK_ELEMS // max(1, k))
    for r0 in range(0, rows, step):
        sl = slice(r0, min(rows, r0 + step))
        xg = x2[sl].float().view(-1, groups, group_size)
        sc = scale_from_amax(xg.abs().amax(dim=-1), eps, ue8m0)
        q[sl] = quantize(xg, sc[..., None], reciprocal).view(-1, k)
        s[sl] = sc
    return q.view(x.shape), s.view(*x.shape[:-1], groups)


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
