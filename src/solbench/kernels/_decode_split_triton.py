"""Split-KV (flash-decoding) pieces shared by the paged decode kernel (``_attention_triton``) and
the MLA decode kernel (``_mla_triton``); imported at their first launch.

A split launch adds a third grid axis: program ``(.., .., i)`` of ``num_programs(2)`` attends the
i-th of equal, tile-aligned ranges of its sequence's keys and writes its unnormalized output
``acc`` with its running max ``m`` (log2 domain) and sum ``l`` in fp32 to a workspace. The combine
pass merges the splits of one (sequence, head) row by the log-sum-exp rule:

    M = max_i m_i,   w_i = 2^(m_i - M),   out = sum_i w_i acc_i / sum_i w_i l_i

A split that saw no key has m = -inf, l = 0 and weight 0; a row with no key at all gets 0.

The combine runs either as a second launch (:func:`combine`, the default) or folded into the
split launch (``SOLBENCH_DECODE_FOLD=1``, :func:`solbench.kernels.attention.decode_fold`): each
split counts its arrival on a per-(sequence, head group) counter and the last to arrive merges
the group (:func:`_last_split_combines`), saving the second launch and its ramp.
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
    hi = tl.minimum(lo + per, n_end)
    return lo, tl.minimum(tl.maximum(n_full, lo), hi), hi


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
def _merge_splits(PART_O, PART_ML, first, row_mask, num_splits, offs_d, d_mask, DV: tl.constexpr,
                  SPLITS_PAD: tl.constexpr, CHUNK: tl.constexpr):
    """The combined fp32 output [ROWS, DV_PAD] of the rows whose split 0 sits at workspace row
    ``first`` [ROWS] (their ``num_splits`` splits follow it), for the rows where ``row_mask``
    holds; both forms (the combine launch, one row a program, and the folded last split, a
    program's heads) run this. All (m, l) pairs load at once; the partials CHUNK splits at a time,
    so the [ROWS, CHUNK, DV] tile stays in registers."""
    offs_s = tl.arange(0, SPLITS_PAD)
    ml = PART_ML + (first[:, None] + offs_s[None, :]) * 2
    ml_mask = row_mask[:, None] & (offs_s < num_splits)[None, :]
    m = tl.load(ml, mask=ml_mask, other=float("-inf"))
    l_i = tl.load(ml + 1, mask=ml_mask, other=0.0)
    m_max = tl.max(m, 1)
    # Every split empty (a sequence without keys): weights 2^(-inf - 0) = 0, output 0.
    m_ref = tl.where(m_max == float("-inf"), 0.0, m_max)
    l_sum = tl.sum(tl.math.exp2(m - m_ref[:, None]) * l_i, 1)
    acc = tl.zeros([first.shape[0], offs_d.shape[0]], tl.float32)
    for c in range(0, num_splits, CHUNK):
        offs_c = c + tl.arange(0, CHUNK)
        c_mask = row_mask[:, None] & (offs_c < num_splits)[None, :]
        rows = first[:, None] + offs_c[None, :]
        w = tl.math.exp2(tl.load(PART_ML + rows * 2, mask=c_mask, other=float("-inf")) - m_ref[:, None])
        part = tl.load(PART_O + rows[:, :, None] * DV + offs_d[None, None, :],
                       mask=c_mask[:, :, None] & d_mask[None, None, :], other=0.0)
        acc += tl.sum(part * w[:, :, None], 1)
    l_sum = tl.where(l_sum > 0.0, l_sum, 1.0)
    return acc / l_sum[:, None]


@triton.jit
def _combine_splits(PART_O, PART_ML, O, num_splits, heads, stride_ob, stride_oh,
                    DV: tl.constexpr, DV_PAD: tl.constexpr, SPLITS_PAD: tl.constexpr, CHUNK: tl.constexpr):
    b = tl.program_id(0)
    h = tl.program_id(1)
    first = tl.full([1], (b.to(tl.int64) * heads + h) * num_splits, tl.int64)
    offs_d = tl.arange(0, DV_PAD)
    d_mask = offs_d < DV
    out = _merge_splits(PART_O, PART_ML, first, tl.full([1], 1, tl.int1), num_splits, offs_d, d_mask, DV,
                        SPLITS_PAD, CHUNK)
    o_row = O + b.to(tl.int64) * stride_ob + h.to(tl.int64) * stride_oh + tl.zeros([1], tl.int64)
    tl.store(o_row[:, None] + offs_d[None, :], out.to(O.dtype.element_ty), mask=d_mask[None, :])


@triton.jit
def _last_split_combines(COUNTS, group, PART_O, PART_ML, first, row_mask, o_rows, DV: tl.constexpr,
                         DV_PAD: tl.constexpr, SPLITS_PAD: tl.constexpr, CHUNK: tl.constexpr):
    """The folded combine, after this program stored its partials: the last of the
    ``num_programs(2)`` splits of counter ``group`` to arrive merges the rows ``first`` (split 0's
    workspace rows) into the output rows at pointers ``o_rows``, then sets the counter back to 0
    for the next launch (no memset per call, nothing for a CUDA graph to replay).

    Why the last program sees every partial: each thread's partial stores precede the barrier;
    the barrier orders them before the one thread's atomic add (a scalar atomic runs once per
    program), whose release (acq_rel, gpu scope) publishes them with it. The program that reads
    count = splits - 1 read-from every other split's release, so its acquire orders their stores
    before its own reads; Triton hands the atomic's result to all threads through shared memory
    behind a barrier, which carries that order to every thread that loads a partial."""
    tl.debug_barrier()
    arrived = tl.atomic_add(COUNTS + group, 1, sem="acq_rel", scope="gpu")
    if arrived == tl.num_programs(2) - 1:
        offs_d = tl.arange(0, DV_PAD)
        d_mask = offs_d < DV
        out = _merge_splits(PART_O, PART_ML, first, row_mask, tl.num_programs(2), offs_d, d_mask, DV,
                            SPLITS_PAD, CHUNK)
        tl.store(o_rows[:, None] + offs_d[None, :], out.to(o_rows.dtype.element_ty),
                 mask=row_mask[:, None] & d_mask[None, :])
        # Every split of this group has arrived: nothing else touches the counter in this launch.
        tl.atomic_xchg(COUNTS + group, 0, sem="relaxed", scope="gpu")


def split_workspace(batch: int, heads: int, splits: int, dv: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 partial outputs [batch, heads, splits, dv] and (m, l) pairs [batch, heads, splits, 2].
    ``torch.empty`` from the caching allocator: no sync, and CUDA-graph capture records it."""
    return (torch.empty((batch, heads, splits, dv), dtype=torch.float32, device=device),
            torch.empty((batch, heads, splits, 2), dtype=torch.float32, device=device))


