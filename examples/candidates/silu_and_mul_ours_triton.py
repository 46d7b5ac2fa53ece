"""solbench's own ``ours_triton`` silu_and_mul, exported as a standalone candidate file.

It imports torch and triton only (not solbench): the same one-pass kernel as
``solbench/ops/silu_and_mul/triton.py`` (each program owns a tile of rows x columns of the output,
reads the matching gate and up tiles once, computes in fp32, rounds once), reduced to the silu case.

    solbench eval examples/candidates/silu_and_mul_ours_triton.py --op silu_and_mul

On a GPU its records should match ``solbench run --ops silu_and_mul --impls ours_triton`` within
noise; on a CPU the kernel runs in Triton's interpreter and only correctness is checked.
"""
import torch
import triton
import triton.language as tl

OP = "silu_and_mul"

# The tiles `solbench tune` measured for the GLU kernel, {gpu name: {d: (BLOCK_M, BLOCK_N, warps)}},
# copied from src/solbench/core/tuned/<gpu>.json so that this file stays standalone (a test checks
# that the copy matches); other GPUs and other d use the first-principles rule below.
TUNED_TILES = {"NVIDIA H200": {768: (4, 1024, 8), 1536: (2, 2048, 8), 2048: (2, 2048, 8), 2560: (8, 512, 8), 4096: (2, 2048, 8)}}


@triton.jit
def _silu_and_mul_kernel(x_ptr, out_ptr, rows, d, x_row_stride, out_row_stride,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    # int64 row offsets: tensors past 2^31 elements index correctly.
    row = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    col = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)[None, :]
    mask = (row < rows) & (col < d)
    x_row = x_ptr + row * x_row_stride
    g = tl.load(x_row + col, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(x_row + d + col, mask=mask, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(out_ptr + row * out_row_stride + col, y.to(out_ptr.dtype.element_ty), mask=mask)


def _next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


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
    tuned = TUNED_TILES.get(torch.cuda.get_device_name(x.device) if x.is_cuda else "", {}).get(d)
    if tuned is not None:
        block_m, block_n, num_warps = tuned
        block_m = max(1, min(block_m, _next_pow2(rows)))
    else:
        # About 4-8K output elements per program; decode shapes (few rows) split the row instead.
        block_n = min(_next_pow2(d), 1024)
        target = 8192 if rows * d >= (1 << 22) else 4096
        block_m = max(1, min(_next_pow2(rows), target // block_n))
        num_warps = 8 if block_m * block_n >= 4096 else 4
    grid = (triton.cdiv(rows, block_m), triton.cdiv(d, block_n))
    _silu_and_mul_kernel[grid](x2, out2, rows, d, x2.stride(0), out2.stride(0),
                               BLOCK_M=block_m, BLOCK_N=block_n, num_warps=num_warps)
    return out
