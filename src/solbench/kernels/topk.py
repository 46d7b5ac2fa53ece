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

Custom ops ``torch.ops.solbench.top_k_mask_logits`` (functional) and ``top_k_mask_logits.out``;
off CUDA they compute with torch.topk. The Triton kernels are in ``_topk_triton`` (imported at the
first launch).
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import check_disjoint, check_out, env_replaced, functional_op, kernel_op

WHAT = "top_k_mask_logits"
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@dataclasses.dataclass(frozen=True)
class TopkOptions:
    """``row_max``: widest row held by one program; ``chunk``: elements per program on wider
    rows; ``cand_max``: most candidate keys the second launch holds in registers (beyond it the
    search streams the row); ``elems_per_thread``: registers' worth of elements per thread;
    ``bits_per_round``: key bits settled by one block-wide exchange (1 or 2: a 2-bit round
    counts its three thresholds in one packed sum, so a row's chain of dependent exchanges is
    half as long; ``SOLBENCH_TOPK`` sets any field for GPU A/B runs)."""

    row_max: int = 16384
    chunk: int = 4096
    cand_max: int = 16384
    elems_per_thread: int = 16
    bits_per_round: int = 1

    def __post_init__(self):
        if self.bits_per_round not in (1, 2):
            raise ValueError(f"{WHAT}: bits_per_round must be 1 or 2, got {self.bits_per_round}")

    def warps(self, block: int) -> int:
        return max(1, min(16, block // (32 * self.elems_per_thread)))


ROW_MAX = TopkOptions().row_max


def options() -> TopkOptions:
    """The launch options: the defaults with the fields ``SOLBENCH_TOPK`` sets (``name=value``
    items; read at each call, for GPU A/B runs)."""
    return env_replaced("SOLBENCH_TOPK", TopkOptions())


def _order_keys(x):
    """int64 keys ordered as the kernel orders the values: by their fp32 bits, so -0.0 ties with
    +0.0 and a NaN sorts by its sign (above +inf or below -inf)."""
    b = x.float().view(torch.int32).long()
    return torch.where(b >= 0, b, -(b & 0x7FFFFFFF))


def _settled(logits, out, top_k: int) -> bool:
    """The checks and trivial cases both paths share: True when nothing is left to select (no
    rows, or k keeps the whole row, which is then copied)."""
    check_disjoint(WHAT, (("out", out),), (("logits", logits),))
    rows, n = logits.shape
    if rows == 0 or n == 0:
        return True
    if top_k >= n:
        out.copy_(logits)
        return True
    return False


def _eager(logits, out, top_k) -> None:
    """The torch formulation (off CUDA): the k-th largest key of each row by torch.topk."""
    if _settled(logits, out, top_k):
        return
    key = _order_keys(logits)
    kth = key.topk(int(top_k), dim=-1).values[:, -1:]
    out.copy_(logits.masked_fill(key < kth, float("-inf")))


@kernel_op("solbench::top_k_mask_logits.out", mutates_args=("out",), eager=_eager)
def _top_k_mask_op(logits: torch.Tensor, out: torch.Tensor, top_k: int) -> None:
    from solbench.kernels._topk_triton import launch

    if _settled(logits, out, top_k):
        return
    launch(logits, out, int(top_k), options())


@_top_k_mask_op.register_fake
def _top_k_mask_fake(logits, out, top_k) -> None:
    return None


functional_op("solbench::top_k_mask_logits", _top_k_mask_op, lambda logits, top_k: (torch.empty_like(logits),))


def top_k_mask_logits(logits: torch.Tensor, top_k: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """``out = where(logits >= k-th largest of its row, logits, -inf)``; ties with the k-th value
    are kept, ``top_k >= vocab`` copies the row.

    ``logits`` [rows, vocab] fp32, bf16 or fp16 (a row stride of its own is fine, the last dim
    contiguous); ``top_k`` a Python int >= 1, the same for every row. ``out`` (same shape and
    dtype, not overlapping ``logits``) is allocated when None. NaN logits are ordered by their
    bits (a positive NaN above +inf). Returns ``out``."""
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
