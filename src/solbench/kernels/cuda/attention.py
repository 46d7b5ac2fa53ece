"""Flash attention forward in CUDA C++ (attention.cu) for Hopper (sm_90a), compiled through NVRTC
at first use: the ``backend="cuda"`` of :func:`solbench.kernels.attention.varlen_attention` and of
:func:`~solbench.kernels.attention.unified_attention`'s prefill, whose paged keys are first staged
dense as for the Triton kernel (or, with ``paged=1``, read in place).

What the kernel takes (:func:`unsupported_reason` says why not, as a ValueError from the public
functions): bf16, head_size 128, 80 or 72 (72 runs in the 80-column build, TMA filling the padding
with zeros), G = H / H_kv up to 128, q / k / v rows and heads 16-byte aligned (TMA), ``out`` with
even strides. The launch is one CTA per (tile of (128 / G) * G (token, head) rows, KV head,
sequence), longest causal rows first, or with ``persistent=1`` one CTA an SM walking those work
items; nothing syncs with the host. The kernel's design is in the .cu's header.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import torch

from solbench.kernels.common import device_index, env_replaced, sm_count_of
from solbench.kernels.cuda import lazy_kernels
WHAT = "attention (cuda)"
#: head size -> the padded size the kernel is built for (attention.cu's Layout).
PADDED = {128: 128, 80: 80, 72: 80}
ROWS = 128      # (token, head) rows a CTA
KEYS = 128      # keys a tile
STAGES = 3
THREADS = 256 + 128  # two consumer warpgroups and a producer warpgroup


def panel_cols(padded: int) -> int:
    """Columns of one TMA box / swizzle panel: 64 (128-byte swizzle) for 128, 16 (32-byte) for 80."""
    return 64 if padded % 64 == 0 else 16


def shared_bytes(padded: int) -> int:
    """q, 3 stages of K and of V (128 x ``padded`` bf16 each), q's full and empty barriers and a
    full and an empty one a stage of K and of V, 1 KB alignment slack."""
    tile = ROWS * padded * 2
    return tile * (1 + 2 * STAGES) + (2 + 4 * STAGES) * 8 + 1024


SHARED_BYTES = shared_bytes(128)


class _Params(ctypes.Structure):
    """The kernel's attn::Params, field for field (three 128-byte tensor maps first), padded to
    its 512 bytes (a multiple of its 64-byte alignment: the launch copies that many)."""

    _fields_ = [("map_q", ctypes.c_uint64 * 16), ("map_k", ctypes.c_uint64 * 16), ("map_v", ctypes.c_uint64 * 16),
                ("out", ctypes.c_void_p), ("cu_q", ctypes.c_void_p), ("cu_k", ctypes.c_void_p),
                ("seqused_k", ctypes.c_void_p), ("out_t", ctypes.c_int64), ("out_h", ctypes.c_int64),
                ("scale_log2", ctypes.c_float), ("G", ctypes.c_int32), ("stage_rows", ctypes.c_int32),
                ("rows", ctypes.c_int32), ("row_tiles", ctypes.c_int32), ("kv_heads", ctypes.c_int32),
                ("items", ctypes.c_int32), ("block_table", ctypes.c_void_p), ("bt_stride", ctypes.c_int32),
                ("page", ctypes.c_int32), ("d", ctypes.c_int32), ("_pad", ctypes.c_uint8 * 28)]


assert ctypes.sizeof(_Params) == 512


@dataclass(frozen=True)
class CudaAttentionOptions:
    """Compile-time variants of the kernel. ``pingpong``: the two consumer warpgroups take turns
    issuing their products (FlashAttention-3's ping-pong) instead of interleaving freely: on,
    as measured faster (docs/DECISIONS.md). ``SOLBENCH_ATTN_CUDA=pingpong=0`` turns it off for
    A/B runs."""

    pingpong: bool = True
    #: one CTA an SM walks the work items (longest rows first), the producer loading the next
    #: item's q and keys while the consumers finish this one; with ping-pong only. Off until a
    #: GPU A/B (``SOLBENCH_ATTN_CUDA=persistent=1``).
    persistent: bool = False
    #: paged caches read in place, one TMA box a page, instead of staged dense first (which
    #: copies every key once more). Off until a GPU A/B (``SOLBENCH_ATTN_CUDA=paged=1``).
    paged: bool = False

    def __post_init__(self):
        for name in ("pingpong", "persistent", "paged"):
            if getattr(self, name) not in (0, 1):
                raise ValueError(f"{WHAT}: {name} is 0 or 1 (got {getattr(self, name)!r})")
        if self.persistent and not self.pingpong:
            raise ValueError(f"{WHAT}: the persistent kernel runs with pingpong=1 only")


OPTIONS_ENV = "SOLBENCH_ATTN_CUDA"


def kernel_name(causal: bool, pingpong: bool = True, persistent: bool = False, padded: int = 128) -> str:
    flag = lambda b: "true" if b else "false"  # noqa: E731
    return f"solbench::attn::attention_fwd<{flag(causal)}, {flag(pingpong)}, {flag(persistent)}, {padded}>"


#: (causal, pingpong, persistent): the persistent kernel exists with ping-pong only.
_VARIANTS = [(c, pp, ps) for c in (True, False) for pp, ps in ((False, False), (True, False), (True, True))]
#: One program a padded head size, so a process that runs only one size compiles only its kernels.
_kernel_sets = {dp: lazy_kernels(WHAT, "attention.cu", {v: kernel_name(*v, dp) for v in _VARIANTS},
                                 shared_bytes(dp)) for dp in sorted(set(PADDED.values()))}


def compile_kernels(output: str = "cubin", cache_dir=None, padded: int = 128):
    """Compile (or fetch from the disk cache) the causal and full kernels of one padded head size
    (128 or 80), each free-running, ping-pong and persistent (:data:`_VARIANTS`); no GPU needed."""
    return _kernel_sets[padded]().compile(output, cache_dir)


def prepare(device=None, padded: int = 128) -> dict:
    """Compile and load one padded size's kernels (first use) and say how (``jit_cache`` miss /
    disk / memory)."""
    return _kernel_sets[padded]().prepare(device)


def shape_reason(heads: int, kv_heads: int, head_size: int) -> str | None:
    """Why a problem of these head counts and size cannot run on the kernel (None when it can)."""
    g = heads // kv_heads
    if head_size not in PADDED or not 1 <= g <= ROWS:
        sizes = ", ".join(map(str, sorted(PADDED)))
        return (f"the CUDA kernel takes head_size {sizes} and up to {ROWS} query heads a KV head "
                f"(got head_size {head_size}, group {g})")
    return None


def cta_rows(g: int) -> int:
    """(token, head) rows a CTA owns: whole tokens of the group in the 128-row MMA tile."""
    return (ROWS // g) * g


def unsupported_reason(q, hkv: int, out, kv=()) -> str | None:
    """Why these (validated) tensors cannot run on the CUDA kernel, or None: ``q [T, H, D]`` over
    ``hkv`` KV heads, ``out`` like q, ``kv`` the dense ``k`` / ``v`` ``[rows, H_kv, D]`` when the
    caller passes them (staged keys are fresh contiguous buffers)."""
    if q.dtype != torch.bfloat16:
        return f"bf16 only (got {q.dtype})"
    why = shape_reason(q.shape[1], hkv, q.shape[2])
    if why:
        return why
    for name, t in (("q", q), *zip(("k", "v"), kv)):
        if t.data_ptr() % 16 or any(s % 8 for s in t.stride()[:2]):
            return f"{name}'s tokens and heads must be 16-byte aligned for TMA (strides {t.stride()})"
    if out.data_ptr() % 4 or any(s % 2 for s in out.stride()[:2]):
        return f"out's strides must be even (pairs are stored together), got {out.stride()}"
    if max([q.shape[0], *(t.shape[0] for t in kv)]) >= 2**31:
        return "tokens and key rows must be below 2^31"
    return None


def _tensor_map(into, t: torch.Tensor, box_heads: int, box_tokens: int) -> None:
    """A 3-D TMA descriptor of ``t [tokens, heads, D]`` bf16, into the params field ``into``:
    boxes of one swizzle panel's columns (:func:`panel_cols`) x ``box_heads`` heads x ``box_tokens``
    tokens. The map ends at column D: a box past it (72 in an 80-column build) reads zeros."""
    from solbench.kernels.cuda import jit

    tokens, heads, d = t.shape
    cols = panel_cols(PADDED[d])
    jit.tensor_map(into, t.data_ptr(), "BFLOAT16", [d, heads, tokens], [t.stride(1) * 2, t.stride(0) * 2],
                   [cols, box_heads, box_tokens], WHAT, swizzle=2 * cols)


def options() -> CudaAttentionOptions:
    """The kernel variant to launch: the defaults, or ``SOLBENCH_ATTN_CUDA``'s fields."""
    return env_replaced(OPTIONS_ENV, CudaAttentionOptions())


