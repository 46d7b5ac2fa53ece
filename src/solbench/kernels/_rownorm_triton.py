"""The Triton kernel behind :mod:`solbench.kernels.rownorm` (imported at the first launch, so
``import solbench`` decorates no Triton kernel): one kernel for the RMS, Layer and L2 norms with an
optional residual add, sigmoid-linear gate, affine weight/bias and per-segment rows. The formula,
and the launch policy it is given, are in :mod:`solbench.kernels.rownorm`."""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.kernels import rownorm
from solbench.kernels.rowwise import RowOptions, row_grid, row_options


@triton.jit
def _seg_offsets(r, segs, seg_stride, SEGMENTED: tl.constexpr):
    """(token index, segment index, element offset of the segment inside its token)."""
    if SEGMENTED:
        t = r // segs
        s = r - t * segs
        return t, s, s * seg_stride
    else:
        return r, r * 0, r * 0


@triton.jit
def _prenorm(x_ptr, res_ptr, z_ptr, res_out_ptr, t, seg_off, c, mask,
             x_stride, res_stride, z_stride, res_out_stride,
             HAS_RES: tl.constexpr, HAS_Z: tl.constexpr, NORM_BEFORE_GATE: tl.constexpr,
             STORE_RES: tl.constexpr, RELOAD_RES: tl.constexpr,
             LOAD_EVICT: tl.constexpr, STORE_CACHE: tl.constexpr):
    """The value that is normalized, for one tile of columns ``c``: x (+ residual, rounded to
    the residual dtype as upstream stores it), times silu(z) when the gate comes first.
    ``RELOAD_RES`` (chunked re-pass) reads the already stored sum back instead of recomputing."""
    if HAS_RES:
        if RELOAD_RES:
            v = tl.load(res_out_ptr + t * res_out_stride + seg_off + c, mask=mask, other=0.0,
                        eviction_policy=LOAD_EVICT).to(tl.float32)
        else:
            v = tl.load(x_ptr + t * x_stride + seg_off + c, mask=mask, other=0.0,
                        eviction_policy=LOAD_EVICT).to(tl.float32)
            v += tl.load(res_ptr + t * res_stride + seg_off + c, mask=mask, other=0.0,
                         eviction_policy=LOAD_EVICT).to(tl.float32)
            v = v.to(res_out_ptr.dtype.element_ty)
            if STORE_RES:
                tl.store(res_out_ptr + t * res_out_stride + seg_off + c, v, mask=mask, cache_modifier=STORE_CACHE)
            v = v.to(tl.float32)
    else:
        v = tl.load(x_ptr + t * x_stride + seg_off + c, mask=mask, other=0.0, eviction_policy=LOAD_EVICT).to(tl.float32)
    if HAS_Z:
        if not NORM_BEFORE_GATE:
            z = tl.load(z_ptr + t * z_stride + seg_off + c, mask=mask, other=0.0,
                        eviction_policy=LOAD_EVICT).to(tl.float32)
            v = v * (z * tl.sigmoid(z))
    return v


@triton.jit
def _no_affine(cmask):
    """Placeholders for (weight, bias, gate) that are not loaded (yet): the compiler drops them."""
    w = cmask.to(tl.float32)
    return w, w, w


