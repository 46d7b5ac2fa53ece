"""solbench's own ``ours_triton`` silu_and_mul, exported as a standalone candidate file.

It imports torch and triton only (not solbench): the same one-pass kernel as
``solbench/kernels/_glu_triton.py`` (each program owns a tile of rows x columns of the output,
reads the matching gate and up tiles once, computes in fp32, rounds once), reduced to the silu case.

    solbench eval examples/candidates/silu_and_mul_ours_triton.py --op silu_and_mul

On a GPU its records should match ``solbench run --ops silu_and_mul --impls ours_triton`` within
noise; on a CPU the kernel runs in Triton's interpreter and only correctness is checked.
"""
import os

import torch
import triton
import triton.language as tl

OP = "silu_and_mul"

# The tiles `solbench tune` measured for the GLU kernel, {gpu name: {d: (BLOCK_M, BLOCK_N, warps)}},
# copied from src/solbench/runtime/tuned/<gpu>.json so that this file stays standalone (a test checks
# that the copy matches); other GPUs and other d use the first-principles rule below. Launches
# over fewer than FEW_ROWS_PER_SM rows per SM look in FEW_ROWS_TILES first (the "glu@few_rows" key).
TUNED_TILES = {"NVIDIA H200": {1536: (2, 2048, 8), 2560: (4, 1024, 8)}}
FEW_ROWS_TILES = {"NVIDIA H200": {768: (1, 512, 4), 1024: (1, 512, 4), 1280: (1, 512, 4), 2048: (1, 1024, 8)}}
FEW_ROWS_PER_SM = 4


@triton.jit
def _sigmoid(g, FAST: tl.constexpr):
    # 16-bit outputs on the GPU: the SFU's reciprocal and exp2 without subnormal fix-ups (.ftz),
    # invisible after rounding to 16 bits; the interpreter (and fp32) keep tl.sigmoid.
    if FAST:
        e = tl.inline_asm_elementwise("ex2.approx.ftz.f32 $0, $1;", "=r,r", [g * -1.4426950408889634],
                                      dtype=tl.float32, is_pure=True, pack=1)
        return tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=r,r", [1.0 + e],
                                         dtype=tl.float32, is_pure=True, pack=1)
    else:
        return tl.sigmoid(g)


@triton.jit
def _silu_and_mul_kernel(x_ptr, out_ptr, rows, d, x_row_stride, out_row_stride,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, FAST: tl.constexpr):
    # int64 row offsets: tensors past 2^31 elements index correctly.
    row = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    col = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    mask = (row < rows) & (col < d)
    x_row = x_ptr + row * x_row_stride
    g = tl.load(x_row + col, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(x_row + d + col, mask=mask, other=0.0).to(tl.float32)
    y = g * _sigmoid(g, FAST) * u
    tl.store(out_ptr + row * out_row_stride + col, y.to(out_ptr.dtype.element_ty), mask=mask)


def _next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def launch_config(rows: int, d: int, gpu: str = "", sm_count: int | None = None) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps) for ``rows`` rows of ``d`` outputs on the GPU named ``gpu``
    with ``sm_count`` SMs ("" / None: no GPU)."""
    few = sm_count is not None and rows < FEW_ROWS_PER_SM * sm_count
    few_tile = FEW_ROWS_TILES.get(gpu, {}).get(d) if few else None
    if few_tile is not None:  # measured on launches of this size: used as it is
        block_m, block_n, num_warps = few_tile
        return max(1, min(block_m, _next_pow2(rows))), block_n, num_warps
    tuned = TUNED_TILES.get(gpu, {}).get(d)
    if tuned is not None:
        block_m, block_n, num_warps = tuned
        block_m = max(1, min(block_m, _next_pow2(rows)))
    else:  # about 4-8K output elements per program; decode shapes (few rows) split the row instead
        block_n = min(_next_pow2(d), 1024)
        target = 8192 if rows * d >= (1 << 22) else 4096
        block_m = max(1, min(_next_pow2(rows), target // block_n))
        num_warps = 8 if block_m * block_n >= 4096 else 4
    # Rows are not packed so far that SMs go without a program.
    while sm_count and block_m > 1 and triton.cdiv(rows, block_m) * triton.cdiv(d, block_n) < sm_count:
        block_m, num_warps = block_m // 2, max(1, num_warps // 2)
    return block_m, block_n, num_warps


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """out[..., d] = silu(x[..., :d]) * x[..., d:], fp32 math, one rounding to x.dtype."""
    if x.shape[-1] % 2:
        raise ValueError(f"silu_and_mul: last dim must be even, got {tuple(x.shape)}")
    d = x.shape[-1] // 2
    out = torch.empty((*x.shape[:-1], d), dtype=x.dtype, device=x.device)
    x2 = x.reshape(-1, 2 * d)
    out2 = out.view(-1, d)
    rows = x2.shape[0]
    if rows == 0 or d == 0:
        return out
    gpu = torch.cuda.get_device_name(x.device) if x.is_cuda else ""
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count if x.is_cuda else None
    block_m, block_n, num_warps = launch_config(rows, d, gpu, sms)
    fast = (x.is_cuda and out.dtype in (torch.bfloat16, torch.float16) and getattr(torch.version, "hip", None) is None
            and os.environ.get("TRITON_INTERPRET", "0") != "1")
    grid = (triton.cdiv(rows, block_m), triton.cdiv(d, block_n))
    _silu_and_mul_kernel[grid](x2, out2, rows, d, x2.stride(0), out2.stride(0),
                               BLOCK_M=block_m, BLOCK_N=block_n, FAST=fast, num_warps=num_warps)
    return out
