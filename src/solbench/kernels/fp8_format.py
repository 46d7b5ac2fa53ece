"""FP8 (e4m3fn) quantization as data: the format, the scale conventions and the torch formulations
that the library's kernels (:mod:`solbench.kernels.fp8_quant`) compute off CUDA and the benchmark's
references use.

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
