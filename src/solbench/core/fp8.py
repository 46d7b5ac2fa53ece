"""Checking the fp8 (e4m3) quantization operators (fp8_dynamic_per_token_quant, fused_rmsnorm_quant,
per_token_group_quant_fp8): tolerances, dequantized comparison views, scale checks, activation-like
inputs and :class:`Fp8QuantSpec`, the base of their specs. The format, the scale conventions and
the torch formulations the references use are the library's (:mod:`solbench.kernels.fp8_format`).

fp8 outputs are compared after dequantization (``q * scale``), through lazy row chunks so that
outputs of several GB are never widened to float64 at once (:func:`dequant_views`); scales are
checked separately and tightly (:func:`check_scales`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterator, Sequence

from solbench.core.spec import OpSpec, Tolerance

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


def row_chunks(rows: int, n: int, max_elems: int = CHECK_CHUNK_ELEMS) -> list[slice]:
    """Row slices of at most ``max_elems`` elements (at least one row each)."""
    step = max(1, int(max_elems) // max(1, int(n)))
    return [slice(r, min(rows, r + step)) for r in range(0, rows, step)] or [slice(0, 0)]


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