@triton.jit
def _load_affine(z_ptr, w_ptr, w2_ptr, b_ptr, t, s, seg_off, c, mask, cmask,
                 z_stride, w_seg_stride, w2_from,
                 HAS_W: tl.constexpr, HAS_W2: tl.constexpr, HAS_B: tl.constexpr, HAS_Z: tl.constexpr,
                 NORM_BEFORE_GATE: tl.constexpr, W_PER_SEG: tl.constexpr, ROW_BROADCAST: tl.constexpr,
                 LOAD_EVICT: tl.constexpr):
    """(weight, bias, gate after the norm) for columns ``c``, as fp32. Shared parameters load as
    one ``[1, BLOCK_N]`` vector per program (16-byte accesses); per-segment ones (group norms) as
    a ``[BLOCK_M, BLOCK_N]`` tile. Unused ones are a placeholder the compiler drops.
    ``ROW_BROADCAST`` loads shared parameters as the ``[BLOCK_M, BLOCK_N]`` tile too (every row the
    same addresses, served by L1): for a narrow tail tile of a split row (128 lanes over 4 warps),
    where the vector layout would give each thread one 2-byte element.

    The whole-row path calls this right after loading the row, before the reduction: a load after
    the reduction's barrier is not issued until the reduction is done, so a decode launch (one
    wave, every program waiting on memory) paid a second DRAM round trip for the weight."""
    w, b, g = _no_affine(cmask)
    if HAS_W:
        if W_PER_SEG:
            w = tl.load(w_ptr + s * w_seg_stride + c, mask=mask, other=0.0).to(tl.float32)
        elif ROW_BROADCAST:
            w = tl.load(w_ptr + t * 0 + c, mask=mask, other=0.0).to(tl.float32)
        else:
            w = tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32)
        if HAS_W2:
            if ROW_BROADCAST:
                w2 = tl.load(w2_ptr + t * 0 + c, mask=mask, other=0.0).to(tl.float32)
            else:
                w2 = tl.load(w2_ptr + c, mask=cmask, other=0.0).to(tl.float32)
            w = tl.where(s >= w2_from, w2, w)
    if HAS_B:
        if W_PER_SEG:
            b = tl.load(b_ptr + s * w_seg_stride + c, mask=mask, other=0.0).to(tl.float32)
        elif ROW_BROADCAST:
            b = tl.load(b_ptr + t * 0 + c, mask=mask, other=0.0).to(tl.float32)
        else:
            b = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    if HAS_Z:
        if NORM_BEFORE_GATE:
            z = tl.load(z_ptr + t * z_stride + seg_off + c, mask=mask, other=0.0,
                        eviction_policy=LOAD_EVICT).to(tl.float32)
            g = z * tl.sigmoid(z)
    return w, b, g


@triton.jit
def _store_affine(y, w, b, g, out_ptr, t, seg_off, c, mask, out_stride,
                  HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_Z: tl.constexpr,
                  NORM_BEFORE_GATE: tl.constexpr, STORE_CACHE: tl.constexpr):
    """Affine weight/bias and the gate after the norm (from :func:`_load_affine`), one rounding,
    one store."""
    if HAS_W:
        y = y * w
    if HAS_B:
        y = y + b
    if HAS_Z:
        if NORM_BEFORE_GATE:
            y = y * g
    tl.store(out_ptr + t * out_stride + seg_off + c, y.to(out_ptr.dtype.element_ty), mask=mask,
             cache_modifier=STORE_CACHE)


@triton.jit
def _load_cols(x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, res_out_ptr, t, s, seg_off, rmask, n,
               z_stride, w_seg_stride, w2_from, x_stride, res_stride, res_out_stride,
               START: tl.constexpr, BLOCK: tl.constexpr, FULL: tl.constexpr,
               HAS_RES: tl.constexpr, HAS_Z: tl.constexpr, NORM_BEFORE_GATE: tl.constexpr,
               HAS_W: tl.constexpr, HAS_W2: tl.constexpr, HAS_B: tl.constexpr, W_PER_SEG: tl.constexpr,
               PARAMS_FIRST: tl.constexpr, LOAD_EVICT: tl.constexpr, STORE_CACHE: tl.constexpr):
    """One column tile ``[START, START + BLOCK)`` of the tile's rows: (value to normalize, weight,
    bias, gate, columns, column mask, mask). ``FULL``: the tile lies inside the row (a split row's
    main tile), so it has no column mask to compute or apply. Weight/bias/gate are loaded here when
    ``PARAMS_FIRST`` (see :func:`_load_affine`), else they are placeholders loaded later."""
    cols = START + tl.arange(0, BLOCK)[None, :]
    if FULL:
        cmask = tl.full([1, BLOCK], 1, tl.int1)
    else:
        cmask = cols < n
    mask = rmask & cmask
    v = _prenorm(x_ptr, res_ptr, z_ptr, res_out_ptr, t, seg_off, cols, mask,
                 x_stride, res_stride, z_stride, res_out_stride,
                 HAS_RES, HAS_Z, NORM_BEFORE_GATE, True, False, LOAD_EVICT, STORE_CACHE)
    if PARAMS_FIRST:
        w, b, g = _load_affine(z_ptr, w_ptr, w2_ptr, b_ptr, t, s, seg_off, cols, mask, cmask,
                               z_stride, w_seg_stride, w2_from,
                               HAS_W, HAS_W2, HAS_B, HAS_Z, NORM_BEFORE_GATE, W_PER_SEG, START > 0, LOAD_EVICT)
    else:
        w, b, g = _no_affine(cmask)
    return v, w, b, g, cols, cmask, mask