def paged_reason(k_cache, v_cache, block_table) -> str | None:
    """Why the kernel cannot read these paged caches in place (None when it can): nhd
    ``[blocks, page, H_kv, D]`` with pages of 16 to 128 keys dividing 128, 16-byte aligned, and
    an int32 block table with unit stride along a sequence's pages."""
    if k_cache.dim() != 4 or v_cache.shape != k_cache.shape:
        return "the caches are not nhd [blocks, page, H_kv, D] alike"
    if block_table.dtype != torch.int32 or block_table.stride(-1) != 1:
        return "the block table must be int32 with contiguous rows"
    for cache in (k_cache, v_cache):
        if cache.data_ptr() % 16 or any(st % 8 for st in cache.stride()[:3]):
            return f"the caches' pages, tokens and heads must be 16-byte aligned for TMA (strides {cache.stride()})"
    page = k_cache.shape[1]
    if page not in (16, 32, 64, 128):
        return f"pages of 16, 32, 64 or 128 keys (got {page})"
    if k_cache.shape[0] == 0 or max(k_cache.stride(0), v_cache.stride(0)) * 2 >= 2**40:
        return "a tensor map needs at least one block and strides below 2^40 bytes"
    return None


def _paged_tensor_map(into, cache: torch.Tensor) -> None:
    """A 4-D TMA descriptor of the nhd cache ``[blocks, page, H_kv, D]``: boxes of one panel's
    columns x one head x one page x one block."""
    from solbench.kernels.cuda import jit

    blocks, page, heads, d = cache.shape
    cols = panel_cols(PADDED[d])
    jit.tensor_map(into, cache.data_ptr(), "BFLOAT16", [d, heads, page, blocks],
                   [cache.stride(2) * 2, cache.stride(1) * 2, cache.stride(0) * 2], [cols, 1, page, 1], WHAT,
                   swizzle=2 * cols)


