"""Triton kernel: dynamic per-token fp8 (e4m3fn) quantization in one pass.

Each program owns ``BLOCK_M`` rows as a ``[BLOCK_M, BLOCK_N]`` register tile (tiling from
kernels/rowwise.py): it reads the rows once, reduces the max-abs per row, computes the scale and
its reciprocal once per row, and writes the fp8 bytes and the scale once. HBM traffic is the
minimum: 2 bytes read and 1 byte written per bf16 element, plus 4 bytes of scale per row.
Rows longer than ``MAX_WHOLE_ROW`` loop over chunks: the max pass reads HBM, the quantize pass
re-reads the row from L2.

The fp8 output is written as its uint8 bit pattern (``q.view(torch.uint8)``): on a GPU the
hardware conversion produces it, under the interpreter an exact software encoder does
(core/fp8.py, ``fp8e4m3_bits``).
"""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.core.fp8 import fp8e4m3_bits, quantize_bits, scale_and_inverse  # noqa: F401 (jit globals)
from solbench.kernels.common import gpu_codegen
from solbench.kernels._rowwise_triton import row_ptrs, tile_offsets
from solbench.kernels.rowwise import row_config, row_grid

KERNEL = "fp8_per_token_quant"


@triton.jit
def _per_token_quant_kernel(x_ptr, q_ptr, s_ptr, rows, n, x_stride, q_stride, s_stride, min_amax,
                            SOFT_FP8: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                            CHUNKED: tl.constexpr):
    r, c, mask = tile_offsets(tl.program_id(0), rows, n, BLOCK_M, BLOCK_N)
    rmask = r < rows
    if not CHUNKED:
        v = tl.load(row_ptrs(x_ptr, r, c, x_stride), mask=mask, other=0.0).to(tl.float32)
        amax = tl.max(tl.abs(v), axis=1)[:, None]
        s, inv = scale_and_inverse(amax, min_amax, False)
        tl.store(s_ptr + r * s_stride, s, mask=rmask)
        tl.store(row_ptrs(q_ptr, r, c, q_stride), quantize_bits(v, inv, SOFT_FP8), mask=mask)
    else:
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(0, n, BLOCK_N):
            cc = k + c
            m = rmask & (cc < n)
            acc = tl.maximum(acc, tl.abs(tl.load(row_ptrs(x_ptr, r, cc, x_stride), mask=m, other=0.0).to(tl.float32)))
        s, inv = scale_and_inverse(tl.max(acc, axis=1)[:, None], min_amax, False)
        tl.store(s_ptr + r * s_stride, s, mask=rmask)
        for k in range(0, n, BLOCK_N):
            cc = k + c
            m = rmask & (cc < n)
            v = tl.load(row_ptrs(x_ptr, r, cc, x_stride), mask=m, other=0.0).to(tl.float32)
            tl.store(row_ptrs(q_ptr, r, cc, q_stride), quantize_bits(v, inv, SOFT_FP8), mask=m)


def launch_per_token_quant(x2d, q2d, s2d, min_amax: float) -> None:
    """``x2d [rows, n]`` (unit column stride), ``q2d [rows, n]`` fp8, ``s2d [rows, 1]`` fp32;
    callers validate shapes, dtypes and devices."""
    import torch

    rows, n = x2d.shape
    if rows == 0 or n == 0:
        return
    cfg = row_config(n, rows, x2d.element_size(), kernel=KERNEL)
    _per_token_quant_kernel[row_grid(rows, cfg)](
        x2d, q2d.view(torch.uint8), s2d, rows, n, x2d.stride(0), q2d.stride(0), s2d.stride(0),
        float(min_amax), SOFT_FP8=not gpu_codegen(x2d), **cfg.launch_kwargs())
