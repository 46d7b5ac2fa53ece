"""The Triton kernels behind :mod:`solbench.kernels.rope` (imported at the first launch, so
``import solbench`` decorates no Triton kernel)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from solbench.kernels.common import next_pow2
from solbench.kernels.rope import RopeOptions


def _tail_p2(head_dim: int, rotary_dim: int) -> int:
    return next_pow2(head_dim - rotary_dim) if head_dim > rotary_dim else 0


@triton.jit
def _load_pairs(src, bias, rows_ok, HALF: tl.constexpr, HALF_P2: tl.constexpr, HAS_BIAS: tl.constexpr,
                NEOX: tl.constexpr):
    """The rotary pairs (a, b) of every row, fp32 [R, HALF_P2] each (bias added): ``src`` and
    ``bias`` are [R, 1] pointers to row starts. NeoX: two contiguous half-rows; GPT-J: one
    contiguous row split into even and odd lanes."""
    if NEOX:
        i = tl.arange(0, HALF_P2)[None, :]
        m = rows_ok & (i < HALF)
        a = tl.load(src + i, mask=m, other=0.0).to(tl.float32)
        b = tl.load(src + HALF + i, mask=m, other=0.0).to(tl.float32)
        if HAS_BIAS:
            a += tl.load(bias + i, mask=m, other=0.0).to(tl.float32)
            b += tl.load(bias + HALF + i, mask=m, other=0.0).to(tl.float32)
    else:
        j = tl.arange(0, 2 * HALF_P2)[None, :]
        m = rows_ok & (j < 2 * HALF)
        x = tl.load(src + j, mask=m, other=0.0).to(tl.float32)
        if HAS_BIAS:
            x += tl.load(bias + j, mask=m, other=0.0).to(tl.float32)
        a, b = tl.split(tl.reshape(x, (x.shape[0], HALF_P2, 2)))
    return a, b

@triton.jit
def _store_turned(dst, rows_ok, a, b, cos, sin, rotate, HALF: tl.constexpr, HALF_P2: tl.constexpr,
                  NEOX: tl.constexpr):
    """(a·cos - b·sin, b·cos + a·sin) where ``rotate`` (else (a, b)), stored as ``_load_pairs``
    read them."""
    ra = tl.where(rotate, a * cos - b * sin, a).to(dst.dtype.element_ty)
    rb = tl.where(rotate, b * cos + a * sin, b).to(dst.dtype.element_ty)
    if NEOX:
        i = tl.arange(0, HALF_P2)[None, :]
        m = rows_ok & (i < HALF)
        tl.store(dst + i, ra, mask=m)
        tl.store(dst + HALF + i, rb, mask=m)
    else:
        j = tl.arange(0, 2 * HALF_P2)[None, :]
        m = rows_ok & (j < 2 * HALF)
        tl.store(dst + j, tl.reshape(tl.join(ra, rb), (ra.shape[0], 2 * HALF_P2)), mask=m)

@triton.jit
def _copy_tail(src, dst, bias, rows_ok, START: tl.constexpr, D: tl.constexpr, TAIL_P2: tl.constexpr,
               HAS_BIAS: tl.constexpr):
    """Dimensions START..D of every row, not rotated (bias added)."""
    j = START + tl.arange(0, TAIL_P2)[None, :]
    m = rows_ok & (j < D)
    x = tl.load(src + j, mask=m, other=0.0)
    if HAS_BIAS:
        x = (x.to(tl.float32) + tl.load(bias + j, mask=m, other=0.0).to(tl.float32)).to(x.dtype)
    tl.store(dst + j, x.to(dst.dtype.element_ty), mask=m)

@triton.jit
def _cos_sin_at(pos, ratio_hi, ratio_lo, HALF_P2: tl.constexpr, LOG2_HALF_P2: tl.constexpr):
    """cos and sin of pos · r^i, i < HALF_P2 ([HALF_P2] fp32), r = base^(-1 / HALF) passed as
    two fp32 parts (scalar arguments are fp32). r^i is formed by squaring and the angle
    reduced to [-pi, pi] in fp64 (a dozen multiplies): an fp32 angle at position 8192 would be
    off by up to 1e-3 rad."""
    i = tl.arange(0, HALF_P2)
    base = tl.full((HALF_P2,), 0.0, tl.float64) + ratio_hi + ratio_lo
    inv = tl.full((HALF_P2,), 1.0, tl.float64)
    for bit in tl.static_range(LOG2_HALF_P2):
        inv = tl.where(((i >> bit) & 1) != 0, inv * base, inv)
        base = base * base
    ang = pos.to(tl.float64) * inv
    # 2pi as two fp32-exact parts (a float literal is an fp32 constant): n · hi is exact in fp64.
    turns = tl.floor(ang * 0.15915494309189535 + 0.5)
    ang = (ang - turns * 6.2831854820251465 - turns * -1.7484556000744883e-07).to(tl.float32)
    return tl.cos(ang), tl.sin(ang)

@triton.jit
def _qkv_rope_kernel(qkv_ptr, bias_ptr, pos_ptr, q_ptr, k_ptr, v_ptr, T, qkv_stride, ratio_hi, ratio_lo,
                     H: tl.constexpr, HKV: tl.constexpr, D: tl.constexpr, HALF: tl.constexpr,
                     HALF_P2: tl.constexpr, LOG2_HALF_P2: tl.constexpr, TAIL_P2: tl.constexpr,
                     HB: tl.constexpr, HAS_BIAS: tl.constexpr, NEOX: tl.constexpr):
    # Program g of a token covers HB heads of one kind: q groups, then k groups, then v groups,
    # so that its output base is one pointer (rows of one output: vectorized stores).
    t = tl.program_id(0).to(tl.int64)
    g = tl.program_id(1)
    GQ: tl.constexpr = (H + HB - 1) // HB
    GK: tl.constexpr = (HKV + HB - 1) // HB
    is_q = g < GQ
    is_k = (g >= GQ) & (g < GQ + GK)
    first = tl.where(is_q, g * HB, tl.where(is_k, (g - GQ) * HB, (g - GQ - GK) * HB))
    n_kind = tl.where(is_q, H, HKV)
    h = first + tl.arange(0, HB)[:, None]
    rows_ok = h < n_kind
    col0 = tl.where(is_q, 0, tl.where(is_k, H, H + HKV)) * D     # the kind's first column in qkv
    src = qkv_ptr + t * qkv_stride + col0 + h * D
    bias = bias_ptr + col0 + h * D
    a, b = _load_pairs(src, bias, rows_ok, HALF, HALF_P2, HAS_BIAS, NEOX)
    cos, sin = _cos_sin_at(tl.load(pos_ptr + t), ratio_hi, ratio_lo, HALF_P2, LOG2_HALF_P2)
    # Outputs are [heads, T, D]: head h of token t at (h·T + t)·D.
    out = tl.where(is_q, q_ptr, tl.where(is_k, k_ptr, v_ptr))
    dst = out + (h.to(tl.int64) * T + t) * D
    _store_turned(dst, rows_ok, a, b, cos[None, :], sin[None, :], is_q | is_k, HALF, HALF_P2, NEOX)
    if TAIL_P2 > 0:
        _copy_tail(src, dst, bias, rows_ok, 2 * HALF, D, TAIL_P2, HAS_BIAS)

@triton.jit
def _mrope_heads(x_ptr, out_ptr, x_stride, out_stride, cos_ptr, sin_ptr, plane, T, cs_plane_stride,
                 cs_tok_stride, NH: tl.constexpr, NH_P2: tl.constexpr, BT: tl.constexpr, HS: tl.constexpr,
                 HALF: tl.constexpr, HALF_P2: tl.constexpr, TAIL_P2: tl.constexpr, NEOX: tl.constexpr):
    """The NH heads of BT tokens as rows; each row gathers its token's cos/sin (L1 hits)."""
    i = tl.arange(0, HALF_P2)[None, :]
    r = tl.arange(0, BT * NH_P2)[:, None]
    tok = tl.program_id(0).to(tl.int64) * BT + r // NH_P2
    head = r % NH_P2
    ok = (tok < T) & (head < NH)
    cs = plane.to(tl.int64)[None, :] * cs_plane_stride + tok * cs_tok_stride + i
    cmask = ok & (i < HALF)
    cos = tl.load(cos_ptr + cs, mask=cmask, other=1.0)
    sin = tl.load(sin_ptr + cs, mask=cmask, other=0.0)
    src = x_ptr + tok * x_stride + head * HS
    dst = out_ptr + tok * out_stride + head * HS
    a, b = _load_pairs(src, src, ok, HALF, HALF_P2, False, NEOX)
    _store_turned(dst, ok, a, b, cos, sin, True, HALF, HALF_P2, NEOX)
    if TAIL_P2 > 0:
        _copy_tail(src, dst, src, ok, 2 * HALF, HS, TAIL_P2, False)

