"""Triton kernel: per-token-group fp8 (e4m3fn) quantization (vLLM ``per_token_group_quant_fp8``).

The unit of work is a group: ``GROUP`` consecutive elements of one row. A program owns
``BLOCK_M`` groups as a ``[BLOCK_M, BLOCK_N]`` register tile (``BLOCK_N = next_pow2(GROUP)``),
numbered row-major over the whole tensor, so one program covers several groups of a row (and of
the next rows): loads stay 16-byte vectors along the row, decode shapes (one token) are one
program, and prefill shapes get tiles of ~4K elements (kernels/rowwise.py picks the tile for
``n = GROUP``). One pass: read once, max-abs per group, scale, quantize, write once.

Scales are stored through two strides, so row-major (default), column-major (DeepGEMM) and
TMA-aligned layouts are all one kernel. UE8M0 rounds each scale up to a power of two.
"""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.core.fp8 import fp8e4m3_bits, quantize_bits, scale_and_inverse  # noqa: F401 (jit globals)
from solbench.kernels.common import gpu_codegen, next_pow2
from solbench.kernels.rowwise import MAX_WHOLE_ROW, row_config, row_grid

KERNEL = "per_token_group_quant_fp8"


@triton.jit
def _group_quant_kernel(x_ptr, q_ptr, s_ptr, n_groups, groups_per_row, x_stride, q_stride,
                        s_row_stride, s_col_stride, eps,
                        GROUP: tl.constexpr, UE8M0: tl.constexpr, SOFT_FP8: tl.constexpr,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CHUNKED: tl.constexpr):
    # Group ids fit int32 (the launcher checks); the division by groups_per_row is per group, not
    # per element, and int32 keeps it cheap. Element offsets are int64 (row * stride may pass 2^31).
    f = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)[:, None]
    row32 = f // groups_per_row
    g = f - row32 * groups_per_row
    row = row32.to(tl.int64)
    c = tl.arange(0, BLOCK_N)[None, :]
    fmask = f < n_groups
    mask = fmask & (c < GROUP)
    col = g * GROUP + c
    v = tl.load(x_ptr + row * x_stride + col, mask=mask, other=0.0).to(tl.float32)
    s, inv = scale_and_inverse(tl.max(tl.abs(v), axis=1)[:, None], eps, UE8M0)
    tl.store(s_ptr + row * s_row_stride + g.to(tl.int64) * s_col_stride, s, mask=fmask)
    tl.store(q_ptr + row * q_stride + col, quantize_bits(v, inv, SOFT_FP8), mask=mask)


def max_group_size() -> int:
    return MAX_WHOLE_ROW


def launch_group_quant(x2d, q2d, s2d, group_size: int, eps: float, ue8m0: bool) -> None:
    """``x2d``/``q2d`` ``[rows, K]`` (unit column stride), ``s2d`` ``[rows, K // group_size]`` with
    any strides; callers validate shapes, dtypes and devices."""
    import torch

    rows, k = x2d.shape
    if rows == 0 or k == 0:
        return
    groups_per_row = k // group_size
    n_groups = rows * groups_per_row
    if n_groups + 2 * MAX_WHOLE_ROW >= 2 ** 31:  # group ids (plus a tile of slack) are int32
        raise ValueError(f"per_token_group_quant_fp8: {n_groups} groups is too many (supported: < 2^31)")
    cfg = row_config(group_size, n_groups, x2d.element_size(), kernel=KERNEL)
    if cfg.chunked or cfg.block_n != next_pow2(group_size):
        raise ValueError(f"per_token_group_quant_fp8: group_size {group_size} is too large "
                         f"(supported: up to {MAX_WHOLE_ROW})")
    _group_quant_kernel[row_grid(n_groups, cfg)](
        x2d, q2d.view(torch.uint8), s2d, n_groups, groups_per_row, x2d.stride(0), q2d.stride(0),
        s2d.stride(0), s2d.stride(1), float(eps), GROUP=group_size, UE8M0=bool(ue8m0),
        SOFT_FP8=not gpu_codegen(x2d), **cfg.launch_kwargs())
