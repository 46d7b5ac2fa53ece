"""The Triton kernels behind :mod:`solbench.kernels.topk` (imported at the first launch, so
``import solbench`` decorates no Triton kernel)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from solbench.kernels.common import next_pow2
from solbench.kernels.topk import TopkOptions


@triton.jit
def _order_keys(x):
    """uint32 keys ordered as the float values (-0.0 folded onto +0.0, so that keys tie exactly
    where the floats compare equal)."""
    b = x.to(tl.float32).to(tl.int32, bitcast=True)
    flip = (b >> 31).to(tl.uint32, bitcast=True) | tl.full((), 0x80000000, tl.uint32)
    key = b.to(tl.uint32, bitcast=True) ^ flip
    return tl.where(key == tl.full((), 0x7FFFFFFF, tl.uint32), tl.full((), 0x80000000, tl.uint32), key)

@triton.jit
def _search_bits(key, k, tau, FIRST: tl.constexpr, LAST: tl.constexpr):
    """Bits FIRST down to LAST of the k-th largest key, given the bits above FIRST in ``tau``.
    Lanes outside the set hold key 0, which no candidate (>= 1) counts: no mask per element."""
    one = tl.full((), 1, tl.uint32)
    for i in range(31 - FIRST, 32 - LAST):
        cand = tau | (one << (tl.full((), 31, tl.int32) - i).to(tl.uint32))
        cnt = tl.sum((key >= cand).to(tl.int32))
        tau = tl.where(cnt >= k, cand, tau)
    return tau

@triton.jit
def _search_digits(key, k, tau, FIRST: tl.constexpr, LAST: tl.constexpr, R: tl.constexpr):
    """:func:`_search_bits` ``R`` bits a round: the ``2^R - 1`` thresholds of a round are counted
    together, four 16-bit counts packed in each int64 of one sum (a tile holds at most 2^15
    keys). R = 2 is one block-wide exchange a round (two barriers, against four for two 1-bit
    rounds; an int64 sum takes a shuffle tree where an int32 one is one REDUX instruction, and
    two int32 sums a round would take two exchanges). R = 4 (four sums a round) spilled in the
    chunk kernel at sm_90 and is not offered. R divides FIRST - LAST + 1; the lanes outside the
    set hold key 0, as for _search_bits."""
    for i in range(31 - FIRST, 32 - LAST, R):
        shift = (tl.full((), 32 - R, tl.int32) - i).to(tl.uint32)
        digit = tl.zeros((), tl.int32)
        for g in tl.static_range(1 << (R - 2)):
            packed = tl.zeros(key.shape, tl.int64)
            for q in tl.static_range(4):
                if 4 * g + q + 1 < (1 << R):
                    cand = tau | (tl.full((), 4 * g + q + 1, tl.uint32) << shift)
                    packed += (key >= cand).to(tl.int64) << (16 * q)
            counts = tl.sum(packed)
            for q in tl.static_range(4):
                if 4 * g + q + 1 < (1 << R):
                    # Counts fall as the threshold grows: the digit is how many still reach k.
                    digit += (((counts >> (16 * q)) & 0xFFFF) >= k).to(tl.int32)
        tau = tau | (digit.to(tl.uint32) << shift)
    return tau

@triton.jit
def _search(key, k, tau, FIRST: tl.constexpr, LAST: tl.constexpr, R: tl.constexpr):
    if R == 1:
        return _search_bits(key, k, tau, FIRST, LAST)
    return _search_digits(key, k, tau, FIRST, LAST, R)

@triton.jit
def _kth_key(key, valid, k, R: tl.constexpr):
    """The k-th largest of the ``valid`` keys of a register tile (1 <= k <= count(valid)); the
    other lanes must hold key 0. ``R``: bits searched a round (1 or 2)."""
    tau = _search(key, k, tl.full((), 0, tl.uint32), 31, 16, R)
    # Settled when nothing lies between tau and the smallest key above it, the k-th value.
    lo = tl.min(tl.where(valid & (key >= tau), key, tl.full((), 0xFFFFFFFF, tl.uint32)))
    unsettled = tl.sum((key > lo).to(tl.int32)) >= k
    if unsettled:
        tau = _search(key, k, tau, 15, 0, R)
    return tl.where(unsettled, tau, lo)

@triton.jit
def _kth_key_streamed(x_ptr, n, k, BLOCK: tl.constexpr):
    """The k-th largest key of ``x[0:n]``, read from memory once per bit."""
    one = tl.full((), 1, tl.uint32)
    tau = tl.full((), 0, tl.uint32)
    for i in range(0, 32):
        cand = tau | (one << (tl.full((), 31, tl.int32) - i).to(tl.uint32))
        cnt = tl.zeros((), tl.int32)
        for start in range(0, n, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            valid = cols < n
            key = _order_keys(tl.load(x_ptr + cols, mask=valid, other=0.0))
            cnt += tl.sum(((key >= cand) & valid).to(tl.int32))
        tau = tl.where(cnt >= k, cand, tau)
    return tau

@triton.jit
def _topk_rows_kernel(x_ptr, out_ptr, n, k, x_stride, out_stride, BLOCK: tl.constexpr, R: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    valid = cols < n
    x = tl.load(x_ptr + row * x_stride + cols, mask=valid, other=0.0)
    key = tl.where(valid, _order_keys(x), tl.full((), 0, tl.uint32))
    tau = _kth_key(key, valid, k, R)
    tl.store(out_ptr + row * out_stride + cols, tl.where(key >= tau, x, float("-inf")), mask=valid)

@triton.jit
def _topk_chunk_kernel(x_ptr, bound_ptr, count_ptr, cand_ptr, n, k, x_stride, C,
                       CHUNK: tl.constexpr, SEG: tl.constexpr, R: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    cols = c * CHUNK + tl.arange(0, CHUNK)
    valid = cols < n
    key = tl.where(valid, _order_keys(tl.load(x_ptr + row * x_stride + cols, mask=valid, other=0.0)),
                   tl.full((), 0, tl.uint32))
    n_c = tl.minimum(n - c * CHUNK, CHUNK)
    tau = _kth_key(key, valid, tl.minimum(k, n_c), R)
    sel = valid & (key >= tau)
    pos = tl.cumsum(sel.to(tl.int32), axis=0) - 1
    slot = row * C + c
    tl.store(cand_ptr + slot * SEG + pos, key.to(tl.int32, bitcast=True), mask=sel & (pos < SEG))
    tl.store(count_ptr + slot, tl.sum(sel.to(tl.int32)))
    # A chunk with fewer than k elements bounds nothing (all its elements are candidates).
    bound = tl.where(n_c >= k, tau, tl.full((), 0, tl.uint32))
    tl.store(bound_ptr + slot, bound.to(tl.int32, bitcast=True))

@triton.jit
def _topk_mask_kernel(x_ptr, out_ptr, bound_ptr, count_ptr, cand_ptr, n, k, x_stride, out_stride, C,
                      C_P2: tl.constexpr, CHUNK: tl.constexpr, SEG: tl.constexpr, STREAM: tl.constexpr,
                      R: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    c = tl.program_id(1)
    x_row = x_ptr + row * x_stride
    if STREAM:
        tau = _kth_key_streamed(x_row, n, k, CHUNK)
    else:
        cc = tl.arange(0, C_P2)
        cm = cc < C
        slots = row * C + cc
        bound = tl.max(tl.load(bound_ptr + slots, mask=cm, other=0).to(tl.uint32, bitcast=True))
        counts = tl.load(count_ptr + slots, mask=cm, other=0)
        j = tl.arange(0, SEG)
        have = cm[:, None] & (j[None, :] < counts[:, None])
        cand = tl.load(cand_ptr + slots[:, None] * SEG + j[None, :], mask=have, other=0)
        cand = cand.to(tl.uint32, bitcast=True)
        live = have & (cand >= bound)
        tau = _kth_key(tl.where(live, cand, tl.full((), 0, tl.uint32)), live, k, R)
        if tl.max(counts) > SEG:  # a chunk's ties did not fit: search the row itself
            tau = _kth_key_streamed(x_row, n, k, CHUNK)
    cols = c * CHUNK + tl.arange(0, CHUNK)
    valid = cols < n
    x = tl.load(x_row + cols, mask=valid, other=0.0)
    keep = _order_keys(x) >= tau
    tl.store(out_ptr + row * out_stride + cols, tl.where(keep, x, float("-inf")), mask=valid)


def launch(x, out, k: int, opts: TopkOptions) -> None:
    rows, n = x.shape
    if n <= opts.row_max:
        block = next_pow2(n)
        _topk_rows_kernel[(rows,)](x, out, n, k, x.stride(0), out.stride(0), BLOCK=block, R=opts.bits_per_round,
                                   num_warps=opts.warps(block))
        return
    chunk = opts.chunk
    c = triton.cdiv(n, chunk)
    c_p2 = next_pow2(c)
    seg = min(next_pow2(2 * k), chunk)
    stream = c_p2 * seg > opts.cand_max
    warps = opts.warps(max(chunk, c_p2 * seg))
    if stream:  # k too large for candidates in registers: every program searches the row
        _topk_mask_kernel[(rows, c)](x, out, x, x, x, n, k, x.stride(0), out.stride(0), c,
                                     C_P2=c_p2, CHUNK=chunk, SEG=seg, STREAM=True, R=opts.bits_per_round,
                                     num_warps=warps)
        return
    ws = torch.empty((rows * c * (seg + 2),), dtype=torch.int32, device=x.device)
    bound, count, cand = ws[:rows * c], ws[rows * c:2 * rows * c], ws[2 * rows * c:]
    _topk_chunk_kernel[(rows, c)](x, bound, count, cand, n, k, x.stride(0), c, CHUNK=chunk, SEG=seg,
                                  R=opts.bits_per_round, num_warps=opts.warps(chunk))
    _topk_mask_kernel[(rows, c)](x, out, bound, count, cand, n, k, x.stride(0), out.stride(0), c,
                                 C_P2=c_p2, CHUNK=chunk, SEG=seg, STREAM=False, R=opts.bits_per_round,
                                 num_warps=warps)