@triton.jit
def _mrope_kernel(q_ptr, k_ptr, qo_ptr, ko_ptr, cos_ptr, sin_ptr, T, q_stride, k_stride, qo_stride, ko_stride,
                  cs_plane_stride, cs_tok_stride, SEC_T: tl.constexpr, SEC_H: tl.constexpr, SEC_W: tl.constexpr,
                  HQ: tl.constexpr, HK: tl.constexpr, HQ_P2: tl.constexpr, HK_P2: tl.constexpr,
                  HS: tl.constexpr, HALF: tl.constexpr, HALF_P2: tl.constexpr, TAIL_P2: tl.constexpr,
                  BT: tl.constexpr, NEOX: tl.constexpr, INTERLEAVED: tl.constexpr):
    i = tl.arange(0, HALF_P2)
    # The plane (0 = T, 1 = H, 2 = W) each frequency reads its angle from.
    if INTERLEAVED:
        plane = tl.where((i % 3 == 1) & (i <= 3 * SEC_H), 1, tl.where((i % 3 == 2) & (i <= 3 * SEC_W), 2, 0))
    else:
        plane = (i >= SEC_T).to(tl.int32) + (i >= SEC_T + SEC_H).to(tl.int32)
    _mrope_heads(q_ptr, qo_ptr, q_stride, qo_stride, cos_ptr, sin_ptr, plane, T, cs_plane_stride, cs_tok_stride,
                 HQ, HQ_P2, BT, HS, HALF, HALF_P2, TAIL_P2, NEOX)
    _mrope_heads(k_ptr, ko_ptr, k_stride, ko_stride, cos_ptr, sin_ptr, plane, T, cs_plane_stride, cs_tok_stride,
                 HK, HK_P2, BT, HS, HALF, HALF_P2, TAIL_P2, NEOX)


