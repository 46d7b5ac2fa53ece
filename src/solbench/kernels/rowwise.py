"""Shared mechanics of row-wise kernels (norms, per-token quantization): how a ``[rows, n]``
problem is tiled, and small ``@triton.jit`` helpers the kernels share.

A row-wise kernel reads each row once, reduces over it and writes it once, so the row stays on chip
in between: up to ``MAX_WHOLE_ROW`` a program owns ``block_m`` whole rows as one register tile;
longer rows are looped over in chunks, one row per program (the write pass re-reads it from L2).

A launch's tile is a :class:`RowOptions` (:func:`row_options`): the caller's, when its launcher is
given one; else this device's tuned entry for ``(kernel, n)`` (runtime/tuning.py, which
``solbench tune`` fills from :func:`row_candidates`); else first principles: ``BYTES_PER_THREAD``
per tensor per thread (enough loads in flight to cover HBM latency without spills), about
``TILE_ELEMS`` elements a program (several short rows a program; wide rows one row with more
warps), and never fewer programs than SMs while a tile could split.

Public API: :class:`RowOptions`, :func:`row_options`, :func:`row_grid`, :func:`rows_view`,
:func:`check_hidden`, :func:`rows_of`, :func:`check_param`, :func:`output_like`,
:func:`row_candidates`; the
``@triton.jit`` helpers the kernels share (``tile_offsets``, ``row_ptrs``) are in ``_rowwise_triton``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from solbench.kernels.common import as_rows, fill_sms, next_pow2, pow2_range
from solbench.runtime import tuning

# ---- tunables ---------------------------------------------------------------------------------
# Each may be overridden from the environment for tuning sweeps on a device without editing code
# (``SOLBENCH_ROW_TILE_ELEMS=8192 solbench run ...``); the values below are the defaults.


def _env_int(name: str, default: int) -> int:
    import os

    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < 1 or value & (value - 1):
        raise ValueError(f"{name}={value} must be a power of two >= 1")
    return value


#: Elements of one row kept in registers when the row is processed whole. 16K bf16 = 32 KB per
#: row; with 16 warps that is 32 elements (64 B) per thread per tensor, the most that fits beside
#: a second tensor (residual, gate) without spilling.
MAX_WHOLE_ROW = _env_int("SOLBENCH_ROW_MAX_WHOLE_ROW", 16384)
#: Chunk length for rows longer than MAX_WHOLE_ROW.
CHUNK_N = _env_int("SOLBENCH_ROW_CHUNK_N", 4096)
#: Target elements per program tile (rows x padded row length) for short rows.
TILE_ELEMS = _env_int("SOLBENCH_ROW_TILE_ELEMS", 4096)
#: Bytes of one tensor each thread loads per tile: 32 B = two 16-byte vector accesses.
BYTES_PER_THREAD = _env_int("SOLBENCH_ROW_BYTES_PER_THREAD", 32)
#: Bytes per thread on a launch too small to give every SM a program (decode: a handful of rows):
#: there the time is one memory round trip per program, not bandwidth, so each thread issues a
#: single 16-byte vector of each tensor and the row's reduction spreads over more warps (32 was
#: mixed across the decode shapes; the tune's few-rows entries cover the exceptions).
DECODE_BYTES_PER_THREAD = _env_int("SOLBENCH_ROW_DECODE_BYTES_PER_THREAD", 16)
MAX_WARPS = _env_int("SOLBENCH_ROW_MAX_WARPS", 16)
#: Hard limit on the row length: column offsets stay int32 inside a row (row offsets are int64).
MAX_N = 1 << 24

@dataclass(frozen=True)
class RowOptions:
    """Launch options of a row-wise kernel: how one program tiles the rows (:func:`row_options`
    fills them from the caller's, the tuned table or first principles).

    ``block_m`` rows per program, ``block_n`` columns per tile (a power of two >= n in the whole
    row regime, :data:`CHUNK_N` when ``chunked``), ``num_warps`` warps per program.

    ``split`` (whole rows whose length is not a power of two; only the row-norm kernel honours
    it): the row is covered by the two or three power-of-two column tiles of
    :func:`column_tiles` instead of one ``block_n`` tile, so 1152 is 1024 + 256 lanes (the 256
    masked to 128) on one warp, not 2048 (see :func:`split_tails` for why not 1024 + 128).

    ``programs_per_sm > 0`` makes the launch persistent (only kernels that look their tile up with
    ``persistent_ok``, the row-norm kernel, honour it): at most that many programs per SM, each
    looping over tiles of ``block_m`` rows with the loads of the next ``stages - 1`` tiles in
    flight (Triton's software pipelining, cp.async into shared memory).

    ``maxnreg > 0`` caps the registers per thread (ptxas ``.maxnreg``), so more warps fit on an SM
    than the compiler's own allocation allows; 0 leaves the choice to the compiler.

    ``params_first`` (the row-norm kernel): True / False issues the weight/bias loads with the
    row's / after the reduction for this tile, whatever the launch's size; None (the default)
    leaves it to kernels/rownorm.params_first's rule by programs per SM.
    """

    block_m: int
    block_n: int
    num_warps: int
    chunked: bool = False
    programs_per_sm: int = 0
    stages: int = 1
    split: bool = False
    maxnreg: int = 0
    params_first: bool | None = None

    @property
    def persistent(self) -> bool:
        return self.programs_per_sm > 0 and not self.chunked

    def launch_kwargs(self) -> dict:
        """Keyword arguments for ``kernel[grid](..., **cfg.launch_kwargs())``: the constexprs
        ``BLOCK_M``, ``BLOCK_N``, ``CHUNKED``, ``num_warps`` and, when set, ``maxnreg``."""
        kwargs = {"BLOCK_M": self.block_m, "BLOCK_N": self.block_n, "CHUNKED": self.chunked,
                  "num_warps": self.num_warps}
        if self.maxnreg:
            kwargs["maxnreg"] = self.maxnreg
        return kwargs

    def column_kwargs(self, n: int, elem_bytes: int = 2) -> dict:
        """For a kernel with the split whole-row path (``BLOCK_T1``/``BLOCK_T2`` constexprs, the
        row norms): the column tiles of a row of ``n`` elements of ``elem_bytes`` bytes
        (:func:`column_tiles`, tails at least :func:`split_tails` wide) when ``split``, to be
        merged over :meth:`launch_kwargs`; empty otherwise."""
        if not self.split or self.chunked:
            return {}
        main, tail1, tail2 = column_tiles(n, split_tails(self.num_warps, elem_bytes))
        return {"BLOCK_N": main, "BLOCK_T1": tail1, "BLOCK_T2": tail2}


def warp_width(elem_bytes: int) -> int:
    """Elements one warp covers with one 16-byte vector per lane (256 bf16, 128 fp32)."""
    return 32 * max(1, 16 // max(1, elem_bytes))


def split_tails(num_warps: int, elem_bytes: int) -> int:
    """The narrowest tail tile :func:`column_tiles` may cut for a program of ``num_warps``
    warps over ``elem_bytes``-byte elements: one 16-byte vector per thread (256 bf16 lanes per
    warp), the last one masked, so every column tile of the row shares the main tile's layout. A
    narrower tail gets its own register layout, and Triton then shuffles the whole row between the
    two layouts on the way in and out (136 of 760 sm_90 instructions of layer_norm's one-warp
    1024 + 128 tile; 1% slower, docs/DECISIONS.md)."""
    return max(1, num_warps) * warp_width(elem_bytes)


#: The smallest column tile :func:`column_tiles` splits off (16 bf16 = one 32-byte sector).
MIN_COLUMN_TILE = 16


def column_tiles(n: int, min_tail: int = 1) -> tuple[int, int, int]:
    """Power-of-two column tiles ``(main, tail1, tail2)`` that cover a row of ``n`` elements
    with fewer masked lanes than one ``next_pow2(n)`` tile: the largest power of two that fits,
    then the next, the last one rounded up (1152 -> 1024 + 128, 7168 -> 4096 + 2048 + 1024,
    5120 -> 4096 + 1024); each tail at least ``min_tail`` (a power of two, :func:`split_tails`;
    1152 with 256 -> 1024 + 256). Every tile but the last lies wholly inside the row (the kernel
    drops their column masks). ``(next_pow2(n), 0, 0)`` when splitting saves nothing (powers of
    two, 1000 -> 512 + 256 + 256, 1152 with 1024 -> 1024 + 1024) or would cut a tile under
    :data:`MIN_COLUMN_TILE`."""
    n, floor = int(n), next_pow2(max(1, min_tail))
    tiles = [1 << (n.bit_length() - 1)] if n > 0 else []
    rest = n - sum(tiles)
    while rest > 0 and len(tiles) < 3:
        tile = max(1 << (rest.bit_length() - 1), floor)
        if tile < rest and len(tiles) == 2:  # the last tile: rounded up to cover the rest
            tile = max(next_pow2(rest), floor)
        tiles.append(tile)
        rest -= tile
    if len(tiles) <= 1 or sum(tiles) >= next_pow2(n) or min(tiles) < MIN_COLUMN_TILE:
        return next_pow2(n), 0, 0
    main, tail1, tail2 = tiles + [0] * (3 - len(tiles))
    return main, tail1, tail2


def _warps_for(elems: int, elem_bytes: int, bytes_per_thread: int = BYTES_PER_THREAD) -> int:
    """Warps so that each thread moves about ``bytes_per_thread`` bytes of one tensor (a power of
    two in [1, MAX_WARPS])."""
    per_thread = max(1, bytes_per_thread // max(1, elem_bytes))
    want = max(1, min(MAX_WARPS, elems // (32 * per_thread)))
    warps = 1
    while warps * 2 <= want:
        warps *= 2
    return warps


def row_options(n: int, rows: int, elem_bytes: int = 2, kernel: str = "", persistent_ok: bool = False,
                options: RowOptions | None = None) -> RowOptions:
    """The tile for ``rows`` rows of ``n`` elements of ``elem_bytes`` bytes each.

    ``options``, when given, wins over the table and the rule. ``kernel`` names the kernel's
    tuned-table key (none: first principles). ``block_m`` never exceeds the next power of two of
    ``rows``, so a 3-row decode batch of hidden 128 is one program of 4 rows, not 32 rows of
    masked-off work. ``persistent_ok``: the caller's kernel can run a persistent
    launch (``solbench tune`` then tries some); otherwise a tuned persistent entry is launched
    one program per tile. A regular tuned entry (not a row-count tier's, ``kernel@few_rows`` or
    ``kernel@many_rows``) was measured on larger launches, so on this one its rows per program are
    still split while SMs would go idle (kernels/common.fill_sms); a tier's entry was measured on
    launches like this one and is used as it is.
    """
    check_hidden(n, kernel or "row-wise kernel")
    programs_of = lambda bm: (rows + bm - 1) // bm  # noqa: E731 - the launch's program count for bm rows each
    chosen, regular_tuned = options, False
    if chosen is None and kernel:
        tuned, key = tuning.lookup_keyed(kernel, n, family="row_persistent" if persistent_ok else "row",
                                         elem_bytes=elem_bytes, rows=rows)
        chosen = RowOptions(**tuned) if tuned is not None else None
        regular_tuned = key == kernel
    if chosen is not None:
        chosen = replace(chosen, block_m=max(1, min(chosen.block_m, next_pow2(max(1, rows)))))
        if chosen.persistent and not persistent_ok:
            chosen = replace(chosen, programs_per_sm=0, stages=1)
        if regular_tuned and not chosen.persistent:  # tuned on larger launches: no idle SMs here
            bm, warps = fill_sms(chosen.block_m, chosen.num_warps, programs_of, tuning.sm_count())
            chosen = replace(chosen, block_m=bm, num_warps=_decode_warps(bm, chosen.block_n, warps, elem_bytes,
                                                                           programs_of(bm), chosen.chunked))
        return chosen
    if n > MAX_WHOLE_ROW:
        return RowOptions(block_m=1, block_n=CHUNK_N, num_warps=_warps_for(CHUNK_N, elem_bytes), chunked=True)
    block_n = next_pow2(n)
    block_m = max(1, min(TILE_ELEMS // block_n, next_pow2(max(1, rows))))
    block_m, warps = fill_sms(block_m, _warps_for(block_m * block_n, elem_bytes), programs_of, tuning.sm_count())
    warps = _decode_warps(block_m, block_n, warps, elem_bytes, programs_of(block_m), False)
    return RowOptions(block_m=block_m, block_n=block_n, num_warps=warps)


def _decode_warps(block_m: int, block_n: int, warps: int, elem_bytes: int, programs: int, chunked: bool) -> int:
    """``warps``, raised to :data:`DECODE_BYTES_PER_THREAD` per thread when the launch leaves SMs
    without a program even at one row per program (see kernels/common.fill_sms); whole rows only."""
    sms = tuning.sm_count()
    if chunked or not sms or programs >= sms:
        return warps
    return max(warps, _warps_for(block_m * block_n, elem_bytes, DECODE_BYTES_PER_THREAD))


def row_grid(rows: int, cfg: RowOptions, sm_count: int | None = None) -> tuple[int]:
    """One program per ``block_m`` rows; for a persistent config at most ``programs_per_sm``
    programs per SM (``sm_count`` SMs; None: the current device's, see runtime/tuning.sm_count)."""
    tiles = (rows + cfg.block_m - 1) // cfg.block_m
    if cfg.persistent:
        sms = sm_count if sm_count is not None else tuning.sm_count() or 1
        return (max(1, min(tiles, sms * cfg.programs_per_sm)),)
    return (tiles,)


def check_hidden(n: int, what: str, multiple_of: int = 1) -> None:
    """Raise a ValueError naming the supported row lengths when ``n`` is not one of them."""
    if not (1 <= n <= MAX_N):
        raise ValueError(f"{what}: hidden size {n} is not supported (supported: 1..{MAX_N})")
    if multiple_of > 1 and n % multiple_of:
        raise ValueError(f"{what}: hidden size {n} must be a multiple of {multiple_of}")


def rows_view(x, what: str, arg: str = "x", n: int | None = None):
    """``x[..., n]`` viewed as ``[rows, n]`` with a single row stride, without copying; the last
    dim must be contiguous. ``n`` (optional) checks the row length."""
    if n is not None and (x.dim() == 0 or x.shape[-1] != n):
        raise ValueError(f"{what}: {arg} must have last dimension {n}, got shape {tuple(x.shape)}")
    return as_rows(x, what, arg)


# ---- argument checks for public wrappers of row-wise kernels ----------------------------------
def supported_dtypes():
    import torch

    return (torch.bfloat16, torch.float16, torch.float32)


def rows_of(x, what: str, arg: str = "x", dtypes=None):
    """Validate an activation tensor (``dtypes``, default :func:`supported_dtypes`; a supported
    row length) and view it as ``[rows, n]`` (no copy). Returns (x2d, n). Any device: off CUDA the
    ops compute with their torch formulation."""
    import torch

    from solbench.kernels.common import check_dtype

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: {arg} must be a torch.Tensor, got {type(x).__name__}")
    check_dtype(x, dtypes or supported_dtypes(), what, arg)
    if x.dim() == 0:
        raise ValueError(f"{what}: {arg} must have at least one dimension")
    check_hidden(int(x.shape[-1]), what)
    return rows_view(x, what, arg), int(x.shape[-1])


def check_residual(x, residual, what: str) -> None:
    """A residual added to ``x`` must be rows of the same shape, dtype and device."""
    rows_of(residual, what, "residual")
    if residual.shape != x.shape or residual.dtype != x.dtype:
        raise ValueError(f"{what}: residual must match x in shape and dtype: x {tuple(x.shape)} {x.dtype}, "
                         f"residual {tuple(residual.shape)} {residual.dtype}")
    if residual.device != x.device:
        raise ValueError(f"{what}: residual is on {residual.device}, x on {x.device}")


def check_param(t, n: int, x, what: str, arg: str, dtypes=None) -> None:
    """A per-channel parameter (weight, bias): 1-D of length ``n``, contiguous, on x's device,
    of one of ``dtypes`` (default :func:`supported_dtypes`)."""
    import torch

    from solbench.kernels.common import check_dtype

    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{what}: {arg} must be a torch.Tensor, got {type(t).__name__}")
    check_dtype(t, dtypes or supported_dtypes(), what, arg)
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(f"{what}: {arg} must have shape ({n},), got {tuple(t.shape)}")
    if n > 1 and t.stride(0) != 1:
        raise ValueError(f"{what}: {arg} must be contiguous")
    if t.device != x.device:
        raise ValueError(f"{what}: {arg} is on {t.device}, x on {x.device}")


def output_like(out, x, what: str, arg: str = "out", dtype=None):
    """``out`` validated against ``x``'s shape (and ``dtype``, default x's), or a new tensor.
    Aliasing is checked by the custom op's body (kernels/common.check_disjoint), where the tensors
    are real under torch.compile and graph capture too."""
    import torch

    from solbench.kernels.common import check_out

    dtype = dtype or x.dtype
    if out is None:
        return torch.empty(x.shape, dtype=dtype, device=x.device)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{what}: {arg} must be a torch.Tensor, got {type(out).__name__}")
    check_out(out, x.shape, dtype, x.device, what, arg)
    return out


# ---- what `solbench tune` tries --------------------------------------------------------------------
#: Largest register tile (elements) a candidate may use: beyond it the row no longer fits in
#: registers beside a second tensor (see MAX_WHOLE_ROW).
MAX_TILE = 16384
#: Persistent row-kernel candidates: programs per SM tried, and the shared memory their pipeline
#: (stages - 1 tiles of up to two input tensors) may take on one SM (H100/H200 have 228 KB).
PERSISTENT_PROGRAMS_PER_SM = (2, 4, 8)
PERSISTENT_SMEM_PER_SM = 160 * 1024


def row_candidates(n: int, elem_bytes: int, rows: int, few_rows: bool = False,
                   persistent: bool = False) -> list[dict]:
    """Tiles worth measuring for a row kernel on ``rows`` rows of ``n`` elements: each thread
    moves 16-128 bytes of one tensor per tile (at least one 16-byte vector, at most what fits in
    registers; ``few_rows``, latency-bound launches, down to 8 bytes), and tiles never hold more
    rows than there are. ``persistent`` (family ``row_persistent``, the row-norm kernel) adds, for
    rows that are not a power of two, the same tiles split into unpadded column tiles (``split``),
    and, outside the few-rows regime, persistent launches of the small tiles (2-stage pipelined, a
    few programs per SM within a shared-memory budget)."""
    max_m = next_pow2(max(1, rows))
    out: list[dict] = []

    def per_thread_ok(tile: int, warps: int) -> bool:
        # few rows: also 8 bytes per thread, liger's rms_norm tile for short decode rows (3 x 512:
        # 4 warps of 8-byte loads; ours at 2 warps of 16 bytes trailed it by 0.25 us on the H200)
        b = tile * elem_bytes / (32 * warps)
        return (8 if few_rows else 16) <= b <= 128

    if n > MAX_WHOLE_ROW:
        for block_n in sorted({CHUNK_N, 2048, 4096, 8192}):
            for warps in pow2_range(1, 16):
                if per_thread_ok(block_n, warps):
                    out.append({"block_m": 1, "block_n": block_n, "num_warps": warps, "chunked": True})
        return out
    block_n = next_pow2(n)
    for block_m in pow2_range(1, min(max_m, 64)):
        tile = block_m * block_n
        if tile > MAX_TILE:
            break
        for warps in pow2_range(1, 16):
            if per_thread_ok(tile, warps):
                out.append({"block_m": block_m, "block_n": block_n, "num_warps": warps, "chunked": False})
    if not persistent:
        return out
    # Rows that are not a power of two, as two or three column tiles without the padding
    # (1152 = 1024 + 256 on one warp; column_tiles, split_tails): per-thread bytes of the lanes the
    # split covers, where it still splits at that many warps.
    for block_m in pow2_range(1, min(max_m, 64)):
        if block_m * block_n > MAX_TILE:
            break
        for warps in pow2_range(1, 16):
            covered = sum(column_tiles(n, split_tails(warps, elem_bytes)))
            if covered < block_n and per_thread_ok(block_m * covered, warps):
                out.append({"block_m": block_m, "block_n": block_n, "num_warps": warps, "chunked": False,
                            "split": True})
    if not few_rows:
        # Tiles of 2048-8192 elements at 32 bytes per thread (the first-principles load width),
        # one stage ahead; the pipeline holds that tile of x and of the residual in shared memory.
        for cfg in out[:]:
            tile = cfg["block_m"] * block_n
            full_width = tile * elem_bytes == 32 * 32 * cfg["num_warps"]
            if cfg.get("split") or tile not in (2048, 4096, 8192) or not full_width:
                continue
            for pps in PERSISTENT_PROGRAMS_PER_SM:
                if pps * 2 * tile * elem_bytes <= PERSISTENT_SMEM_PER_SM:
                    out.append({**cfg, "programs_per_sm": pps, "stages": 2})
    return out


# "row": a RowOptions; "row_persistent": the same for a kernel that can also run a persistent launch.
tuning.register_family("row", row_candidates)
tuning.register_family("row_persistent", functools.partial(row_candidates, persistent=True))
