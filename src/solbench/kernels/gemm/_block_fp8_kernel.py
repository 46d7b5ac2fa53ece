"""The Triton kernel of :mod:`solbench.kernels.gemm.block_fp8` (imported only where triton is).

One program per SM (or a few) walks output tiles in grouped order (GROUP_M row tiles share each
column tile, so a wave reuses a band of ``b`` and of ``a`` from L2). A tile's K range is one
split of ``SPLIT_K``; each K step is one scale block (BLOCK_K == group_k): an fp8 tensor-core dot
into a fresh fp32 partial, then ``acc += partial * a_scale[m] * b_scale[n]``, so every scale is
applied once per K block, on the accumulator, never on the fp8 operands.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _tile_of(tile, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """Grouped (L2-friendly) order: consecutive tiles run down GROUP_M row tiles of one column
    tile before moving to the next column tile."""
    in_group = GROUP_M * num_pid_n
    first_m = (tile // in_group) * GROUP_M
    group_rows = tl.minimum(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (tile % in_group) % group_rows
    pid_n = (tile % in_group) // group_rows
    return pid_m, pid_n


@triton.jit
def _block_fp8_mm_kernel(
    a_ptr, b_ptr, a_desc, b_desc, sa_ptr, sb_ptr, out_ptr,
    M, N, K,
    stride_am, stride_bn, stride_sam, stride_sak, stride_sbn, stride_sbk, stride_om,
    num_progs,
    GROUP_N: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, SPLIT_K: tl.constexpr,
    USE_TMA: tl.constexpr, EVEN_K: tl.constexpr, B_SCALE_PER_TILE: tl.constexpr, FLATTEN: tl.constexpr,
):
    pid = tl.program_id(0)
    num_pid_m = tl.cdiv(M, BLOCK_M)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    k_blocks = tl.cdiv(K, BLOCK_K)
    kb_per_split = k_blocks // SPLIT_K  # the launcher makes SPLIT_K divide the K blocks
    num_mn = num_pid_m * num_pid_n
    num_tiles = num_mn * SPLIT_K
    offs_k = tl.arange(0, BLOCK_K)

    # FLATTEN: one software pipeline over every (tile, K block) pair of the program, so the next
    # tile's first loads are in flight during this tile's epilogue (needs the fixed trip count).
    for tile in tl.range(pid, num_tiles, num_progs, flatten=FLATTEN):
        # Split-major: the programs of one wave share K ranges, and with them L2 lines of b.
        split = tile // num_mn
        pid_m, pid_n = _tile_of(tile % num_mn, num_pid_m, num_pid_n, GROUP_M)
        # Row/column indices wrap inside the matrix so loads of a partial tile need no M/N mask
        # (the wrapped rows are computed and dropped at the store).
        rows = ((pid_m * BLOCK_M + tl.arange(0, BLOCK_M)) % M).to(tl.int64)
        cols = ((pid_n * BLOCK_N + tl.arange(0, BLOCK_N)) % N).to(tl.int64)
        a_rows = a_ptr + rows[:, None] * stride_am
        b_rows = b_ptr + cols[:, None] * stride_bn
        sa_rows = sa_ptr + rows * stride_sam
        if B_SCALE_PER_TILE:
            sb_rows = sb_ptr + ((pid_n * BLOCK_N) // GROUP_N) * stride_sbn
        else:
            sb_rows = sb_ptr + (cols // GROUP_N) * stride_sbn
        kb0 = split * kb_per_split

        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for i in tl.range(0, kb_per_split):
            kb = kb0 + i
            k0 = kb * BLOCK_K
            # The scales first: their loads then run under the tensor-core work instead of after it.
            sa = tl.load(sa_rows + kb * stride_sak)
            sb = tl.load(sb_rows + kb * stride_sbk)
            if USE_TMA:
                # Out-of-range rows, columns and K are zero-filled by the copy engine.
                a = a_desc.load([pid_m * BLOCK_M, k0])
                b = b_desc.load([pid_n * BLOCK_N, k0])
            elif EVEN_K:
                a = tl.load(a_rows + (k0 + offs_k)[None, :])
                b = tl.load(b_rows + (k0 + offs_k)[None, :])
            else:
                k_ok = (k0 + offs_k)[None, :] < K
                a = tl.load(a_rows + (k0 + offs_k)[None, :], mask=k_ok, other=0.0)
                b = tl.load(b_rows + (k0 + offs_k)[None, :], mask=k_ok, other=0.0)
            part = tl.dot(a, tl.trans(b), out_dtype=tl.float32)
            if B_SCALE_PER_TILE:
                acc += part * (sa * sb)[:, None]
            else:
                acc += part * (sa[:, None] * sb[None, :])

        out_rows = (pid_m * BLOCK_M + tl.arange(0, BLOCK_M)).to(tl.int64)
        out_cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        ptrs = out_ptr + out_rows[:, None] * stride_om + out_cols[None, :]
        ok = (out_rows[:, None] < M) & (out_cols[None, :] < N)
        if SPLIT_K == 1:
            tl.store(ptrs, acc.to(out_ptr.dtype.element_ty), mask=ok)
        else:
            # The splits of a tile add into a zeroed fp32 output.
            tl.atomic_add(ptrs, acc, mask=ok, sem="relaxed")