def launch_qkv_rope(qkv, qkv_bias, positions, q, k, v, num_heads: int, num_kv_heads: int, head_dim: int,
                    rope_dim: int, rope_theta: float, is_neox_style: bool) -> None:
    t = qkv.shape[0]
    if t == 0:
        return
    half = rope_dim // 2
    opts = RopeOptions()
    hb = min(next_pow2(max(num_heads, num_kv_heads)), max(1, opts.tile_elems // next_pow2(head_dim)))
    groups = triton.cdiv(num_heads, hb) + 2 * triton.cdiv(num_kv_heads, hb)
    ratio = float(rope_theta) ** (-1.0 / half)
    ratio_hi = float(torch.tensor(ratio, dtype=torch.float32))
    half_p2 = next_pow2(half)
    _qkv_rope_kernel[(t, groups)](
        qkv, qkv_bias if qkv_bias is not None else qkv, positions, q, k, v, t, qkv.stride(0), ratio_hi,
        ratio - ratio_hi, H=num_heads, HKV=num_kv_heads, D=head_dim, HALF=half, HALF_P2=half_p2,
        LOG2_HALF_P2=half_p2.bit_length() - 1, TAIL_P2=_tail_p2(head_dim, rope_dim), HB=hb,
        HAS_BIAS=qkv_bias is not None, NEOX=bool(is_neox_style), num_warps=opts.warps(hb * next_pow2(head_dim)))


def launch_mrope(q, k, cos, sin, q_out, k_out, section_t: int, section_h: int, section_w: int, head_size: int,
                 rotary_dim: int, interleaved: bool, is_neox_style: bool) -> None:
    """Writes q_out and k_out; in place (``q_out is q``) the dims past rotary_dim are not touched."""
    t = q.shape[0]
    if t == 0:
        return
    in_place = q_out.data_ptr() == q.data_ptr()
    hq, hk = q.shape[1] // head_size, k.shape[1] // head_size
    half = rotary_dim // 2
    hq_p2, hk_p2 = next_pow2(hq), next_pow2(hk)
    opts = RopeOptions()
    per_token = (hq_p2 + hk_p2) * next_pow2(head_size)
    bt = min(next_pow2(max(1, opts.tile_elems // per_token) + 1) // 2, next_pow2(t))   # a power of two
    _mrope_kernel[(triton.cdiv(t, bt),)](
        q, k, q_out, k_out, cos, sin, t, q.stride(0), k.stride(0), q_out.stride(0), k_out.stride(0),
        cos.stride(0), cos.stride(1), SEC_T=section_t, SEC_H=section_h, SEC_W=section_w, HQ=hq, HK=hk,
        HQ_P2=hq_p2, HK_P2=hk_p2, HS=head_size, HALF=half, HALF_P2=next_pow2(half),
        TAIL_P2=0 if in_place else _tail_p2(head_size, rotary_dim),
        BT=bt, NEOX=bool(is_neox_style), INTERLEAVED=bool(interleaved),
        num_warps=opts.warps(bt * max(hq_p2, hk_p2) * next_pow2(head_size)))
