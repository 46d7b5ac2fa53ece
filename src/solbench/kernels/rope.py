"""Rotary position embedding kernels: ``fused_qkv_rope`` (bias add + RoPE + split into per-head
q/k/v, rtp-llm's prefill layout) and ``mrope`` (Qwen2-VL / Qwen3-VL multimodal RoPE, vLLM's
``triton_mrope`` contract).

A rotary pair (a, b) at frequency i becomes (a·cos - b·sin, b·cos + a·sin). NeoX style pairs
element i with i + rotary_dim/2 (two contiguous half-rows), GPT-J ("interleaved") style pairs 2i
with 2i+1 (one contiguous row split into even and odd lanes). Dimensions past rotary_dim pass
through. Math in fp32, one rounding to the activation dtype.

Every program rotates a tile of whole head rows (one or several tokens' heads) with 16-byte
vectors; one launch covers every head of q, k (and v), so a decode call is one launch.

Custom ops ``torch.ops.solbench.fused_qkv_rope`` (functional) and ``fused_qkv_rope.out``;
``mrope_`` (in place), ``mrope.out`` and ``mrope``. Off CUDA they compute with torch. The Triton
kernels are in ``_rope_triton`` (imported at the first launch).
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import check_disjoint, check_out, functional_op, kernel_op

DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@dataclasses.dataclass(frozen=True)
class RopeOptions:
    """``tile_elems``: elements of q/k/v one program moves (whole head rows);
    ``elems_per_thread``: elements per thread and tile (16-byte vectors of 16-bit data)."""

    tile_elems: int = 4096
    elems_per_thread: int = 16

    def warps(self, tile: int) -> int:
        return max(1, min(8, tile // (32 * self.elems_per_thread)))


def _check_rotary(what: str, head_dim: int, rotary_dim: int) -> None:
    if rotary_dim < 2 or rotary_dim % 2 or rotary_dim > head_dim:
        raise ValueError(f"{what}: rotary dim {rotary_dim} must be even, >= 2 and <= head size {head_dim}")


def _check_rows(x, what: str, name: str, width: int):
    if x.dtype not in DTYPES:
        raise TypeError(f"{what}: {name} has dtype {x.dtype}; supported: bfloat16, float16, float32")
    if x.dim() != 2 or x.shape[1] != width:
        raise ValueError(f"{what}: {name} must be [num_tokens, {width}], got shape {tuple(x.shape)}")
    if width > 1 and x.stride(1) != 1:
        raise ValueError(f"{what}: {name} must be contiguous in its last dimension (stride {x.stride(1)})")


def _rotate(x, cos, sin, is_neox: bool):
    """The torch formulation's rotation: ``x`` [..., head] fp32, ``cos``/``sin`` broadcastable to
    [..., rotary_dim / 2]; returns fp32 [..., head], the dims past rotary_dim copied."""
    half = cos.shape[-1]
    rot, rest = x[..., :2 * half], x[..., 2 * half:]
    a, b = (rot[..., :half], rot[..., half:]) if is_neox else (rot[..., 0::2], rot[..., 1::2])
    ra, rb = a * cos - b * sin, b * cos + a * sin
    turned = torch.cat([ra, rb], dim=-1) if is_neox else torch.stack([ra, rb], dim=-1).flatten(-2)
    return torch.cat([turned, rest], dim=-1)


# ---- fused_qkv_rope ---------------------------------------------------------------------------------

QKV = "fused_qkv_rope"


def _qkv_rope_check(qkv, qkv_bias, positions, q, k, v) -> None:
    check_disjoint(QKV, (("q", q), ("k", k), ("v", v)),
                   (("qkv", qkv), ("qkv_bias", qkv_bias), ("positions", positions)))


def _qkv_rope_eager(qkv, qkv_bias, positions, q, k, v, num_heads, num_kv_heads, head_dim, rope_dim, rope_theta,
                    is_neox_style) -> None:
    """The torch formulation (off CUDA): angles in fp64, rotation in fp32, one rounding."""
    _qkv_rope_check(qkv, qkv_bias, positions, q, k, v)
    t = qkv.shape[0]
    x = qkv.float() if qkv_bias is None else qkv.float() + qkv_bias.float()
    xq, xk, xv = x.view(t, num_heads + 2 * num_kv_heads, head_dim).split([num_heads, num_kv_heads, num_kv_heads], 1)
    inv = 1.0 / float(rope_theta) ** (torch.arange(0, rope_dim, 2, dtype=torch.float64, device=qkv.device) / rope_dim)
    ang = positions.double()[:, None, None] * inv
    cos, sin = ang.cos().float(), ang.sin().float()
    q.copy_(_rotate(xq, cos, sin, is_neox_style).transpose(0, 1).unsqueeze(0))
    k.copy_(_rotate(xk, cos, sin, is_neox_style).transpose(0, 1).unsqueeze(0))
    v.copy_(xv.transpose(0, 1).unsqueeze(0))


@kernel_op("solbench::fused_qkv_rope.out", mutates_args=("q", "k", "v"), eager=_qkv_rope_eager)
def _qkv_rope_op(qkv: torch.Tensor, qkv_bias: torch.Tensor | None, positions: torch.Tensor, q: torch.Tensor,
                 k: torch.Tensor, v: torch.Tensor, num_heads: int, num_kv_heads: int, head_dim: int,
                 rope_dim: int, rope_theta: float, is_neox_style: bool) -> None:
    from solbench.kernels._rope_triton import launch_qkv_rope

    _qkv_rope_check(qkv, qkv_bias, positions, q, k, v)
    launch_qkv_rope(qkv, qkv_bias, positions, q, k, v, num_heads, num_kv_heads, head_dim, rope_dim, rope_theta,
                    is_neox_style)


@_qkv_rope_op.register_fake
def _qkv_rope_fake(qkv, qkv_bias, positions, q, k, v, num_heads, num_kv_heads, head_dim, rope_dim, rope_theta,
                   is_neox_style) -> None:
    return None


def _qkv_rope_outputs(qkv, qkv_bias, positions, num_heads, num_kv_heads, head_dim, *rest):
    t = qkv.shape[0]
    return tuple(qkv.new_empty((1, n, t, head_dim)) for n in (num_heads, num_kv_heads, num_kv_heads))


functional_op("solbench::fused_qkv_rope", _qkv_rope_op, _qkv_rope_outputs)


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


def _mrope_eager(q, k, cos, sin, q_out, k_out, section_t, section_h, section_w, head_size, rotary_dim,
                 interleaved, is_neox_style) -> None:
    """The torch formulation (off CUDA): each frequency's cos/sin gathered from its plane, the
    rotation in fp32, one rounding (in place when ``q_out`` is ``q``: the rotated rows are formed
    before they are written)."""
    half = rotary_dim // 2
    i = torch.arange(half, device=cos.device)
    if interleaved:
        plane = torch.where((i % 3 == 1) & (i <= 3 * section_h), 1,
                            torch.where((i % 3 == 2) & (i <= 3 * section_w), 2, 0))
    else:
        plane = (i >= section_t).long() + (i >= section_t + section_h).long()
    c, s = cos[plane, :, i].T[:, None, :], sin[plane, :, i].T[:, None, :]    # [T, 1, half]
    for x, o in ((q, q_out), (k, k_out)):
        shape = (x.shape[0], x.shape[1] // head_size, head_size)
        o.view(shape).copy_(_rotate(x.view(shape).float(), c, s, is_neox_style))


def _mrope_inplace_eager(q, k, cos, sin, section_t, section_h, section_w, head_size, rotary_dim, interleaved,
                         is_neox_style) -> None:
    _mrope_out_check(q, k, cos, sin, q, k)
    _mrope_eager(q, k, cos, sin, q, k, section_t, section_h, section_w, head_size, rotary_dim, interleaved,
                 is_neox_style)


@kernel_op("solbench::mrope_", mutates_args=("q", "k"), eager=_mrope_inplace_eager)
def _mrope_inplace_op(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, section_t: int,
                      section_h: int, section_w: int, head_size: int, rotary_dim: int, interleaved: bool,
                      is_neox_style: bool) -> None:
    from solbench.kernels._rope_triton import launch_mrope

    _mrope_out_check(q, k, cos, sin, q, k)
    launch_mrope(q, k, cos, sin, q, k, section_t, section_h, section_w, head_size, rotary_dim, interleaved,
                 is_neox_style)


@_mrope_inplace_op.register_fake
def _mrope_inplace_fake(q, k, cos, sin, section_t, section_h, section_w, head_size, rotary_dim, interleaved,
                        is_neox_style) -> None:
    return None


def _mrope_out_check(q, k, cos, sin, q_out, k_out) -> None:
    # Each output against the inputs it does not update: q and k (or q_out and k_out) may be
    # views of one fused buffer, whose interleaved spans the span test would call overlapping.
    cs = (("cos", cos), ("sin", sin))
    check_disjoint(MROPE, (("q_out", q_out),), cs + ((("k", k),) if k_out is not k else ())
                   + ((("q", q),) if q_out is not q else ()))
    check_disjoint(MROPE, (("k_out", k_out),), cs + ((("q", q),) if q_out is not q else ())
                   + ((("k", k),) if k_out is not k else ()))


def _mrope_out_eager(q, k, cos, sin, q_out, k_out, *args) -> None:
    _mrope_out_check(q, k, cos, sin, q_out, k_out)
    _mrope_eager(q, k, cos, sin, q_out, k_out, *args)


@kernel_op("solbench::mrope.out", mutates_args=("q_out", "k_out"), eager=_mrope_out_eager)
def _mrope_out_op(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, q_out: torch.Tensor,
                  k_out: torch.Tensor, section_t: int, section_h: int, section_w: int, head_size: int,
                  rotary_dim: int, interleaved: bool, is_neox_style: bool) -> None:
    from solbench.kernels._rope_triton import launch_mrope

    _mrope_out_check(q, k, cos, sin, q_out, k_out)
    launch_mrope(q, k, cos, sin, q_out, k_out, section_t, section_h, section_w, head_size, rotary_dim, interleaved,
                 is_neox_style)


@_mrope_out_op.register_fake
def _mrope_out_fake(q, k, cos, sin, q_out, k_out, section_t, section_h, section_w, head_size, rotary_dim,
                    interleaved, is_neox_style) -> None:
    return None


functional_op("solbench::mrope", _mrope_out_op,
              lambda q, k, *rest: (torch.empty_like(q, memory_format=torch.contiguous_format),
                                   torch.empty_like(k, memory_format=torch.contiguous_format)))


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
        if c.dtype != torch.float32 or tuple(c.shape) != (3, t, half) or (half > 1 and c.stride(2) != 1):
            raise ValueError(f"{what}: {name} must be float32 [3, {t}, {half}] (last dim contiguous), got "
                             f"{c.dtype} {tuple(c.shape)}")
    if cos.stride() != sin.stride():
        raise ValueError(f"{what}: cos and sin must have the same strides")
    args = (sec[0], sec[1], sec[2], head_size, rotary_dim, bool(mrope_interleaved), bool(is_neox_style))
    if out is not None:
        if len(out) != 2:
            raise ValueError(f"{what}: out must be a (q, k) tuple")
        q_out, k_out = out
        for name, o, x in (("q", q_out, q), ("k", k_out, k)):
            check_out(o, x.shape, x.dtype, x.device, what, f"out {name}")
            _check_rows(o, what, f"out {name}", x.shape[1])
        if not (_same_view(q_out, q) and _same_view(k_out, k)):
            _mrope_out_op(q, k, cos, sin, q_out, k_out, *args)
            return q_out, k_out
    _mrope_inplace_op(q, k, cos, sin, *args)
    return q, k


def _same_view(a, b) -> bool:
    return a.data_ptr() == b.data_ptr() and a.stride() == b.stride()
