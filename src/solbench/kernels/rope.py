"""Rotary position embedding kernels: ``fused_qkv_rope`` (bias add + RoPE + split into per-head
q/k/v, rtp-llm's prefill layout) and ``mrope`` (Qwen2-VL / Qwen3-VL multimodal RoPE, vLLM's
``triton_mrope`` contract).

A rotary pair (a, b) at frequency i becomes (a·cos - b·sin, b·cos + a·sin). NeoX style pairs
element i with i + rotary_dim/2 (two contiguous half-rows), GPT-J ("interleaved") style pairs 2i
with 2i+1 (one contiguous row split into even and odd lanes). Dimensions past rotary_dim pass
through. Math in fp32, one rounding to the activation dtype.

Every program rotates a tile of whole head rows (one or several tokens' heads) with 16-byte
vectors; one launch covers every head of q, k (and v), so a decode call is one launch.
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

DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@dataclasses.dataclass(frozen=True)
class RopeOptions:
    """``tile_elems``: elements of q/k/v one program moves (whole head rows);
    ``elems_per_thread``: elements per thread and tile (16-byte vectors of 16-bit data)."""

    tile_elems: int = 4096
    elems_per_thread: int = 16

    def warps(self, tile: int) -> int:
        return max(1, min(8, tile // (32 * self.elems_per_thread)))


if triton is not None:

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


def _tail_p2(head_dim: int, rotary_dim: int) -> int:
    return next_pow2(head_dim - rotary_dim) if head_dim > rotary_dim else 0


def _check_rotary(what: str, head_dim: int, rotary_dim: int) -> None:
    if rotary_dim < 2 or rotary_dim % 2 or rotary_dim > head_dim:
        raise ValueError(f"{what}: rotary dim {rotary_dim} must be even, >= 2 and <= head size {head_dim}")


def _check_rows(x, what: str, name: str, width: int):
    require_device(x, what)
    if x.dtype not in DTYPES:
        raise TypeError(f"{what}: {name} has dtype {x.dtype}; supported: bfloat16, float16, float32")
    if x.dim() != 2 or x.shape[1] != width:
        raise ValueError(f"{what}: {name} must be [num_tokens, {width}], got shape {tuple(x.shape)}")
    if width > 1 and x.stride(1) != 1:
        raise ValueError(f"{what}: {name} must be contiguous in its last dimension (stride {x.stride(1)})")


# ---- fused_qkv_rope ---------------------------------------------------------------------------------

QKV = "fused_qkv_rope"


@kernel_op("solbench::fused_qkv_rope_", mutates_args=("q", "k", "v"))
def _qkv_rope_op(qkv: torch.Tensor, qkv_bias: torch.Tensor | None, positions: torch.Tensor, q: torch.Tensor,
                 k: torch.Tensor, v: torch.Tensor, num_heads: int, num_kv_heads: int, head_dim: int,
                 rope_dim: int, rope_theta: float, is_neox_style: bool) -> None:
    check_disjoint(QKV, (("q", q), ("k", k), ("v", v)),
                   (("qkv", qkv), ("qkv_bias", qkv_bias), ("positions", positions)))
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


@_qkv_rope_op.register_fake
def _qkv_rope_fake(qkv, qkv_bias, positions, q, k, v, num_heads, num_kv_heads, head_dim, rope_dim, rope_theta,
                   is_neox_style) -> None:
    return None


def fused_qkv_rope(qkv: torch.Tensor, positions: torch.Tensor, num_heads: int, num_kv_heads: int, head_dim: int,
                   rope_dim: int | None = None, rope_theta: float = 10000.0, qkv_bias: torch.Tensor | None = None,
                   is_neox_style: bool = True, out: tuple | None = None):
    """Bias add, rotary embedding of the q and k heads, and the split into per-head outputs.

    ``qkv`` [T, (num_heads + 2·num_kv_heads)·head_dim] (per token the q heads, then k, then v;
    a token stride of its own is fine), ``positions`` [T] int32/int64, ``qkv_bias`` (optional)
    [(num_heads + 2·num_kv_heads)·head_dim] of qkv's dtype. The first ``rope_dim`` (default
    head_dim) dims of every q and k head turn by position · rope_theta^(-2i / rope_dim), NeoX or
    GPT-J pairing. Returns ``(q, k, v)`` as [1, heads, T, head_dim] (rtp-llm's layout), written
    into ``out`` when given (three contiguous tensors of those shapes)."""
    rope_dim = head_dim if rope_dim is None else int(rope_dim)
    num_heads, num_kv_heads, head_dim = int(num_heads), int(num_kv_heads), int(head_dim)
    if min(num_heads, num_kv_heads, head_dim) < 1:
        raise ValueError(f"{QKV}: num_heads, num_kv_heads and head_dim must be >= 1")
    _check_rotary(QKV, head_dim, rope_dim)
    width = (num_heads + 2 * num_kv_heads) * head_dim
    _check_rows(qkv, QKV, "qkv", width)
    t = qkv.shape[0]
    if qkv_bias is not None:
        if qkv_bias.dtype != qkv.dtype or tuple(qkv_bias.shape) != (width,) or not qkv_bias.is_contiguous():
            raise ValueError(f"{QKV}: qkv_bias must be a contiguous [{width}] {qkv.dtype} tensor, got "
                             f"{qkv_bias.dtype} {tuple(qkv_bias.shape)}")
    if positions.dtype not in (torch.int32, torch.int64) or tuple(positions.shape) != (t,) \
            or (t > 1 and positions.stride(0) != 1):
        raise ValueError(f"{QKV}: positions must be a contiguous int32/int64 [{t}] tensor, got "
                         f"{positions.dtype} {tuple(positions.shape)}")
    if not rope_theta > 1.0:
        raise ValueError(f"{QKV}: rope_theta must be > 1, got {rope_theta}")
    shapes = [(1, num_heads, t, head_dim), (1, num_kv_heads, t, head_dim), (1, num_kv_heads, t, head_dim)]
    if out is None:
        out = tuple(torch.empty(s, dtype=qkv.dtype, device=qkv.device) for s in shapes)
    else:
        if len(out) != 3:
            raise ValueError(f"{QKV}: out must be a (q, k, v) tuple")
        for name, o, s in zip("qkv", out, shapes):
            check_out(o, s, qkv.dtype, qkv.device, QKV, f"out {name}")
            if not o.is_contiguous():
                raise ValueError(f"{QKV}: out {name} must be contiguous")
    q, k, v = out
    _qkv_rope_op(qkv, qkv_bias, positions, q, k, v, num_heads, num_kv_heads, head_dim, rope_dim,
                 float(rope_theta), bool(is_neox_style))
    return q, k, v


# ---- mrope ------------------------------------------------------------------------------------------

MROPE = "mrope"


@kernel_op("solbench::mrope_", mutates_args=("q_out", "k_out"))
def _mrope_op(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, q_out: torch.Tensor,
              k_out: torch.Tensor, section_t: int, section_h: int, section_w: int, head_size: int,
              rotary_dim: int, interleaved: bool, is_neox_style: bool) -> None:
    # In place (q_out is q) is the upstream contract; otherwise outputs must not overlap inputs.
    if q_out.data_ptr() != q.data_ptr() or k_out.data_ptr() != k.data_ptr():
        check_disjoint(MROPE, (("q_out", q_out), ("k_out", k_out)), (("q", q), ("k", k), ("cos", cos), ("sin", sin)))
    t = q.shape[0]
    if t == 0:
        return
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
        TAIL_P2=_tail_p2(head_size, rotary_dim) if q_out.data_ptr() != q.data_ptr() else 0,
        BT=bt, NEOX=bool(is_neox_style), INTERLEAVED=bool(interleaved),
        num_warps=opts.warps(bt * max(hq_p2, hk_p2) * next_pow2(head_size)))


@_mrope_op.register_fake
def _mrope_fake(q, k, cos, sin, q_out, k_out, section_t, section_h, section_w, head_size, rotary_dim, interleaved,
                is_neox_style) -> None:
    return None


def mrope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mrope_section, head_size: int,
          rotary_dim: int, mrope_interleaved: bool = False, is_neox_style: bool = True, out: tuple | None = None):
    """Multimodal RoPE (Qwen2-VL sections, Qwen3-VL interleaving) of q and k.

    ``q`` [T, num_q_heads·head_size], ``k`` [T, num_kv_heads·head_size] (bf16/fp16/fp32, a token
    stride of their own is fine: views of a fused qkv), ``cos``/``sin`` [3, T, rotary_dim/2] fp32
    gathered at each token's temporal, height and width position, ``mrope_section`` [t, h, w]
    with t + h + w = rotary_dim/2. Frequency i reads plane T for i < t, H for t <= i < t + h, W
    after; interleaved: H when i % 3 == 1 and i <= 3h, W when i % 3 == 2 and i <= 3w, T otherwise.
    Rotates in place (vLLM's contract) unless ``out=(q_out, k_out)`` is given. Returns the
    rotated (q, k)."""
    what = MROPE
    head_size, rotary_dim = int(head_size), int(rotary_dim)
    _check_rotary(what, head_size, rotary_dim)
    if q.dim() != 2 or k.dim() != 2 or q.shape[1] % head_size or k.shape[1] % head_size or not q.shape[1] \
            or not k.shape[1]:
        raise ValueError(f"{what}: q and k must be [num_tokens, heads·{head_size}], got {tuple(q.shape)} and "
                         f"{tuple(k.shape)}")
    _check_rows(q, what, "q", q.shape[1])
    _check_rows(k, what, "k", k.shape[1])
    if k.dtype != q.dtype or k.shape[0] != q.shape[0]:
        raise ValueError(f"{what}: k ({k.dtype}, {k.shape[0]} tokens) must match q ({q.dtype}, {q.shape[0]} tokens)")
    sec = [int(s) for s in mrope_section]
    if len(sec) != 3 or min(sec) < 0 or sum(sec) != rotary_dim // 2:
        raise ValueError(f"{what}: mrope_section {list(mrope_section)} must be three sizes summing to "
                         f"rotary_dim/2 = {rotary_dim // 2}")
    t, half = q.shape[0], rotary_dim // 2
    for name, c in (("cos", cos), ("sin", sin)):
        require_device(c, what)
        if c.dtype != torch.float32 or tuple(c.shape) != (3, t, half) or (half > 1 and c.stride(2) != 1):
            raise ValueError(f"{what}: {name} must be float32 [3, {t}, {half}] (last dim contiguous), got "
                             f"{c.dtype} {tuple(c.shape)}")
    if cos.stride() != sin.stride():
        raise ValueError(f"{what}: cos and sin must have the same strides")
    if out is None:
        q_out, k_out = q, k
    else:
        if len(out) != 2:
            raise ValueError(f"{what}: out must be a (q, k) tuple")
        q_out, k_out = out
        for name, o, x in (("q", q_out, q), ("k", k_out, k)):
            check_out(o, x.shape, x.dtype, x.device, what, f"out {name}")
            _check_rows(o, what, f"out {name}", x.shape[1])
    _mrope_op(q, k, cos, sin, q_out, k_out, sec[0], sec[1], sec[2], head_size, rotary_dim,
              bool(mrope_interleaved), bool(is_neox_style))
    return q_out, k_out
