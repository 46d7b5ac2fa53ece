"""Split-KV (flash-decoding) pieces shared by the paged decode kernel (``_attention_triton``) and
the MLA decode kernel (``_mla_triton``); imported at their first launch.

A split launch adds a third grid axis: program ``(.., .., i)`` of ``num_programs(2)`` attends the
i-th of equal, tile-aligned ranges of its sequence's keys and writes its unnormalized output
``acc`` with its running max ``m`` (log2 domain) and sum ``l`` in fp32 to a workspace. The combine
pass merges the splits of one (sequence, head) row by the log-sum-exp rule:

    M = max_i m_i,   w_i = 2^(m_i - M),   out = sum_i w_i acc_i / sum_i w_i l_i

A split that saw no key has m = -inf, l = 0 and weight 0; a row with no key at all gets 0.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from solbench.kernels.common import next_pow2


@triton.jit
def _split_range(n_full, n_end, BLOCK_N: tl.constexpr):
    """This program's keys: the ``program_id(2)``-th of ``num_programs(2)`` equal tile-aligned
    ranges of [0, n_end). Returns (lo, end of its unmasked tiles, hi) for keys whose tiles below
    ``n_full`` need no mask; lo >= hi (nothing to do) for a split past a short sequence's end."""
    per = tl.cdiv(tl.cdiv(n_end, BLOCK_N), tl.num_programs(2)) * BLOCK_N
    lo = tl.program_id(2) * per
    # hi = lo for a split past the end: both of its ranges are empty.
    hi = tl.maximum(tl.minimum(lo + per, n_end), lo)
    # A multiple of BLOCK_N already (n_full and lo are; hi is one or is n_end > n_full, or lo);
    # the floor tells the compiler, so the masked tile's keys keep their page runs (16-byte loads).
    mid = tl.minimum(tl.maximum(n_full, lo), hi) // BLOCK_N * BLOCK_N
    return lo, mid, hi


@triton.jit
def _partial_row(seq, head, heads):
    """Workspace row of (sequence ``seq``, query head ``head``, this program's split)."""
    return (seq.to(tl.int64) * heads + head) * tl.num_programs(2) + tl.program_id(2)


@triton.jit
def _store_partial(PART_O, PART_ML, row, acc, m_i, l_i, row_mask, offs_d, d_mask, DV: tl.constexpr):
    """One split's fp32 partials: ``acc`` columns ``offs_d`` of [rows, splits, DV] and (m, l) of
    [rows, splits, 2], for the rows where ``row_mask`` holds."""
    tl.store(PART_O + row[:, None] * DV + offs_d[None, :], acc, mask=row_mask[:, None] & d_mask[None, :])
    tl.store(PART_ML + row * 2, m_i, mask=row_mask)
    tl.store(PART_ML + row * 2 + 1, l_i, mask=row_mask)


@triton.jit
def _combine_splits(PART_O, PART_ML, O, num_splits, heads, stride_ob, stride_oh,
                    DV: tl.constexpr, DV_PAD: tl.constexpr, SPLITS_PAD: tl.constexpr, CHUNK: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    first = (b.to(tl.int64) * heads + h) * num_splits
    offs_s = tl.arange(0, SPLITS_PAD)
    s_mask = offs_s < num_splits
    m = tl.load(PART_ML + (first + offs_s) * 2, mask=s_mask, other=float("-inf"))
    l_i = tl.load(PART_ML + (first + offs_s) * 2 + 1, mask=s_mask, other=0.0)
    m_max = tl.max(m, 0)
    # Every split empty (a sequence without keys): weights 2^(-inf - 0) = 0, output 0.
    m_ref = tl.where(m_max == float("-inf"), 0.0, m_max)
    l_sum = tl.sum(tl.math.exp2(m - m_ref) * l_i, 0)
    offs_d = tl.arange(0, DV_PAD)
    d_mask = offs_d < DV
    acc = tl.zeros([DV_PAD], tl.float32)
    # CHUNK splits at a time keep the [CHUNK, DV] tile in registers at DV = 512 (MLA).
    for c in range(0, num_splits, CHUNK):
        offs_c = c + tl.arange(0, CHUNK)
        c_mask = offs_c < num_splits
        w = tl.math.exp2(tl.load(PART_ML + (first + offs_c) * 2, mask=c_mask, other=float("-inf")) - m_ref)
        part = tl.load(PART_O + (first + offs_c)[:, None] * DV + offs_d[None, :],
                       mask=c_mask[:, None] & d_mask[None, :], other=0.0)
        acc += tl.sum(part * w[:, None], 0)
    l_sum = tl.where(l_sum > 0.0, l_sum, 1.0)
    tl.store(O + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh + offs_d,
             (acc / l_sum).to(O.dtype.element_ty), mask=d_mask)


def split_workspace(batch: int, heads: int, splits: int, dv: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 partial outputs [batch, heads, splits, dv] and (m, l) pairs [batch, heads, splits, 2].
    ``torch.empty`` from the caching allocator: no sync, and CUDA-graph capture records it."""
    return (torch.empty((batch, heads, splits, dv), dtype=torch.float32, device=device),
            torch.empty((batch, heads, splits, 2), dtype=torch.float32, device=device))


def combine(part_o: torch.Tensor, part_ml: torch.Tensor, out: torch.Tensor) -> None:
    """Merge the splits into ``out`` [batch, heads, dv] (any row strides, contiguous last dim):
    one program per (sequence, head)."""
    batch, heads, splits, dv = part_o.shape
    dv_pad = max(16, next_pow2(dv))
    chunk = max(1, min(next_pow2(splits), 4096 // dv_pad))
    _combine_splits[(batch, heads)](part_o, part_ml, out, splits, heads, out.stride(0), out.stride(1), DV=dv,
                                    DV_PAD=dv_pad, SPLITS_PAD=max(2, next_pow2(splits)), CHUNK=chunk,
                                    num_warps=4 if dv_pad >= 256 else 2)
