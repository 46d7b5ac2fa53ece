"""block_scaled_mm implementations: ours_triton (kernels/gemm), torch_eager / torch_compile
(dequantize to bf16 + matmul) and torch_native (F.scaled_mm or torch._scaled_mm with 1x128 /
128x128 blockwise scales, CUDA 12.9+ builds on sm90), and flag-gems' Triton W8A8 block-fp8 GEMM where it
imports. The variant block_scaled_mm_per_tensor has
torch._scaled_mm's per-tensor form: the upper reference for fp8 tensor-core speed without block
scales."""
from __future__ import annotations

import functools

from solbench.core import fp8_blocks
from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, Support, add_impl
from solbench.ops._cuda_support import sm90_cuda_support
from solbench.peers import FLAG_GEMS


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


def ours(a, b, a_scales, b_scales, out=None):
    from solbench.kernels.gemm import block_scaled_mm

    return block_scaled_mm(a, b, a_scales, b_scales, _groups(a, b, a_scales, b_scales), out=out)


def _ours_supports(shape, device) -> Support:
    from solbench.kernels.gemm.block_fp8 import GROUP_K_SUPPORTED
    from solbench.ops.block_scaled_mm.spec import mm_dims

    gk = mm_dims(shape)[4]
    if gk not in GROUP_K_SUPPORTED:
        return Support.no(f"our kernel takes group_k in {GROUP_K_SUPPORTED} (one K step per scale group; got {gk})")
    return Support.yes()


def _native_v2(a, b, sa, sb):
    import torch
    import torch.nn.functional as F

    return F.scaled_mm(a, b, sa, F.ScalingType.BlockWise1x128, sb, F.ScalingType.BlockWise128x128,
                       output_dtype=torch.bfloat16)


def _native_v1(a, b, sa, sb):
    import torch

    return torch._scaled_mm(a, b, scale_a=sa, scale_b=sb, out_dtype=torch.bfloat16)


# Which entry point runs blockwise scaling on this build: F.scaled_mm (explicit scale recipes,
# torch >= 2.10) or torch._scaled_mm (recipe inferred from the scale shapes). Set by the probe.
_ROUTES = {"F.scaled_mm": _native_v2, "torch._scaled_mm": _native_v1}
_route: list = []


def native(a, b, a_scales, b_scales):
    """Blockwise fp8 GEMM in PyTorch: BlockWise1x128 scales for a, BlockWise128x128 for b. Both scale
    tensors must be outer-dim-major (stride(0) == 1) and b column-major ([K, N] view of b [N, K]);
    the blockwise path emits bf16, widened to the fp32 output."""
    import torch

    sa = a_scales.t().contiguous().t()
    # [K/128, N/128], stride(0) == 1 for a contiguous [N/128, K/128]. torch's own tests pad the K
    # blocks to a multiple of 4 for cuBLASLt; every catalog K (2048, 4096) has 16 or 32 already,
    # and torch 2.11 on the H100 took 2 (the row probe's K = 256) unpadded.
    sb = b_scales.t()
    fn = _route[0] if _route else _native_v1
    return fn(a, b.t(), sa, sb).to(torch.float32)


def _scaled_mm_missing() -> Support | None:
    """Why torch._scaled_mm cannot run here at all, or None."""
    import torch

    if not hasattr(torch, "_scaled_mm"):
        return Support.no(f"torch {torch.__version__} has no torch._scaled_mm")
    if not torch.cuda.is_available():
        return Support.no("torch._scaled_mm runs on CUDA only (fp8 tensor cores, sm89+)")
    return None


def _first_that_agrees(choices, select, run, ref, label: str, against: str) -> Support:
    """Probe torch entry points: for each choice, ``select(choice)`` sets it up (or returns why it
    cannot run), ``run()`` computes the small product, compared with ``ref``. Yes for the first
    within 1% (relative norm), else No with every choice's reason (``label`` prefixes each)."""
    why = []
    for choice in choices:
        skip = select(choice)
        if skip:
            why.append(f"{label}{choice}: {skip}")
            continue
        try:
            err = float((run() - ref).norm() / ref.norm())
        except Exception as e:  # noqa: BLE001 - the reason is what the report shows
            why.append(f"{label}{choice}: {type(e).__name__}: {str(e)[:120]}")
            continue
        if err < 1e-2:
            return Support.yes()
        why.append(f"{label}{choice}: disagrees with {against} (relative error {err:.3g})")
    return Support.no("; ".join(why))