@triton.jit
def _finish_cols(y, w, b, g, cols, cmask, mask, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr,
                 t, s, seg_off, z_stride, w_seg_stride, w2_from, out_stride,
                 HAS_W: tl.constexpr, HAS_W2: tl.constexpr, HAS_B: tl.constexpr, HAS_Z: tl.constexpr,
                 NORM_BEFORE_GATE: tl.constexpr, W_PER_SEG: tl.constexpr, PARAMS_FIRST: tl.constexpr,
                 TAIL: tl.constexpr, LOAD_EVICT: tl.constexpr, STORE_CACHE: tl.constexpr):
    """The normalized values ``y`` of one column tile from :func:`_load_cols`: apply the affine
    parameters and the gate, store."""
    if not PARAMS_FIRST:
        w, b, g = _load_affine(z_ptr, w_ptr, w2_ptr, b_ptr, t, s, seg_off, cols, mask, cmask,
                               z_stride, w_seg_stride, w2_from,
                               HAS_W, HAS_W2, HAS_B, HAS_Z, NORM_BEFORE_GATE, W_PER_SEG, TAIL, LOAD_EVICT)
    _store_affine(y, w, b, g, out_ptr, t, seg_off, cols, mask, out_stride,
                  HAS_W, HAS_B, HAS_Z, NORM_BEFORE_GATE, STORE_CACHE)


@triton.jit
def _rstd(sum_sq, n, eps, MODE: tl.constexpr):
    """``1 / sqrt(mean(v^2) + eps)`` (``sum(v^2)`` for the L2 norm): one SFU reciprocal square
    root instead of a rounded square root and a division, whose dependent latency every program
    of a decode launch waits through after its reduction."""
    if MODE == 2:
        return tl.math.rsqrt(sum_sq + eps)
    else:
        return tl.math.rsqrt(sum_sq / n + eps)


@triton.jit
def _centre(v, mean, mask, FULL: tl.constexpr):
    """``v - mean`` with masked lanes zeroed, so they add nothing to the squares' sum; a ``FULL``
    tile (as in :func:`_load_cols`) has only whole masked rows, which are never stored."""
    if FULL:
        return v - mean
    else:
        return tl.where(mask, v - mean, 0.0)


@triton.jit
def _add_pairs(a1, a2, b1, b2):
    return a1 + b1, a2 + b2


@triton.jit
def _shifted_sums(v, mask, shift):
    """Per-row (sum of d, sum of d^2) for ``d = v - shift`` over the unmasked lanes, in one
    reduction, shaped ``[BLOCK_M, 1]``."""
    d = tl.where(mask, v - shift, 0.0)
    s1, s2 = tl.reduce((d, d * d), axis=1, combine_fn=_add_pairs)
    return s1[:, None], s2[:, None]


