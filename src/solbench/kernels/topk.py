"""Top-k logit masking (FlashInfer ``top_k_mask_logits``): keep every logit >= the k-th largest of
its row, set the rest to -inf.

``out[r, v] = logits[r, v] if logits[r, v] >= kth(r) else -inf``: ties with the k-th value are all
kept (a row may keep more than k entries), and ``top_k >= vocab`` keeps the row unchanged.

The k-th value is found exactly by a bitwise threshold search on order-preserving uint32 keys:
the largest key t with count(key >= t) >= k is the k-th largest key, built from the top bit down
with one counting reduction per bit. Data on the bf16 grid (logits of a bf16 lm_head) is settled
after 16 bits: when no element lies between the search's lower bound and the smallest key above
it, that key is the k-th value and the search stops.

* Rows up to :data:`ROW_MAX` wide: one program per row holds the row in registers; one read, one
  write, one launch.
* Wider rows (a 150k vocabulary): the row is split into chunks. A first launch finds each chunk's
  own k-th value and writes the chunk's elements >= it (at most ``2k``, else flagged) as
  candidates; the row's k-th value is among those >= the largest chunk bound (each chunk bound
  has k elements above it). The second launch searches the candidates and writes its chunk of the
  masked row. If a chunk had more tied candidates than fit, the second launch searches the whole
  row instead (slow, exact).
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import check_disjoint, check_out, kernel_op, next_pow2, require_device

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - reported by triton_unavailable_reason()
    triton = None

WHAT = "top_k_mask_logits"
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclasses.dataclass(frozen=True)
class TopkOptions:
    """``row_max``: widest row held by one program; ``chunk``: elements per program on wider
    rows; ``cand_max``: most candidate keys the second launch holds in registers (beyond it the
    search streams the row); ``elems_per_thread``: registers' worth of elements per thread."""

    row_max: int = 16384
    chunk: int = 4096
    cand_max: int = 16384
    elems_per_thread: int = 16

    def warps(self, block: int) -> int:
        return max(1, min(16, block // (32 * self.elems_per_thread)))


ROW_MAX = TopkOptions().row_max


if triton is not None:

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
    def _kth_key(key, valid, k):
        """The k-th largest of the ``valid`` keys of a register tile (1 <= k <= count(valid)); the
        other lanes must hold key 0."""
        tau = _search_bits(key, k, tl.full((), 0, tl.uint32), 31, 16)
        # Settled when nothing lies between tau and the smallest key above it, the k-th value.
        lo = tl.min(tl.where(valid & (key >= tau), key, tl.full((), 0xFFFFFFFF, tl.uint32)))
        unsettled = tl.sum((key > lo).to(tl.int32)) >= k
        if unsettled:
            tau = _search_bits(key, k, tau, 15, 0)
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
    def _topk_rows_kernel(x_ptr, out_ptr, n, k, x_stride, out_stride, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        cols = tl.arange(0, BLOCK)
        valid = cols < n
        x = tl.load(x_ptr + row * x_stride + cols, mask=valid, other=0.0)
        key = tl.where(valid, _order_keys(x), tl.full((), 0, tl.uint32))
        tau = _kth_key(key, valid, k)
        tl.store(out_ptr + row * out_stride + cols, tl.where(key >= tau, x, float("-inf")), mask=valid)

    @triton.jit
    def _topk_chunk_kernel(x_ptr, bound_ptr, count_ptr, cand_ptr, n, k, x_stride, C,
                           CHUNK: tl.constexpr, SEG: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        c = tl.program_id(1)
        cols = c * CHUNK + tl.arange(0, CHUNK)
        valid = cols < n
        key = tl.where(valid, _order_keys(tl.load(x_ptr + row * x_stride + cols, mask=valid, other=0.0)),
                       tl.full((), 0, tl.uint32))
        n_c = tl.minimum(n - c * CHUNK, CHUNK)
        tau = _kth_key(key, valid, tl.minimum(k, n_c))
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
                          C_P2: tl.constexpr, CHUNK: tl.constexpr, SEG: tl.constexpr, STREAM: tl.constexpr):
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
            tau = _kth_key(tl.where(live, cand, tl.full((), 0, tl.uint32)), live, k)
            if tl.max(counts) > SEG:  # a chunk's ties did not fit: search the row itself
                tau = _kth_key_streamed(x_row, n, k, CHUNK)
        cols = c * CHUNK + tl.arange(0, CHUNK)
        valid = cols < n
        x = tl.load(x_row + cols, mask=valid, other=0.0)
        keep = _order_keys(x) >= tau
        tl.store(out_ptr + row * out_stride + cols, tl.where(keep, x, float("-inf")), mask=valid)


def _launch(x, out, k: int, opts: TopkOptions) -> None:
    rows, n = x.shape
    if n <= opts.row_max:
        block = next_pow2(n)
        _topk_rows_kernel[(rows,)](x, out, n, k, x.stride(0), out.stride(0), BLOCK=block,
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
                                     C_P2=c_p2, CHUNK=chunk, SEG=seg, STREAM=True, num_warps=warps)
        return
    ws = torch.empty((rows * c * (seg + 2),), dtype=torch.int32, device=x.device)
    bound, count, cand = ws[:rows * c], ws[rows * c:2 * rows * c], ws[2 * rows * c:]
    _topk_chunk_kernel[(rows, c)](x, bound, count, cand, n, k, x.stride(0), c, CHUNK=chunk, SEG=seg,
                                  num_warps=opts.warps(chunk))
    _topk_mask_kernel[(rows, c)](x, out, bound, count, cand, n, k, x.stride(0), out.stride(0), c,
                                 C_P2=c_p2, CHUNK=chunk, SEG=seg, STREAM=False, num_warps=warps)


@kernel_op("solbench::top_k_mask_logits_", mutates_args=("out",))
def _top_k_mask_op(logits: torch.Tensor, out: torch.Tensor, top_k: int) -> None:
    check_disjoint(WHAT, (("out", out),), (("logits", logits),))
    rows, n = logits.shape
    if rows == 0 or n == 0:
        return
    if top_k >= n:
        out.copy_(logits)
        return
    _launch(logits, out, int(top_k), TopkOptions())


@_top_k_mask_op.register_fake
def _top_k_mask_fake(logits, out, top_k) -> None:
    return None


def top_k_mask_logits(logits: torch.Tensor, top_k: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """``out = where(logits >= k-th largest of its row, logits, -inf)``; ties with the k-th value
    are kept, ``top_k >= vocab`` copies the row.

    ``logits`` [rows, vocab] fp32, bf16 or fp16 (a row stride of its own is fine, the last dim
    contiguous); ``top_k`` a Python int >= 1, the same for every row. ``out`` (same shape and
    dtype, not overlapping ``logits``) is allocated when None. NaN logits are ordered by their
    bits (a positive NaN above +inf). Returns ``out``."""
    require_device(logits, WHAT)
    if logits.dtype not in DTYPES:
        raise TypeError(f"{WHAT}: logits has dtype {logits.dtype}; supported: float32, bfloat16, float16")
    if logits.dim() != 2:
        raise ValueError(f"{WHAT}: logits must be [rows, vocab], got shape {tuple(logits.shape)}")
    if logits.shape[1] > 1 and logits.stride(1) != 1:
        raise ValueError(f"{WHAT}: logits must be contiguous in its last dimension (stride {logits.stride(1)})")
    if isinstance(top_k, torch.Tensor) or isinstance(top_k, bool) or not isinstance(top_k, int):
        raise TypeError(f"{WHAT}: top_k must be a Python int (one k for every row), got {type(top_k).__name__}")
    if top_k < 1:
        raise ValueError(f"{WHAT}: top_k must be >= 1, got {top_k}")
    if out is None:
        out = torch.empty_like(logits)
    else:
        check_out(out, logits.shape, logits.dtype, logits.device, WHAT)
        if out.shape[1] > 1 and out.stride(1) != 1:
            raise ValueError(f"{WHAT}: out must be contiguous in its last dimension")
    _top_k_mask_op(logits, out, int(top_k))
    return out