@functools.lru_cache(maxsize=None)
def _native_probe() -> Support:
    import torch

    missing = _scaled_mm_missing()
    if missing is not None:
        return missing
    # Blockwise scaling depends on the torch build (CUTLASS path, CUDA 12.9+) and the GPU: run a
    # small product through each entry point and compare it with the dequantized fp32 product.
    g = torch.Generator(device="cuda")
    g.manual_seed(0)
    a, sa = fp8_blocks.random_blocks((256, 512), (1, 128), "cuda", g)
    b, sb = fp8_blocks.random_blocks((256, 512), (128, 128), "cuda", g, scale=512 ** -0.5)
    ref = fp8_blocks.dequantize(a, sa, (1, 128)) @ fp8_blocks.dequantize(b, sb, (128, 128)).T
    def route(name):
        if name == "F.scaled_mm" and not hasattr(torch.nn.functional, "scaled_mm"):
            return f"not in torch {torch.__version__}"
        _route[:] = [_ROUTES[name]]
        return None

    found = _first_that_agrees(_ROUTES, route, lambda: native(a, b, sa, sb), ref, "", "the dequantized product")
    if found.ok:
        return found
    _route.clear()
    return Support.no("no blockwise (1x128, 128x128) fp8 GEMM in this torch: " + found.reason)


def _native_supports(shape, device) -> Support:
    from solbench.ops.block_scaled_mm.spec import mm_dims

    m, n, k, gn, gk = mm_dims(shape)
    if (gn, gk) != (128, 128):
        return Support.no(f"torch._scaled_mm blockwise scaling is fixed to 128 groups (got {gn}x{gk})")
    if n % 128 or k % 128:
        return Support.no(f"torch._scaled_mm blockwise scaling needs N and K multiples of 128 (got {n}, {k})")
    return _rows_probe(m % 16, str(device))


@functools.lru_cache(maxsize=None)
def _rows_probe(m_mod_16: int, device: str) -> Support:
    """cuBLASLt refuses some row counts for blockwise scales (on the H100 with torch 2.11 every M
    that is not a multiple of 16 gave CUBLAS_STATUS_NOT_SUPPORTED). Whether it does depends on the
    build, so ask it: a small product with the same M mod 16 decides, once per residue."""
    import torch

    if not torch.cuda.is_available() or not _native_probe():
        return Support.yes()  # the availability probe already gives the reason
    g = torch.Generator(device=device)
    g.manual_seed(0)
    m = 128 + m_mod_16
    a, sa = fp8_blocks.random_blocks((m, 256), (1, 128), device, g)
    # N = 256 as in the availability probe: with a single 128-column block of b (N = 128) the
    # blockwise scale shapes are ambiguous and torch 2.11 asks for another recipe's layout.
    b, sb = fp8_blocks.random_blocks((256, 256), (128, 128), device, g, scale=256 ** -0.5)
    try:
        native(a, b, sa, sb)
        torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001 - RuntimeError from cuBLASLt, ValueError from scale checks
        first = str(e).strip().splitlines()[0][:160]
        return Support.no(f"this torch's blockwise fp8 GEMM refuses M = {m_mod_16} mod 16 ({first})")
    return Support.yes()


add_impl(Impl("block_scaled_mm", "ours_triton", ours, available=triton_support, supports=_ours_supports,
              takes_out=True, description="solbench Triton W8A8 block-fp8 GEMM (kernels/gemm)"))


def ours_cuda(a, b, a_scales, b_scales, out=None):
    from solbench.kernels.gemm import block_scaled_mm

    return block_scaled_mm(a, b, a_scales, b_scales, _groups(a, b, a_scales, b_scales), out=out, backend="cuda")


def _cuda_supports(shape, device) -> Support:
    from solbench.ops.block_scaled_mm.spec import mm_dims

    m, n, k, gn, gk = mm_dims(shape)
    if (gn, gk) != (128, 128):
        return Support.no(f"the CUDA kernel takes 128 x 128 scale groups (got {gn} x {gk})")
    if k % 16 or n % 2:
        return Support.no(f"the CUDA kernel needs K a multiple of 16 (TMA rows) and N even (got K {k}, N {n})")
    return Support.yes()


def _prepare_cuda(shape, inputs):
    # Compiles (or loads from the disk cache) at first use; the record keeps how long that took.
    from solbench.kernels.cuda import block_fp8 as cuda_block_fp8

    facts = cuda_block_fp8.prepare(inputs["a"].device)
    return {"compile_s": facts.get("jit_first_use_s"), **facts}