def launch(q, k, v, out, cu_seqlens_q, cu_seqlens_k, seqused_k, stage_rows: int, max_seqlen_q: int, scale: float,
           causal: bool, block_table=None) -> None:
    """One launch on dense keys: packed by ``cu_seqlens_k``, or staged (sequence s at rows
    ``s * stage_rows``, ``seqused_k[s]`` of them); or, with ``block_table``, on the nhd caches
    ``k`` / ``v`` read in place (``seqused_k[s]`` keys, at most ``stage_rows``; :func:`paged_reason`
    None). Tensors validated, :func:`unsupported_reason` None."""
    from solbench.kernels.attention import LOG2E
    from solbench.kernels.cuda import jit

    total, h, d = q.shape
    num_seqs = cu_seqlens_q.shape[0] - 1
    if total == 0 or num_seqs == 0 or max_seqlen_q <= 0:
        return
    hkv = k.shape[-2]
    g = h // hkv
    padded = PADDED[d]
    device = device_index(q.device)
    fns, _ = _kernel_sets[padded]().get(device)
    params = _Params()
    params.d = d
    _tensor_map(params.map_q, q, g, ROWS // g)
    if block_table is not None:
        _paged_tensor_map(params.map_k, k)
        _paged_tensor_map(params.map_v, v)
        params.block_table, params.bt_stride, params.page = block_table.data_ptr(), block_table.stride(0), k.shape[1]
    else:
        _tensor_map(params.map_k, k, 1, KEYS)
        _tensor_map(params.map_v, v, 1, KEYS)
    params.out, params.cu_q = out.data_ptr(), cu_seqlens_q.data_ptr()
    params.cu_k = cu_seqlens_k.data_ptr() if cu_seqlens_k is not None else None
    params.seqused_k = seqused_k.data_ptr() if seqused_k is not None else None
    params.out_t, params.out_h = out.stride(0), out.stride(1)
    params.scale_log2 = float(scale) * LOG2E
    rows = cta_rows(g)
    params.G, params.stage_rows, params.rows = g, int(stage_rows), rows
    if -(-int(max_seqlen_q) * g // rows) * rows + ROWS >= 2**31:  # a sequence's (token, head) rows are int32
        raise ValueError(f"{WHAT}: max_seqlen_q * (query heads a KV head) must be below 2**31 "
                         f"(got {max_seqlen_q} * {g})")
    # Row tiles a sequence (the longest's); causal or not is the kernel's template argument.
    grid = (-(-int(max_seqlen_q) * g // rows), hkv, num_seqs)
    if grid[0] > 2**31 - 1 or grid[1] > 65535 or grid[2] > 65535:
        raise ValueError(f"{WHAT}: grid {grid} is past the launch limits (KV heads and sequences up to 65535)")
    params.row_tiles, params.kv_heads = grid[0], grid[1]
    stream = torch.cuda.current_stream(q.device).cuda_stream
    opt = options()
    if opt.persistent:  # one CTA an SM walks items blockIdx.x, + gridDim.x, ... (an int32 counter)
        items, sms = grid[0] * grid[1] * grid[2], sm_count_of(device)
        if items > 2**31 - 1 - sms:
            raise ValueError(f"{WHAT}: {items} work items (row tiles x KV heads x sequences) are past int32")
        params.items = items
        grid = (min(items, sms), 1, 1)
    fn = fns[(bool(causal), bool(opt.pingpong), bool(opt.persistent))]
    jit.launcher().launch(fn, grid, (THREADS, 1, 1), stream, params, device, False, shared_bytes(padded))
