"""Triton kernel: (residual add +) RMSNorm + dynamic per-token fp8 quantization in one pass.

Per row, all in fp32: ``v = x (+ residual)`` (the sum is stored rounded to the residual dtype as
``residual_out`` but normalized unrounded, as aiter does), ``y = v / sqrt(mean(v^2) + eps) * w``,
``scale = max|y| / 448``, ``q = fp8(clamp(y / scale))``. Each program holds ``BLOCK_M`` whole rows
in registers (tiling from kernels/rowwise.py), so every input byte is read once and every output
byte written once: the sum, the normalized row and its max-abs never leave the chip.

Rows longer than ``MAX_WHOLE_ROW`` run three passes over chunks (sum of squares, max-abs,
quantize); the later passes recompute the sum from x and residual, which the first pass left
in L2, so the semantics (fp32 sum) are the same as in the whole-row path.
"""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.core.fp8 import fp8e4m3_bits, quantize_bits, scale_and_inverse  # noqa: F401 (jit globals)
from solbench.kernels.common import gpu_codegen
from solbench.kernels._rowwise_triton import row_ptrs, tile_offsets
from solbench.kernels.rowwise import row_config, row_grid

KERNEL = "fused_rmsnorm_quant"


@triton.jit
def _load_sum(x_ptr, res_ptr, res_out_ptr, r, c, mask, x_stride, res_stride, res_out_stride,
              HAS_RES: tl.constexpr, STORE_RES: tl.constexpr):
    v = tl.load(row_ptrs(x_ptr, r, c, x_stride), mask=mask, other=0.0).to(tl.float32)
    if HAS_RES:
        v += tl.load(row_ptrs(res_ptr, r, c, res_stride), mask=mask, other=0.0).to(tl.float32)
        if STORE_RES:
            tl.store(row_ptrs(res_out_ptr, r, c, res_out_stride), v.to(res_out_ptr.dtype.element_ty), mask=mask)
    return v


@triton.jit
def _rmsnorm_quant_kernel(x_ptr, res_ptr, w_ptr, q_ptr, s_ptr, res_out_ptr, rows, n, eps,
                          x_stride, res_stride, q_stride, s_stride, res_out_stride,
                          HAS_RES: tl.constexpr, SOFT_FP8: tl.constexpr, BLOCK_M: tl.constexpr,
                          BLOCK_N: tl.constexpr, CHUNKED: tl.constexpr):
    r, c, mask = tile_offsets(tl.program_id(0), rows, n, BLOCK_M, BLOCK_N)
    rmask = r < rows
    if not CHUNKED:
        v = _load_sum(x_ptr, res_ptr, res_out_ptr, r, c, mask, x_stride, res_stride, res_out_stride,
                      HAS_RES, True)
        rstd = 1.0 / tl.sqrt(tl.sum(v * v, axis=1)[:, None] / n + eps)
        # The weight is shared by all rows: one [1, BLOCK_N] vector load per program.
        w = tl.load(w_ptr + c, mask=c < n, other=0.0).to(tl.float32)
        y = v * rstd * w
        s, inv = scale_and_inverse(tl.max(tl.abs(y), axis=1)[:, None], 0.0, False)
        tl.store(s_ptr + r * s_stride, s, mask=rmask)
        tl.store(row_ptrs(q_ptr, r, c, q_stride), quantize_bits(y, inv, SOFT_FP8), mask=mask)
    else:
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(0, n, BLOCK_N):
            cc = k + c
            v = _load_sum(x_ptr, res_ptr, res_out_ptr, r, cc, rmask & (cc < n), x_stride, res_stride,
                          res_out_stride, HAS_RES, True)
            acc += v * v
        rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=1)[:, None] / n + eps)
        amax = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(0, n, BLOCK_N):
            cc = k + c
            v = _load_sum(x_ptr, res_ptr, res_out_ptr, r, cc, rmask & (cc < n), x_stride, res_stride,
                          res_out_stride, HAS_RES, False)
            w = tl.load(w_ptr + cc, mask=cc < n, other=0.0).to(tl.float32)
            amax = tl.maximum(amax, tl.abs(v * rstd * w))
        s, inv = scale_and_inverse(tl.max(amax, axis=1)[:, None], 0.0, False)
        tl.store(s_ptr + r * s_stride, s, mask=rmask)
        for k in range(0, n, BLOCK_N):
            cc = k + c
            m = rmask & (cc < n)
            v = _load_sum(x_ptr, res_ptr, res_out_ptr, r, cc, m, x_stride, res_stride, res_out_stride,
                          HAS_RES, False)
            w = tl.load(w_ptr + cc, mask=cc < n, other=0.0).to(tl.float32)
            tl.store(row_ptrs(q_ptr, r, cc, q_stride), quantize_bits(v * rstd * w, inv, SOFT_FP8), mask=m)


def launch_rmsnorm_quant(x2d, weight, q2d, s2d, eps: float, residual2d=None, residual_out2d=None) -> None:
    """2-D ``[rows, n]`` views with unit column stride (row strides may differ); ``s2d`` is
    ``[rows, 1]``. Callers validate shapes, dtypes, devices and overlaps."""
    import torch

    rows, n = x2d.shape
    if rows == 0 or n == 0:
        return
    if (residual2d is None) != (residual_out2d is None):
        raise ValueError("launch_rmsnorm_quant: residual and residual_out go together")
    has_res = residual2d is not None
    cfg = row_config(n, rows, x2d.element_size(), kernel=KERNEL)
    dummy = x2d  # never dereferenced when HAS_RES is False
    _rmsnorm_quant_kernel[row_grid(rows, cfg)](
        x2d, residual2d if has_res else dummy, weight, q2d.view(torch.uint8), s2d,
        residual_out2d if has_res else dummy, rows, n, float(eps),
        x2d.stride(0), residual2d.stride(0) if has_res else 0, q2d.stride(0), s2d.stride(0),
        residual_out2d.stride(0) if has_res else 0,
        HAS_RES=has_res, SOFT_FP8=not gpu_codegen(x2d), **cfg.launch_kwargs())