add_impl(Impl("block_scaled_mm", "ours_cuda", ours_cuda, available=sm90_cuda_support, supports=_cuda_supports,
              takes_out=True, prepare=_prepare_cuda,
              description="solbench CUDA W8A8 block-fp8 GEMM: sm_90a warpgroup MMAs with TMA loads, NVRTC at first use"))
register_torch_baselines("block_scaled_mm", eager, "dequantize to bf16 + bf16 matmul, fp32 out")
add_impl(Impl("block_scaled_mm", "torch_native", native, available=_native_probe, supports=_native_supports,
              baseline=True, description="F.scaled_mm / torch._scaled_mm blockwise 1x128 + 128x128 (bf16 out, widened)"))


# The top-level name: flag_gems swaps in its Hopper kernel there (flag_gems.ops keeps the generic one).
_FLAG_GEMS = ("flag_gems", "w8a8_block_fp8_matmul")


def flag_gems(a, b, a_scales, b_scales):
    """Same operand layouts as ours (a [M, K], b [N, K], a_scales [M, K/gk], b_scales [N/gn, K/gk]),
    fp32 written by the kernel itself."""
    import torch

    fn = FLAG_GEMS.get(*_FLAG_GEMS)
    return fn(a, b, a_scales, b_scales, list(_groups(a, b, a_scales, b_scales)), output_dtype=torch.float32)


def _flag_gems_supports(shape, device) -> Support:
    from solbench.ops.block_scaled_mm.spec import mm_dims

    gn, gk = mm_dims(shape)[3:]
    if any(g & (g - 1) or g < 16 for g in (gn, gk)):
        return Support.no(f"flag_gems tiles one scale group per block (BLOCK_N = group_n, BLOCK_K = group_k): "
                          f"powers of two >= 16 only (got {gn}x{gk})")
    return Support.yes()


add_impl(Impl("block_scaled_mm", "flag_gems", flag_gems, available=lambda: FLAG_GEMS.support(*_FLAG_GEMS),
              supports=_flag_gems_supports, baseline=True,
              description="flag_gems.w8a8_block_fp8_matmul (the Hopper variant on sm90), block_size [group_n, group_k], "
                          "output_dtype fp32; no layout change"))


# ---- the per-tensor upper reference (variant block_scaled_mm_per_tensor) -------------------------
_PER_TENSOR_OUT: list = []  # the out_dtype this torch takes for per-tensor fp8, set by the probe


def per_tensor(a, b, a_scale, b_scale):
    """torch._scaled_mm with one scale per operand (cuBLASLt's tensor-wise fp8 GEMM); fp32 out
    where this build gives it, else bf16 widened."""
    import torch

    dt = _PER_TENSOR_OUT[0] if _PER_TENSOR_OUT else torch.float32
    return torch._scaled_mm(a, b.t(), scale_a=a_scale, scale_b=b_scale, out_dtype=dt).to(torch.float32)


@functools.lru_cache(maxsize=None)
def _per_tensor_probe() -> Support:
    import torch

    missing = _scaled_mm_missing()
    if missing is not None:
        return missing
    a = torch.randn(64, 128, device="cuda").to(torch.float8_e4m3fn)
    b = torch.randn(64, 128, device="cuda").to(torch.float8_e4m3fn)
    one = torch.ones((), device="cuda")
    ref = a.float() @ b.float().T
    def out_dtype(dt):
        _PER_TENSOR_OUT[:] = [dt]
        return None

    found = _first_that_agrees((torch.float32, torch.bfloat16), out_dtype, lambda: per_tensor(a, b, one, one), ref,
                               "out ", "the fp32 product")
    if found.ok:
        return found
    _PER_TENSOR_OUT.clear()
    return Support.no("no per-tensor fp8 torch._scaled_mm here: " + found.reason)


def eager_per_tensor(a, b, a_scale, b_scale):
    """bf16 matmul of the fp8 payloads (exact in bf16), then both scales on the fp32 result."""
    import torch

    return (a.to(torch.bfloat16) @ b.to(torch.bfloat16).T).to(torch.float32) * (a_scale * b_scale)


register_torch_baselines("block_scaled_mm_per_tensor", eager_per_tensor, "bf16 matmul of the payloads, scaled")
add_impl(Impl("block_scaled_mm_per_tensor", "torch_native", per_tensor, available=_per_tensor_probe,
              baseline=True,
              description="upper reference, not the block-scaled contract: torch._scaled_mm per-tensor "
                          "(one scale per operand), fp8 tensor-core speed without block scales"))