@triton.jit
def _whole_rows(tile, x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr, res_out_ptr,
                rows, n, eps, segs, seg_stride, w_seg_stride, w2_from,
                x_stride, res_stride, z_stride, out_stride, res_out_stride,
                MODE: tl.constexpr, HAS_RES: tl.constexpr, HAS_Z: tl.constexpr, NORM_BEFORE_GATE: tl.constexpr,
                HAS_W: tl.constexpr, HAS_W2: tl.constexpr, HAS_B: tl.constexpr, SEGMENTED: tl.constexpr,
                W_PER_SEG: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                PARAMS_FIRST: tl.constexpr, BLOCK_T1: tl.constexpr, BLOCK_T2: tl.constexpr,
                LOAD_EVICT: tl.constexpr, STORE_CACHE: tl.constexpr, SHIFTED_STATS: tl.constexpr):
    """Tile ``tile`` (``BLOCK_M`` whole rows) in registers: read once, reduce, write once.
    ``PARAMS_FIRST``: the weight/bias/gate loads are issued with the row's, before the reduction
    (:func:`params_first`). A row is one column tile of ``BLOCK_N`` (a power of two >= n), or,
    with ``BLOCK_T1`` (and ``BLOCK_T2``) > 0, two or three tiles ``BLOCK_N + BLOCK_T1 (+ BLOCK_T2)``
    that cover n = 1152 as 1024 + 256 (one warp; 256 = a 16-byte vector per thread, 128 of it
    masked) instead of a 2048-lane tile with 44% of its lanes masked (kernels/rowwise.column_tiles,
    split_tails). ``LOAD_EVICT`` / ``STORE_CACHE``: cache hints on the row's own
    loads and stores (:func:`streaming_hints`). ``SHIFTED_STATS`` (LayerNorm): the mean and
    variance from one reduction of shifted sums (:func:`shifted_stats`)."""
    # int64 row indices: row * stride stays exact past 2^31 elements (tile * BLOCK_M < rows + BLOCK_M
    # fits int32; the loop index is a plain int under the interpreter, so no .to() on it).
    r = tl.arange(0, BLOCK_M).to(tl.int64)[:, None] + tile * BLOCK_M
    rmask = r < rows
    t, s, seg_off = _seg_offsets(r, segs, seg_stride, SEGMENTED)
    v0, wt0, bt0, gt0, c0, cm0, m0 = _load_cols(
        x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, res_out_ptr, t, s, seg_off, rmask, n,
        z_stride, w_seg_stride, w2_from, x_stride, res_stride, res_out_stride, 0, BLOCK_N, BLOCK_T1 > 0,
        HAS_RES, HAS_Z, NORM_BEFORE_GATE, HAS_W, HAS_W2, HAS_B, W_PER_SEG, PARAMS_FIRST,
        LOAD_EVICT, STORE_CACHE)
    if BLOCK_T1 > 0:
        v1, wt1, bt1, gt1, c1, cm1, m1 = _load_cols(
            x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, res_out_ptr, t, s, seg_off, rmask, n,
            z_stride, w_seg_stride, w2_from, x_stride, res_stride, res_out_stride, BLOCK_N, BLOCK_T1, BLOCK_T2 > 0,
            HAS_RES, HAS_Z, NORM_BEFORE_GATE, HAS_W, HAS_W2, HAS_B, W_PER_SEG, PARAMS_FIRST,
            LOAD_EVICT, STORE_CACHE)
    if BLOCK_T2 > 0:
        v2, wt2, bt2, gt2, c2, cm2, m2 = _load_cols(
            x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, res_out_ptr, t, s, seg_off, rmask, n,
            z_stride, w_seg_stride, w2_from, x_stride, res_stride, res_out_stride, BLOCK_N + BLOCK_T1,
            BLOCK_T2, False, HAS_RES, HAS_Z, NORM_BEFORE_GATE, HAS_W, HAS_W2, HAS_B, W_PER_SEG, PARAMS_FIRST,
            LOAD_EVICT, STORE_CACHE)
    if MODE == 1 and SHIFTED_STATS:
        # One reduction of (sum d, sum d^2), d = v - k with k the row's first value: the sum of
        # squared deviations is then sum d^2 - (sum d)^2 / n, and the shift keeps that difference
        # from cancelling when the row's mean is far from 0 (as the two-pass form does).
        k = _prenorm(x_ptr, res_ptr, z_ptr, res_out_ptr, t, seg_off, tl.zeros([1, 1], dtype=tl.int32), rmask,
                     x_stride, res_stride, z_stride, res_out_stride,
                     HAS_RES, HAS_Z, NORM_BEFORE_GATE, False, False, "", "")
        s1, s2 = _shifted_sums(v0, m0, k)
        if BLOCK_T1 > 0:
            s1_t, s2_t = _shifted_sums(v1, m1, k)
            s1, s2 = s1 + s1_t, s2 + s2_t
        if BLOCK_T2 > 0:
            s1_t, s2_t = _shifted_sums(v2, m2, k)
            s1, s2 = s1 + s1_t, s2 + s2_t
        mean_d = s1 / n
        rstd = _rstd(tl.maximum(s2 - s1 * mean_d, 0.0), n, eps, MODE)
        mean = k + mean_d
        v0 = v0 - mean  # masked lanes are never stored
        if BLOCK_T1 > 0:
            v1 = v1 - mean
        if BLOCK_T2 > 0:
            v2 = v2 - mean
    else:
        if MODE == 1:  # LayerNorm: centre the row first (the mean's reduction, then the squares')
            total = tl.sum(v0, axis=1)
            if BLOCK_T1 > 0:
                total += tl.sum(v1, axis=1)
            if BLOCK_T2 > 0:
                total += tl.sum(v2, axis=1)
            mean = total[:, None] / n
            v0 = _centre(v0, mean, m0, BLOCK_T1 > 0)
            if BLOCK_T1 > 0:
                v1 = _centre(v1, mean, m1, BLOCK_T2 > 0)
            if BLOCK_T2 > 0:
                v2 = _centre(v2, mean, m2, False)
        sum_sq = tl.sum(v0 * v0, axis=1)
        if BLOCK_T1 > 0:
            sum_sq += tl.sum(v1 * v1, axis=1)
        if BLOCK_T2 > 0:
            sum_sq += tl.sum(v2 * v2, axis=1)
        rstd = _rstd(sum_sq, n, eps, MODE)[:, None]
    _finish_cols(v0 * rstd, wt0, bt0, gt0, c0, cm0, m0, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr,
                 t, s, seg_off, z_stride, w_seg_stride, w2_from, out_stride,
                 HAS_W, HAS_W2, HAS_B, HAS_Z, NORM_BEFORE_GATE, W_PER_SEG, PARAMS_FIRST, False,
                 LOAD_EVICT, STORE_CACHE)
    if BLOCK_T1 > 0:
        _finish_cols(v1 * rstd, wt1, bt1, gt1, c1, cm1, m1, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr,
                     t, s, seg_off, z_stride, w_seg_stride, w2_from, out_stride,
                     HAS_W, HAS_W2, HAS_B, HAS_Z, NORM_BEFORE_GATE, W_PER_SEG, PARAMS_FIRST, True,
                     LOAD_EVICT, STORE_CACHE)
    if BLOCK_T2 > 0:
        _finish_cols(v2 * rstd, wt2, bt2, gt2, c2, cm2, m2, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr,
                     t, s, seg_off, z_stride, w_seg_stride, w2_from, out_stride,
                     HAS_W, HAS_W2, HAS_B, HAS_Z, NORM_BEFORE_GATE, W_PER_SEG, PARAMS_FIRST, True,
                     LOAD_EVICT, STORE_CACHE)


