"""One Triton kernel family for the row normalizations: RMSNorm, LayerNorm and L2 norm, with
optional fused residual add, sigmoid-linear gate, affine weight/bias, and per-segment rows.

Used by the operators rms_norm, fused_add_rms_norm, fused_qk_rmsnorm, gated_rms_norm, l2_norm
and layer_norm (their ``api.py`` files validate arguments and call :func:`launch_rownorm`
through a ``torch.library`` custom op). All math is in fp32; each output is rounded once.

What one "row" is: the kernel normalizes ``rows`` segments of ``n`` elements. Segment ``r`` lives
in token ``t = r // segs`` at element offset ``t * stride + (r % segs) * seg_stride`` of each
tensor; ``segs = 1`` is the plain ``[rows, n]`` case. Segments give the per-head norms
(fused_qk_rmsnorm: q and k heads inside a packed qkv row) and group norms without copies.

Per segment (fp32):

* ``v = x`` (``+ residual``, rounded to the residual dtype and stored as ``residual_out``:
  vLLM's fused_add_rms_norm normalizes the stored bf16 sum);
* gate before norm (``norm_before_gate=False``): ``v = v * silu(z)``;
* MODE 0 RMS: ``y = v / sqrt(mean(v^2) + eps)``; MODE 1 LayerNorm:
  ``y = (v - mean(v)) / sqrt(var(v) + eps)`` (biased variance); MODE 2 L2:
  ``y = v / sqrt(sum(v^2) + eps)``;
* ``y = y * w (+ b)`` where ``w`` is ``weight`` or, for segments ``>= w2_from``, ``weight2``;
  ``weight`` advances by ``w_seg_stride`` per segment (group norms), or is shared (0);
* gate after norm (``norm_before_gate=True``): ``y = y * silu(z)``.

One pass over HBM: rows up to :data:`~solbench.core.rowwise.MAX_WHOLE_ROW` elements stay in
registers between the reduction and the write; longer rows loop over chunks and re-read the
row from L2 (see core/rowwise.py).
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

from solbench.core import tuning
from solbench.core.rowwise import row_config, row_grid

MODES = {"rms": 0, "layer": 1, "l2": 2}


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
             STORE_RES: tl.constexpr, RELOAD_RES: tl.constexpr):
    """The value that is normalized, for one tile of columns ``c``: x (+ residual, rounded to
    the residual dtype as upstream stores it), times silu(z) when the gate comes first.
    ``RELOAD_RES`` (chunked re-pass) reads the already stored sum back instead of recomputing."""
    if HAS_RES:
        if RELOAD_RES:
            v = tl.load(res_out_ptr + t * res_out_stride + seg_off + c, mask=mask, other=0.0).to(tl.float32)
        else:
            v = tl.load(x_ptr + t * x_stride + seg_off + c, mask=mask, other=0.0).to(tl.float32)
            v += tl.load(res_ptr + t * res_stride + seg_off + c, mask=mask, other=0.0).to(tl.float32)
            v = v.to(res_out_ptr.dtype.element_ty)
            if STORE_RES:
                tl.store(res_out_ptr + t * res_out_stride + seg_off + c, v, mask=mask)
            v = v.to(tl.float32)
    else:
        v = tl.load(x_ptr + t * x_stride + seg_off + c, mask=mask, other=0.0).to(tl.float32)
    if HAS_Z:
        if not NORM_BEFORE_GATE:
            z = tl.load(z_ptr + t * z_stride + seg_off + c, mask=mask, other=0.0).to(tl.float32)
            v = v * (z * tl.sigmoid(z))
    return v


@triton.jit
def _load_affine(z_ptr, w_ptr, w2_ptr, b_ptr, t, s, seg_off, c, mask, cmask,
                 z_stride, w_seg_stride, w2_from,
                 HAS_W: tl.constexpr, HAS_W2: tl.constexpr, HAS_B: tl.constexpr, HAS_Z: tl.constexpr,
                 NORM_BEFORE_GATE: tl.constexpr, W_PER_SEG: tl.constexpr):
    """(weight, bias, gate after the norm) for columns ``c``, as fp32. Shared parameters load as
    one ``[1, BLOCK_N]`` vector per program (16-byte accesses); per-segment ones (group norms) as
    a ``[BLOCK_M, BLOCK_N]`` tile. Unused ones are a placeholder the compiler drops.

    The whole-row path calls this right after loading the row, before the reduction: a load after
    the reduction's barrier is not issued until the reduction is done, so a decode launch (one
    wave, every program waiting on memory) paid a second DRAM round trip for the weight."""
    w = cmask.to(tl.float32)
    b = w
    g = w
    if HAS_W:
        if W_PER_SEG:
            w = tl.load(w_ptr + s * w_seg_stride + c, mask=mask, other=0.0).to(tl.float32)
        else:
            w = tl.load(w_ptr + c, mask=cmask, other=0.0).to(tl.float32)
        if HAS_W2:
            w2 = tl.load(w2_ptr + c, mask=cmask, other=0.0).to(tl.float32)
            w = tl.where(s >= w2_from, w2, w)
    if HAS_B:
        if W_PER_SEG:
            b = tl.load(b_ptr + s * w_seg_stride + c, mask=mask, other=0.0).to(tl.float32)
        else:
            b = tl.load(b_ptr + c, mask=cmask, other=0.0).to(tl.float32)
    if HAS_Z:
        if NORM_BEFORE_GATE:
            z = tl.load(z_ptr + t * z_stride + seg_off + c, mask=mask, other=0.0).to(tl.float32)
            g = z * tl.sigmoid(z)
    return w, b, g


@triton.jit
def _store_affine(y, w, b, g, out_ptr, t, seg_off, c, mask, out_stride,
                  HAS_W: tl.constexpr, HAS_B: tl.constexpr, HAS_Z: tl.constexpr,
                  NORM_BEFORE_GATE: tl.constexpr):
    """Affine weight/bias and the gate after the norm (from :func:`_load_affine`), one rounding,
    one store."""
    if HAS_W:
        y = y * w
    if HAS_B:
        y = y + b
    if HAS_Z:
        if NORM_BEFORE_GATE:
            y = y * g
    tl.store(out_ptr + t * out_stride + seg_off + c, y.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _whole_rows(tile, x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr, res_out_ptr,
                rows, n, eps, segs, seg_stride, w_seg_stride, w2_from,
                x_stride, res_stride, z_stride, out_stride, res_out_stride,
                MODE: tl.constexpr, HAS_RES: tl.constexpr, HAS_Z: tl.constexpr, NORM_BEFORE_GATE: tl.constexpr,
                HAS_W: tl.constexpr, HAS_W2: tl.constexpr, HAS_B: tl.constexpr, SEGMENTED: tl.constexpr,
                W_PER_SEG: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                PARAMS_FIRST: tl.constexpr):
    """Tile ``tile`` (``BLOCK_M`` whole rows) in registers: read once, reduce, write once.
    ``PARAMS_FIRST``: the weight/bias/gate loads are issued with the row's, before the reduction
    (:func:`params_first`)."""
    # int64 row indices: row * stride stays exact past 2^31 elements (tile * BLOCK_M < rows + BLOCK_M
    # fits int32; the loop index is a plain int under the interpreter, so no .to() on it).
    r = tl.arange(0, BLOCK_M).to(tl.int64)[:, None] + tile * BLOCK_M
    rmask = r < rows
    t, s, seg_off = _seg_offsets(r, segs, seg_stride, SEGMENTED)
    cols = tl.arange(0, BLOCK_N)[None, :]
    cmask = cols < n
    mask = rmask & cmask
    v = _prenorm(x_ptr, res_ptr, z_ptr, res_out_ptr, t, seg_off, cols, mask,
                 x_stride, res_stride, z_stride, res_out_stride,
                 HAS_RES, HAS_Z, NORM_BEFORE_GATE, True, False)
    if PARAMS_FIRST:  # see _load_affine
        w, b, g = _load_affine(z_ptr, w_ptr, w2_ptr, b_ptr, t, s, seg_off, cols, mask, cmask,
                               z_stride, w_seg_stride, w2_from,
                               HAS_W, HAS_W2, HAS_B, HAS_Z, NORM_BEFORE_GATE, W_PER_SEG)
    if MODE == 1:
        mean = tl.sum(v, axis=1)[:, None] / n
        v = tl.where(mask, v - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(v * v, axis=1)[:, None] / n + eps)
    elif MODE == 0:
        rstd = 1.0 / tl.sqrt(tl.sum(v * v, axis=1)[:, None] / n + eps)
    else:
        rstd = 1.0 / tl.sqrt(tl.sum(v * v, axis=1)[:, None] + eps)
    if not PARAMS_FIRST:
        w, b, g = _load_affine(z_ptr, w_ptr, w2_ptr, b_ptr, t, s, seg_off, cols, mask, cmask,
                               z_stride, w_seg_stride, w2_from,
                               HAS_W, HAS_W2, HAS_B, HAS_Z, NORM_BEFORE_GATE, W_PER_SEG)
    _store_affine(v * rstd, w, b, g, out_ptr, t, seg_off, cols, mask, out_stride,
                  HAS_W, HAS_B, HAS_Z, NORM_BEFORE_GATE)


@triton.jit
def _rownorm_kernel(
        x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr, res_out_ptr,
        rows, n, eps, segs, seg_stride, w_seg_stride, w2_from,
        x_stride, res_stride, z_stride, out_stride, res_out_stride,
        MODE: tl.constexpr, HAS_RES: tl.constexpr, HAS_Z: tl.constexpr, NORM_BEFORE_GATE: tl.constexpr,
        HAS_W: tl.constexpr, HAS_W2: tl.constexpr, HAS_B: tl.constexpr, SEGMENTED: tl.constexpr,
        W_PER_SEG: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CHUNKED: tl.constexpr,
        PERSISTENT: tl.constexpr = False, STAGES: tl.constexpr = 1, PARAMS_FIRST: tl.constexpr = True):
    if not CHUNKED:
        if PERSISTENT:
            # A grid of a few programs per SM, each striding over the tiles; with STAGES > 1 Triton
            # pipelines the loop, so the next tiles' loads are in flight during this one's reduction.
            for tile in tl.range(tl.program_id(0), tl.cdiv(rows, BLOCK_M), tl.num_programs(0), num_stages=STAGES):
                _whole_rows(tile, x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr, res_out_ptr,
                            rows, n, eps, segs, seg_stride, w_seg_stride, w2_from,
                            x_stride, res_stride, z_stride, out_stride, res_out_stride,
                            MODE, HAS_RES, HAS_Z, NORM_BEFORE_GATE, HAS_W, HAS_W2, HAS_B, SEGMENTED,
                            W_PER_SEG, BLOCK_M, BLOCK_N, PARAMS_FIRST)
        else:
            # Not the loop above run once: a one-trip loop compiles with an extra barrier.
            _whole_rows(tl.program_id(0), x_ptr, res_ptr, z_ptr, w_ptr, w2_ptr, b_ptr, out_ptr, res_out_ptr,
                        rows, n, eps, segs, seg_stride, w_seg_stride, w2_from,
                        x_stride, res_stride, z_stride, out_stride, res_out_stride,
                        MODE, HAS_RES, HAS_Z, NORM_BEFORE_GATE, HAS_W, HAS_W2, HAS_B, SEGMENTED,
                        W_PER_SEG, BLOCK_M, BLOCK_N, PARAMS_FIRST)
    else:
        # Long rows (BLOCK_M == 1): pass 1 reads HBM (and stores the residual sum); the later
        # passes re-read the same row, which the previous pass left in L2.
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
                         HAS_RES, HAS_Z, NORM_BEFORE_GATE, True, False)
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
                             HAS_RES, HAS_Z, NORM_BEFORE_GATE, False, True)
                d = tl.where(rmask & cmask, v - mean, 0.0)
                acc2 += d * d
            rstd = 1.0 / tl.sqrt(tl.sum(acc2, axis=1)[:, None] / n + eps)
        elif MODE == 0:
            mean = tl.zeros([BLOCK_M, 1], dtype=tl.float32)
            rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=1)[:, None] / n + eps)
        else:
            mean = tl.zeros([BLOCK_M, 1], dtype=tl.float32)
            rstd = 1.0 / tl.sqrt(tl.sum(acc, axis=1)[:, None] + eps)
        for k in range(0, n, BLOCK_N):
            c = k + cols
            cmask = c < n
            mask = rmask & cmask
            v = _prenorm(x_ptr, res_ptr, z_ptr, res_out_ptr, t, seg_off, c, mask,
                         x_stride, res_stride, z_stride, res_out_stride,
                         HAS_RES, HAS_Z, NORM_BEFORE_GATE, False, True)
            w, b, g = _load_affine(z_ptr, w_ptr, w2_ptr, b_ptr, t, s, seg_off, c, mask, cmask,
                                   z_stride, w_seg_stride, w2_from,
                                   HAS_W, HAS_W2, HAS_B, HAS_Z, NORM_BEFORE_GATE, W_PER_SEG)
            _store_affine((v - mean) * rstd, w, b, g, out_ptr, t, seg_off, c, mask, out_stride,
                          HAS_W, HAS_B, HAS_Z, NORM_BEFORE_GATE)


def launch_rownorm(x, out, *, mode: str, eps: float, n: int, rows: int,
                   weight=None, weight2=None, bias=None, residual=None, residual_out=None, z=None,
                   norm_before_gate: bool = True, segs: int = 1, seg_stride: int = 0,
                   w_seg_stride: int = 0, w2_from: int = 0, kernel: str = "rownorm") -> None:
    """Launch the kernel. ``x``, ``out``, ``residual``, ``residual_out`` and ``z`` are 2-D
    ``[tokens, width]`` views with unit column stride (their row strides may differ); callers
    validate shapes and dtypes. ``rows`` counts segments (``tokens * segs``)."""
    if rows == 0 or n == 0:
        return
    if (residual is None) != (residual_out is None):
        raise ValueError("launch_rownorm: residual and residual_out go together")
    cfg = row_config(n, rows, x.element_size(), kernel=kernel, persistent_ok=True)
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
        MODE=MODES[mode], HAS_RES=residual is not None, HAS_Z=z is not None,
        NORM_BEFORE_GATE=bool(norm_before_gate), HAS_W=weight is not None, HAS_W2=weight2 is not None,
        HAS_B=bias is not None, SEGMENTED=segs > 1, W_PER_SEG=segs > 1 and w_seg_stride != 0,
        PERSISTENT=cfg.persistent, STAGES=cfg.stages if cfg.persistent else 1,
        PARAMS_FIRST=params_first(grid[0]), **cfg.launch_kwargs())


#: When the whole-row path loads the weight/bias/gate (H200, session 6: repeat.jsonl has
#: ``always``, params_never.jsonl / params_decode.jsonl the other two, ours_triton alone):
#:
#: * ``always``, with the row (the default): closes most of the decode gap to liger (rms_norm #47
#:   3.16 -> 2.48 us, layer_norm #12 3.75 -> 2.80) and wins 7-9% on launches of a few programs per
#:   SM (fused_add_rms_norm #9/#15, rms_norm #50/#54);
#: * ``never``, after the reduction (the code before): 4-5% faster on launches of many waves
#:   (rms_norm #10-#14 and #53, layer_norm #7/#8, 37-302 MB, 14-62 programs per SM);
#: * ``decode``: with the row only on launches that leave SMs without a program;
#: * ``few_waves``: with the row on launches of at most :data:`FEW_WAVES_PER_SM` programs per SM,
#:   the rule both files point to (each shape then runs code one of them measured); not yet
#:   measured as a whole, so not the default.
PARAMS_FIRST_POLICY = os.environ.get("SOLBENCH_ROW_PARAMS_FIRST", "always")
PARAMS_FIRST_POLICIES = ("always", "never", "decode", "few_waves")
if PARAMS_FIRST_POLICY not in PARAMS_FIRST_POLICIES:
    raise ValueError(f"SOLBENCH_ROW_PARAMS_FIRST={PARAMS_FIRST_POLICY!r}: expected one of {', '.join(PARAMS_FIRST_POLICIES)}")
#: Programs per SM up to which ``few_waves`` loads the parameters first: the launches that gained
#: had at most 4.8, the ones that lost at least 14.
FEW_WAVES_PER_SM = 8


def params_first(programs: int, policy: str | None = None) -> bool:
    """Whether a launch of ``programs`` programs issues the parameter loads with the row's
    (``policy``: default :data:`PARAMS_FIRST_POLICY`). Without a device's SM count (CPU, the
    interpreter) the SM-dependent policies load them first."""
    policy = policy or PARAMS_FIRST_POLICY
    if policy in ("always", "never"):
        return policy == "always"
    sms = tuning.sm_count()
    if not sms:
        return True
    return programs < sms if policy == "decode" else programs <= FEW_WAVES_PER_SM * sms
