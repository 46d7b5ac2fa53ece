"""block_scaled_mm baselines: torch_eager / torch_compile (dequantize to bf16 + matmul) and
torch_native (torch._scaled_mm with 1x128 / 128x128 blockwise scales, CUDA 12.9+ on sm90)."""
from __future__ import annotations

import functools

from solbench.core import fp8_blocks
from solbench.core.baselines import register_torch_baselines
from solbench.core.spec import Impl, Support, add_impl


def _groups(a, b, a_scales, b_scales):
    k, n = a.shape[1], b.shape[0]
    return -(-n // b_scales.shape[0]), -(-k // a_scales.shape[1])


def eager(a, b, a_scales, b_scales):
    """Dequantize both operands to bf16 (scales applied per block), bf16 matmul, fp32 result."""
    import torch

    gn, gk = _groups(a, b, a_scales, b_scales)
    ad = fp8_blocks.dequantize(a, a_scales, (1, gk), torch.bfloat16)
    bd = fp8_blocks.dequantize(b, b_scales, (gn, gk), torch.bfloat16)
    return (ad @ bd.T).to(torch.float32)


def native(a, b, a_scales, b_scales):
    """torch._scaled_mm with BlockWise1x128 scales for a and BlockWise128x128 for b. Both scale
    tensors must be outer-dim-major (stride(0) == 1), b column-major ([K, N] view of b [N, K]);
    the blockwise path emits bf16, widened to the fp32 output."""
    import torch

    sa = a_scales.t().contiguous().t()
    sb = b_scales.t()  # [K/128, N/128], stride(0) == 1 for a contiguous [N/128, K/128]
    out = torch._scaled_mm(a, b.t(), scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)
    return out.to(torch.float32)


@functools.lru_cache(maxsize=None)
def _native_probe() -> Support:
    import torch

    if not hasattr(torch, "_scaled_mm"):
        return Support.no(f"torch {torch.__version__} has no torch._scaled_mm")
    if not torch.cuda.is_available():
        return Support.no("torch._scaled_mm runs on CUDA only (fp8 tensor cores, sm89+)")
    # Blockwise scaling depends on the torch build (CUTLASS path, CUDA 12.9+) and the GPU: run a
    # small product once and compare it with the dequantized fp32 product.
    try:
        g = torch.Generator(device="cuda")
        g.manual_seed(0)
        a, sa = fp8_blocks.random_blocks((256, 512), (1, 128), "cuda", g)
        b, sb = fp8_blocks.random_blocks((256, 512), (128, 128), "cuda", g, scale=512 ** -0.5)
        got = native(a, b, sa, sb)
        ref = fp8_blocks.dequantize(a, sa, (1, 128)) @ fp8_blocks.dequantize(b, sb, (128, 128)).T
        err = float((got - ref).norm() / ref.norm())
    except Exception as e:  # noqa: BLE001 - the reason is what the report shows
        return Support.no(f"torch._scaled_mm has no blockwise (1x128, 128x128) path here: "
                          f"{type(e).__name__}: {str(e)[:160]}")
    if not err < 1e-2:
        return Support.no(f"torch._scaled_mm blockwise probe disagrees with the dequantized product "
                          f"(relative error {err:.3g})")
    return Support.yes()


def _native_supports(shape, device) -> Support:
    from solbench.ops.block_scaled_mm.spec import mm_dims

    m, n, k, gn, gk = mm_dims(shape)
    if (gn, gk) != (128, 128):
        return Support.no(f"torch._scaled_mm blockwise scaling is fixed to 128 groups (got {gn}x{gk})")
    if n % 128 or k % 128:
        return Support.no(f"torch._scaled_mm blockwise scaling needs N and K multiples of 128 (got {n}, {k})")
    return Support.yes()


register_torch_baselines("block_scaled_mm", eager, "dequantize to bf16 + bf16 matmul, fp32 out")
add_impl(Impl("block_scaled_mm", "torch_native", native, available=_native_probe, supports=_native_supports,
              baseline=True, description="torch._scaled_mm blockwise 1x128 / 128x128 (bf16 out, widened)"))