def merge_meta(rows: int, splits: int, dv: int) -> dict:
    """The constexprs of :func:`_merge_splits` for ``rows`` output rows a program: the column and
    split counts padded to powers of two, and splits a chunk such that a chunk's partials are at
    most 4096 fp32 (32 registers a thread at 4 warps, 64 at 2), at least one."""
    dv_pad = max(16, next_pow2(dv))
    return dict(DV_PAD=dv_pad, SPLITS_PAD=max(2, next_pow2(splits)),
                CHUNK=max(1, min(next_pow2(splits), 4096 // (next_pow2(rows) * dv_pad))))


def combine(part_o: torch.Tensor, part_ml: torch.Tensor, out: torch.Tensor) -> None:
    """Merge the splits into ``out`` [batch, heads, dv] (any row strides, contiguous last dim):
    one program per (sequence, head)."""
    batch, heads, splits, dv = part_o.shape
    meta = merge_meta(1, splits, dv)
    _combine_splits[(batch, heads)](part_o, part_ml, out, splits, heads, out.stride(0), out.stride(1), DV=dv,
                                    **meta, num_warps=4 if meta["DV_PAD"] >= 256 else 2)


#: Arrival counters of the folded combine, per (device, stream): zeroed once when allocated,
#: left zero by every launch (its last split resets them). Outgrown buffers stay alive in
#: ``_RETIRED``: a CUDA graph captured with one still points at it.
_COUNTERS: dict = {}
_RETIRED: list = []


def split_counters(groups: int, device) -> torch.Tensor:
    """``groups`` int32 arrival counters for a folded split launch, all 0 (:func:`_last_split_combines`).

    A buffer cached per (device, stream), grown by doubling, so a call neither allocates nor
    zeroes: a CUDA graph captured after a warm-up call on its stream replays no memset. Per
    stream because launches on two streams may run at once and must not share counters (the
    launches of one stream run in order, each leaving the counters 0). A buffer first needed
    inside a graph capture is allocated and zeroed in the capture (the memset replays with the
    graph) and not cached: the capture runs nothing, so eager calls could not rely on its zeros."""
    device = torch.device(device)
    cuda = device.type == "cuda"
    key = (device, torch.cuda.current_stream(device).cuda_stream if cuda else 0)
    buf = _COUNTERS.get(key)
    if buf is None or buf.numel() < groups:
        buf = torch.zeros(max(groups, 2 * (0 if buf is None else buf.numel()), 64), dtype=torch.int32, device=device)
        if not (cuda and torch.cuda.is_current_stream_capturing()):
            if key in _COUNTERS:
                _RETIRED.append(_COUNTERS[key])
            _COUNTERS[key] = buf
    return buf