@triton.jit
def _rownorm_kernel(
        x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr, res_out_ptr,
        rows, n, eps, segs, seg_stride, w_seg_stride, w2_from,
        x_stride, res_stride, z_stride, out_stride, res_out_stride,
        MODE: tl.constexpr, HAS_RES: tl.constexpr, HAS_Z: tl.constexpr, NORM_BEFORE_GATE: tl.constexpr,
        HAS_W: tl.constexpr, HAS_W2: tl.constexpr, HAS_B: tl.constexpr, SEGMENTED: tl.constexpr,
        W_PER_SEG: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CHUNKED: tl.constexpr,
        PERSISTENT: tl.constexpr = False, STAGES: tl.constexpr = 1, PARAMS_FIRST: tl.constexpr = True,
        BLOCK_T1: tl.constexpr = 0, BLOCK_T2: tl.constexpr = 0,
        LOAD_EVICT: tl.constexpr = "", STORE_CACHE: tl.constexpr = "", SHIFTED_STATS: tl.constexpr = False):
    if not CHUNKED:
        if PERSISTENT:
            # A grid of a few programs per SM, each striding over the tiles; with STAGES > 1 Triton
            # pipelines the loop, so the next tiles' loads are in flight during this one's reduction.
            for tile in tl.range(tl.program_id(0), tl.cdiv(rows, BLOCK_M), tl.num_programs(0), num_stages=STAGES):
                _whole_rows(tile, x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr, res_out_ptr,
                            rows, n, eps, segs, seg_stride, w_seg_stride, w2_from,
                            x_stride, res_stride, z_stride, out_stride, res_out_stride,
                            MODE, HAS_RES, HAS_Z, NORM_BEFORE_GATE, HAS_W, HAS_W2, HAS_B, SEGMENTED,
                            W_PER_SEG, BLOCK_M, BLOCK_N, PARAMS_FIRST, BLOCK_T1, BLOCK_T2,
                            LOAD_EVICT, STORE_CACHE, SHIFTED_STATS)
        else:
            # Not the loop above run once: a one-trip loop compiles with an extra barrier.
            _whole_rows(tl.program_id(0), x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr, res_out_ptr,
                        rows, n, eps, segs, seg_stride, w_seg_stride, w2_from,
                        x_stride, res_stride, z_stride, out_stride, res_out_stride,
                        MODE, HAS_RES, HAS_Z, NORM_BEFORE_GATE, HAS_W, HAS_W2, HAS_B, SEGMENTED,
                        W_PER_SEG, BLOCK_M, BLOCK_N, PARAMS_FIRST, BLOCK_T1, BLOCK_T2,
                        LOAD_EVICT, STORE_CACHE, SHIFTED_STATS)
    else:
        # Long rows (BLOCK_M == 1): pass 1 reads HBM (and stores the residual sum); the later
        # passes re-read the same row, which the previous pass left in L2 (so no cache hints:
        # the "" arguments below; a string default of a helper does not compile on Triton 3.6).
        r = tl.program_id(0).to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)[:, None]
        rmask = r < rows
        t, s, seg_off = _seg_offsets(r, segs, seg_stride, SEGMENTED)
        cols = tl.arange(0, BLOCK_N)[None, :]
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k in range(0, n, BLOCK_N):
            c = k + cols
            cmask = c < n
            v = _prenorm(x_ptr, res_ptr, z_ptr, res_out_ptr, t, seg_off, c, rmask & cmask,
                         x_stride, res_stride, z_stride, res_out_stride,
                         HAS_RES, HAS_Z, NORM_BEFORE_GATE, True, False, "", "")
            if MODE == 1:
                acc += v
            else:
                acc += v * v
        if HAS_RES:
            # The re-reads below load the residual sum other threads of this program stored.
            tl.debug_barrier()
        if MODE == 1:
            mean = tl.sum(acc, axis=1)[:, None] / n
            acc2 = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
            for k in range(0, n, BLOCK_N):
                c = k + cols
                cmask = c < n
                v = _prenorm(x_ptr, res_ptr, z_ptr, res_out_ptr, t, seg_off, c, rmask & cmask,
                             x_stride, res_stride, z_stride, res_out_stride,
                             HAS_RES, HAS_Z, NORM_BEFORE_GATE, False, True, "", "")
                d = tl.where(rmask & cmask, v - mean, 0.0)
                acc2 += d * d
            rstd = _rstd(tl.sum(acc2, axis=1)[:, None], n, eps, MODE)
        else:
            mean = tl.zeros([BLOCK_M, 1], dtype=tl.float32)
            rstd = _rstd(tl.sum(acc, axis=1)[:, None], n, eps, MODE)
        for k in range(0, n, BLOCK_N):
            c = k + cols
            cmask = c < n
            mask = rmask & cmask
            v = _prenorm(x_ptr, res_ptr, z_ptr, res_out_ptr, t, seg_off, c, mask,
                         x_stride, res_stride, z_stride, res_out_stride,
                         HAS_RES, HAS_Z, NORM_BEFORE_GATE, False, True, "", "")
            w, b, g = _load_affine(z_ptr, w_ptr, w2_ptr, b_ptr, t, s, seg_off, c, mask, cmask,
                                   z_stride, w_seg_stride, w2_from,
                                   HAS_W, HAS_W2, HAS_B, HAS_Z, NORM_BEFORE_GATE, W_PER_SEG, False, "")
            _store_affine((v - mean) * rstd, w, b, g, out_ptr, t, seg_off, c, mask, out_stride,
                          HAS_W, HAS_B, HAS_Z, NORM_BEFORE_GATE, "")


