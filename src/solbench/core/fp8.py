"""FP8 (e4m3) quantization mechanics shared by the fp8 operators (fp8_dynamic_per_token_quant,
fused_rmsnorm_quant, per_token_group_quant_fp8): constants, scale conventions, torch references,
dequantized comparison views for the checker, scale checks, and ``@triton.jit`` helpers.

Format. We target NVIDIA's ``float8_e4m3fn`` (``torch.float8_e4m3fn``, Triton ``float8e4nv``):
1 sign, 4 exponent (bias 7), 3 mantissa bits, no infinities, largest finite value **448**,
smallest normal 2^-6, subnormals in steps of 2^-9. ROCm MI300 uses ``float8_e4m3fnuz`` (bias 8,
largest 240; aiter reads it from ``torch.finfo(dtype).max``, vLLM clamps fnuz to 224); the aiter
operators in the catalog are measured here with the e4m3fn format and its 448, which is what
aiter itself uses on e4m3fn hardware (gfx950) and what vLLM uses on NVIDIA.

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
activation-like data, one fp8 step each, RMS-relative 2e-3 after dequantization), which the
dequantized tolerance accepts and a wrong rounding mode does not.

Checking. fp8 outputs are compared after dequantization (``q * scale``), through lazy row
chunks so that outputs of several GB are never widened to float64 at once
(:func:`dequant_views`); scales are checked separately and tightly (:func:`check_scales`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator, Sequence

from solbench.core.spec import OpSpec, Tolerance

#: Largest finite float8_e4m3fn value (the quantization range is [-448, 448]).
FP8_E4M3FN_MAX = 448.0
#: Largest finite float8_e4m3fnuz value (ROCm MI300); documented, not used by our kernels.
FP8_E4M3FNUZ_MAX = 240.0
#: Smallest normal and smallest subnormal e4m3fn magnitudes.
FP8_E4M3FN_MIN_NORMAL = 2.0 ** -6
FP8_E4M3FN_MIN_SUBNORMAL = 2.0 ** -9
#: vLLM's per_token_group_quant_fp8 ``eps`` (the floor of the group max-abs).
GROUP_EPS = 1e-10

#: Scales of a correct implementation are the reference's up to fp32 rounding of the statistics
#: (sum-of-squares order, rsqrt); 1e-5 is ~100 fp32 ulps and far below one fp8 step (2^-4).
SCALE_RTOL = 1e-5

#: Dequantized fp8 values: two correct implementations may land one fp8 step apart where the
#: pre-rounding value is within float noise of a midpoint (a step is 2^-3 of the value at the
#: bottom of a binade, hence rtol 0.125); such flips are rare, so the RMS-relative error of a
#: correct output stays far below 1e-2, while a wrong rounding mode (truncation, ties away)
#: flips a large share of elements and fails it. atol covers steps in the subnormal range.
DEQUANT_TOLERANCE = Tolerance(atol=2e-2, rtol=0.125, rms_rtol=1e-2)

#: Elements per comparison chunk (float64 copies of one chunk stay around 1 GB).
CHECK_CHUNK_ELEMS = 1 << 25


def fp8_dtype():
    import torch

    return torch.float8_e4m3fn


# ---- torch references (fp32 math, one rounding to fp8) ------------------------------------------
def ue8m0_ceil(scale):
    """Smallest power of two >= ``scale`` (fp32, exact on the bits; 0 stays 0)."""
    import torch

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
    import torch

    a = amax.float().clamp_min(float(min_amax))
    s = torch.div(a, torch.full_like(a, FP8_E4M3FN_MAX))
    return ue8m0_ceil(s) if ue8m0 else s


def quantize(v, scale, reciprocal: bool = False):
    """``fp8(clamp(v / scale, -448, 448))`` (round to nearest even), 0 where ``scale == 0``.
    ``v`` is fp32; ``scale`` broadcasts against it. ``reciprocal``: multiply by the fp32
    ``1 / scale`` instead of dividing (aiter's formulation; it differs from the division only
    where ``v / scale`` is exactly a rounding midpoint, about 5e-4 of the elements)."""
    import torch

    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = v * torch.where(scale > 0, torch.div(torch.ones_like(safe), safe), torch.zeros_like(safe)) if reciprocal else \
        torch.where(scale > 0, v / safe, torch.zeros_like(v))
    return q.clamp(-FP8_E4M3FN_MAX, FP8_E4M3FN_MAX).to(fp8_dtype())


def row_chunks(rows: int, n: int, max_elems: int = CHECK_CHUNK_ELEMS) -> list[slice]:
    """Row slices of at most ``max_elems`` elements (at least one row each)."""
    step = max(1, int(max_elems) // max(1, int(n)))
    return [slice(r, min(rows, r + step)) for r in range(0, rows, step)] or [slice(0, 0)]


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
    import torch

    k = int(x.shape[-1])
    if k % group_size:
        raise ValueError(f"last dim {k} is not divisible by group_size {group_size}")
    groups = k // group_size
    x2 = x.reshape(-1, k)
    rows = x2.shape[0]
    q = torch.empty((rows, k), dtype=fp8_dtype(), device=x.device)
    s = torch.empty((rows, groups), dtype=torch.float32, device=x.device)
    for sl in row_chunks(rows, k):
        xg = x2[sl].float().view(-1, groups, group_size)
        sc = scale_from_amax(xg.abs().amax(dim=-1), eps, ue8m0)
        q[sl] = quantize(xg, sc[..., None], reciprocal).view(-1, k)
        s[sl] = sc
    return q.view(x.shape), s.view(*x.shape[:-1], groups)


def dequantize(q, scale, group_size: int | None = None):
    """``q * scale`` in fp32; ``scale`` is ``[..., 1]`` (per token) or ``[..., K // group_size]``."""
    qf = q.float()
    if group_size is None:
        return qf * scale.float()
    k = q.shape[-1]
    return (qf.reshape(*q.shape[:-1], k // group_size, group_size) * scale.float()[..., None]).reshape(q.shape)


# ---- checker support ---------------------------------------------------------------------------
class _LazyViews(Mapping):
    """``{key: fp32 tensor}`` computed on access, one row chunk per key, so the checker (which
    widens what it compares to float64) never holds more than one chunk of a huge output."""

    def __init__(self, items: Sequence[tuple[str, Any]]):
        self._items = dict(items)

    def __getitem__(self, key: str):
        return self._items[key]()

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def _rows2d(t):
    n = int(t.shape[-1]) if t.dim() else 1
    return t.reshape(-1, n)


def dequant_views(got: Mapping, ref: Mapping, fp8: Mapping[str, tuple[str, int | None]],
                  passthrough: Sequence[str] = (), max_elems: int = CHECK_CHUNK_ELEMS):
    """(got_view, ref_view) for :meth:`OpSpec.compare_views`.

    ``fp8`` maps each fp8 output name to ``(scale output name, group_size or None)``; those are
    dequantized with their own scales. ``passthrough`` outputs are compared as they are. Scale
    outputs are left out (check them with :func:`check_scales`). Tensors with more than
    ``max_elems`` elements are split into row chunks named ``"name[rows a:b]"``.
    """
    if any(n in ref and (n not in got or not hasattr(got[n], "shape") or tuple(got[n].shape) != tuple(ref[n].shape))
           for n in [*fp8, *(s for s, _ in fp8.values()), *passthrough]):
        return got, ref  # let the checker report the missing output or the shape mismatch
    got_items, ref_items = [], []

    def chunked(name, n_rows, n_cols):
        slices = row_chunks(n_rows, n_cols, max_elems)
        return [(name if len(slices) == 1 else f"{name}[rows {sl.start}:{sl.stop}]", sl) for sl in slices]

    for name, (scale_name, group) in fp8.items():
        rq = ref[name]
        n = int(rq.shape[-1])
        rows = rq.numel() // max(1, n)
        for key, sl in chunked(name, rows, n):
            got_items.append((key, _dequant_thunk(got, name, scale_name, group, sl)))
            ref_items.append((key, _dequant_thunk(ref, name, scale_name, group, sl)))
    for name in passthrough:
        r = ref[name]
        n = int(r.shape[-1]) if r.dim() else 1
        for key, sl in chunked(name, r.numel() // max(1, n), n):
            got_items.append((key, _slice_thunk(got, name, sl)))
            ref_items.append((key, _slice_thunk(ref, name, sl)))
    return _LazyViews(got_items), _LazyViews(ref_items)


def _dequant_thunk(out: Mapping, name: str, scale_name: str, group: int | None, sl: slice):
    def thunk():
        q2 = _rows2d(out[name])
        # [rows, 1] per token, [rows, groups] per group; reshape copies column-major scales.
        s2 = out[scale_name].reshape(q2.shape[0], -1)
        return dequantize(q2[sl], s2[sl], group)
    return thunk


def _slice_thunk(out: Mapping, name: str, sl: slice):
    def thunk():
        return _rows2d(out[name])[sl]
    return thunk


def check_scales(name: str, got, ref, rtol: float = SCALE_RTOL) -> list[str]:
    """Errors (empty when fine) comparing a scale output to the reference scales:
    same shape, finite, and ``|got - ref| <= rtol * |ref|`` (exact where ref is 0)."""
    import torch

    if not isinstance(got, torch.Tensor):
        return [f"{name}: expected a tensor, got {type(got).__name__}"]
    if tuple(got.shape) != tuple(ref.shape):
        return [f"{name}: shape {tuple(got.shape)}, expected {tuple(ref.shape)}"]
    if got.numel() == 0:
        return []
    g = got.detach().double()
    r = ref.detach().double()
    bad_nf = ~torch.isfinite(g)
    if bool(bad_nf.any()):
        i = int(bad_nf.flatten().nonzero()[0])
        return [f"{name}: {int(bad_nf.sum())} of {g.numel()} scales are NaN/Inf (first at flat index {i}; unwritten?)"]
    err = (g - r).abs()
    over = err > rtol * r.abs()
    n_over = int(over.sum())
    if n_over:
        i = int((err / r.abs().clamp_min(1e-30)).flatten().argmax())
        return [f"{name}: {n_over} of {g.numel()} scales differ from the reference by more than rtol={rtol:g}; "
                f"worst at flat index {i}: got {float(g.flatten()[i]):.9g}, expected {float(r.flatten()[i]):.9g}"]
    return []


# ---- inputs -------------------------------------------------------------------------------------
def activation_like(shape: Sequence[int], dtype, device, gen, outlier_channels: float = 0.01):
    """An LLM-activation-like ``[T, K]`` tensor: normal values times a per-token magnitude
    (log-uniform in [1/4, 8]) times a per-channel magnitude (log-uniform in [1/2, 2], with about
    ``outlier_channels`` of the channels 8x larger, as real activations have). Scales then differ
    between tokens and between groups of one token. Generated in row chunks on ``device`` so
    that multi-GB inputs never exist as fp32."""
    import torch

    t, k = int(shape[0]), int(shape[1])
    tok = torch.exp2(torch.rand((t, 1), generator=gen, device=device) * 5.0 - 2.0)
    chan = torch.exp2(torch.rand((1, k), generator=gen, device=device) * 2.0 - 1.0)
    outl = torch.rand((1, k), generator=gen, device=device) < outlier_channels
    chan = torch.where(outl, chan * 8.0, chan)
    out = torch.empty((t, k), dtype=dtype, device=device)
    for sl in row_chunks(t, k, 1 << 24):
        z = torch.randn((sl.stop - sl.start, k), generator=gen, device=device)
        out[sl] = (z * tok[sl] * chan).to(dtype)
    return out


# ---- @triton.jit helpers ------------------------------------------------------------------------
#: Defined in core/fp8_jit.py and imported on first use (``from solbench.core.fp8 import ...`` works
#: as before): decorating them here would fix interpreter-or-GPU before the CLI has chosen.
_JIT_HELPERS = ("fp8e4m3_bits", "scale_and_inverse", "quantize_bits")


def __getattr__(name: str):
    if name in _JIT_HELPERS:
        from solbench.core import fp8_jit

        return getattr(fp8_jit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- a base for the fp8 operator specs ------------------------------------------------------------
class Fp8QuantSpec(OpSpec):
    """Checker hooks shared by the fp8 quantization operators.

    ``fp8_outputs`` maps each fp8 output to ``(its scale output, group_size or None)``;
    ``extra_outputs`` are other outputs compared as they are (e.g. a bf16 residual). fp8 values
    are compared after dequantization with :data:`DEQUANT_TOLERANCE`; each scale output is
    checked against the reference scales with ``scale_rtol``.
    """

    dtype = "fp8_e4m3"
    fp8_outputs: Mapping[str, tuple[str, int | None]] = {}
    extra_outputs: Sequence[str] = ()
    scale_rtol: float = SCALE_RTOL

    def group_size_of(self, shape) -> int | None:
        return None

    def _fp8_map(self, shape):
        return {q: (s, self.group_size_of(shape) if g == "group" else g) for q, (s, g) in self.fp8_outputs.items()}

    def tolerance(self, shape) -> Tolerance:
        return DEQUANT_TOLERANCE

    def check_invariants(self, shape, inputs, got, ref) -> list[str]:
        errors: list[str] = []
        for _, (scale_name, _) in self.fp8_outputs.items():
            if scale_name in got:
                errors += check_scales(scale_name, got[scale_name], ref[scale_name], self.scale_rtol)
        return errors

    def compare_views(self, shape, inputs, got, ref):
        return dequant_views(got, ref, self._fp8_map(shape), self.extra_outputs)
