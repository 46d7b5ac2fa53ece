"""Shared assertions for the row-norm family's tests (rms_norm, fused_add_rms_norm,
fused_qk_rmsnorm, gated_rms_norm, l2_norm, layer_norm)."""
import torch

# Under TRITON_INTERPRET=1 the fp32 -> bf16 cast truncates instead of rounding to nearest, so
# bf16 results may be one ulp (2^-7 relative) off; on a GPU they are within half an ulp.
RTOL = {torch.bfloat16: 1e-2, torch.float16: 1.5e-3, torch.float32: 1e-5}


def assert_close(got, ref, scale: float = 1.0, roundings: int = 1):
    """Element-wise |got - ref| <= roundings * rtol * (|ref| + scale * 1e-2) for got's dtype
    (``roundings``: how many bf16 roundings, each up to an ulp, separate got from ref)."""
    assert got.shape == ref.shape and got.dtype == ref.dtype, (got.shape, ref.shape, got.dtype, ref.dtype)
    rtol = RTOL[got.dtype] * roundings
    g, r = got.double(), ref.double()
    bad = (g - r).abs() > rtol * (r.abs() + scale * 1e-2)
    assert not bad.any(), f"{int(bad.sum())} of {got.numel()} off; worst {float((g - r).abs().max()):.3g}"


def wide_rows(x, extra: int = 5):
    """The same values as ``x`` in rows ``extra`` elements longer than their length (a slice of
    a wider buffer: non-contiguous rows)."""
    from solbench.core.inputs import row_slice

    y = row_slice(x, extra)
    assert not y.is_contiguous() and torch.equal(y, x)
    return y