def launch_rownorm(x, out, *, mode: str, eps: float, n: int, rows: int,
                   weight=None, weight2=None, bias=None, residual=None, residual_out=None, z=None,
                   norm_before_gate: bool = True, segs: int = 1, seg_stride: int = 0,
                   w_seg_stride: int = 0, w2_from: int = 0, kernel: str = "rownorm",
                   options: RowOptions | None = None) -> None:
    """Launch the kernel. ``x``, ``out``, ``residual``, ``residual_out`` and ``z`` are 2-D
    ``[tokens, width]`` views with unit column stride (their row strides may differ); callers
    validate shapes and dtypes. ``rows`` counts segments (``tokens * segs``). ``kernel``: the
    tuned-table key; ``options`` (a :class:`RowOptions`) replaces what the table or first
    principles would choose."""
    if rows == 0 or n == 0:
        return
    if (residual is None) != (residual_out is None):
        raise ValueError("launch_rownorm: residual and residual_out go together")
    cfg = row_options(n, rows, x.element_size(), kernel=kernel, persistent_ok=True, options=options)
    dummy = out  # never dereferenced: the matching HAS_* constexpr is False

    def stride(t):
        return t.stride(0) if t is not None else 0

    grid = row_grid(rows, cfg)
    _rownorm_kernel[grid](
        x, residual if residual is not None else dummy, z if z is not None else dummy,
        weight if weight is not None else dummy, weight2 if weight2 is not None else dummy,
        bias if bias is not None else dummy, out, residual_out if residual_out is not None else dummy,
        rows, n, float(eps), max(1, segs), seg_stride, w_seg_stride, w2_from,
        x.stride(0), stride(residual), stride(z), out.stride(0), stride(residual_out),
        MODE=rownorm.MODES[mode], HAS_RES=residual is not None, HAS_Z=z is not None,
        NORM_BEFORE_GATE=bool(norm_before_gate), HAS_W=weight is not None, HAS_W2=weight2 is not None,
        HAS_B=bias is not None, SEGMENTED=segs > 1, W_PER_SEG=segs > 1 and w_seg_stride != 0,
        PERSISTENT=cfg.persistent, STAGES=cfg.stages if cfg.persistent else 1,
        PARAMS_FIRST=rownorm.params_first(grid[0]) if cfg.params_first is None else bool(cfg.params_first),
        SHIFTED_STATS=mode == "layer" and rownorm.shifted_stats(grid[0]),
        **rownorm.streaming_hints(grid[0], cfg.chunked),
        **{**cfg.launch_kwargs(), **cfg.column_kwargs(n, x.element_size())})
