"""fused_qkv_rope (rtp-llm ``add_fusedQKV_bias_transpose_prefill_kernel``,
rtp_llm/cpp/kernels/unfused_attention_kernels.cu, with ``RopeStyle::Base`` from
rotary_position_embedding.h; the ``store_q`` + ``store_kv`` outputs).

Inputs:

* ``qkv`` [total_tokens, (num_heads + 2·num_kv_heads)·head_dim] (bf16 or fp16, per shape): per
  token the q heads, then the k heads, then the v heads (the fused QKV GEMM's output);
* ``qkv_bias`` [(num_heads + 2·num_kv_heads)·head_dim], same dtype, or None: read and added
  only when the shape asks for one (``qkv_bias: true``). No catalog shape does: they are Qwen3
  heads, which have no qkv bias, and rtp-llm skips the add without one;
* ``positions`` [total_tokens] int32 (rtp-llm's ``position_ids``);
* ``num_heads``, ``num_kv_heads``, ``head_dim``, ``rope_dim``, ``rope_theta`` (rtp-llm's
  default base, 10000) and ``is_neox_style`` (default true: ``RopeStyle::Base`` rotates halves).

Semantics: x = qkv (+ bias); q and k heads get rotary embedding on their first ``rope_dim`` dims
at their token's position, frequency i = rope_theta^(-2i / rope_dim), NeoX (rotate-half) or
GPT-J (interleaved pairs) style; v is not rotated. The tokens form one sequence (batch 1), and
the outputs are transposed to rtp-llm's ``[batch, heads, seq_len, head_dim]``: q [1, H, T, D],
k and v [1, H_kv, T, D].
Positions are random below 8192 (a decode token sits anywhere in its context; position 0
would make the rotation the identity).
"""
from __future__ import annotations

import dataclasses

from solbench.core import inputs as rnd
from solbench.core.rotary import cos_sin, rope_tolerance, rotary_flops, rotate
from solbench.core.spec import DTYPE_BYTES, Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype

ROPE_THETA = 10000.0
MAX_POSITION = 8192


def has_bias(shape: Shape) -> bool:
    """Whether the shape has a qkv bias (``qkv_bias: true``; none on the catalog's Qwen3 heads)."""
    return bool(shape.get("qkv_bias", False))


class FusedQkvRope(OpSpec):
    name = "fused_qkv_rope"
    dtype = "fp16"
    output_names = ("q", "k", "v")

    def shape_dtype(self, shape: Shape) -> str:
        return str(shape.get("dtype", self.dtype))

    @staticmethod
    def dims(shape: Shape) -> tuple[int, int, int, int, int]:
        t, h, hkv = int(shape["total_tokens"]), int(shape["num_heads"]), int(shape["num_kv_heads"])
        d, rd = int(shape["head_dim"]), int(shape.get("rope_dim", shape["head_dim"]))
        if rd % 2 or rd > d or h % hkv:
            raise ValueError(f"fused_qkv_rope shape {shape.id}: need an even rope_dim <= head_dim and "
                             f"num_heads % num_kv_heads == 0 (got rope_dim {rd}, head_dim {d}, heads {h}/{hkv})")
        return t, h, hkv, d, rd

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        import torch

        t, h, hkv, d, rd = self.dims(shape)
        gen = rnd.generator(device, seed)
        dt = torch_dtype(self.shape_dtype(shape))
        width = (h + 2 * hkv) * d
        qkv = rnd.randn((t, width), dt, device, gen)
        bias = rnd.randn((width,), dt, device, gen, scale=0.5) if has_bias(shape) else None
        return {
            "qkv": qkv,
            "qkv_bias": bias,
            "positions": torch.randint(0, MAX_POSITION, (t,), generator=gen, device=device, dtype=torch.int32),
            "num_heads": h,
            "num_kv_heads": hkv,
            "head_dim": d,
            "rope_dim": rd,
            "rope_theta": ROPE_THETA,
            "is_neox_style": bool(shape.get("is_neox_style", True)),
        }

    def reference(self, qkv, qkv_bias, positions, num_heads, num_kv_heads, head_dim, rope_dim, rope_theta,
                  is_neox_style=True):
        """x = qkv (+ bias when given); q = rope(x_q), k = rope(x_k), v = x_v (rotation of the
        first rope_dim dims at each token's position, NeoX or GPT-J pairs), each transposed to
        [1, heads, T, head_dim]; fp32 math, one cast to qkv's dtype."""
        t = qkv.shape[0]
        x = qkv.float() if qkv_bias is None else qkv.float() + qkv_bias.float()
        x = x.view(t, num_heads + 2 * num_kv_heads, head_dim)
        q, k, v = x.split([num_heads, num_kv_heads, num_kv_heads], dim=1)
        cos, sin = cos_sin(positions, rope_dim, rope_theta)
        q = rotate(q, cos[:, None, :], sin[:, None, :], is_neox=is_neox_style)
        k = rotate(k, cos[:, None, :], sin[:, None, :], is_neox=is_neox_style)
        return tuple(y.transpose(0, 1).unsqueeze(0).to(qkv.dtype).contiguous() for y in (q, k, v))

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        t, h, hkv, d, _ = self.dims(shape)
        qkv = inputs["qkv"]
        return tuple(torch.empty((1, n, t, d), dtype=qkv.dtype, device=qkv.device) for n in (h, hkv, hkv))

    def cost(self, shape: Shape) -> Cost:
        # Read: qkv [T, (H + 2 H_kv)·D], positions (int32), and the bias only when the shape has
        # one. Write: q [H, T, D], k and v [H_kv, T, D]. FLOPs (fp32): 3 per rotated element of q
        # and k, cos + sin of T·rope_dim/2 angles (one each), and the bias add when there is one.
        t, h, hkv, d, rd = self.dims(shape)
        e = DTYPE_BYTES[self.shape_dtype(shape)]
        width = (h + 2 * hkv) * d
        bias = has_bias(shape)
        flops = rotary_flops(t * (h + hkv) * rd) + 2 * t * (rd // 2) + (t * width if bias else 0)
        return Cost(flops={"fp32": flops}, bytes_read=t * width * e + (width * e if bias else 0) + t * 4,
                    bytes_written=t * width * e)

    def tolerance(self, shape: Shape) -> Tolerance:
        return rope_tolerance(self.shape_dtype(shape))

    def smoke_shapes(self) -> list[Shape]:
        # Every catalog shape has one token (decode) and no bias. Reduced shapes with 7 tokens at
        # different positions check the per-token rotation and the [heads, T, D] transpose: one
        # with a qkv bias, one GPT-J style with a partial rotary dim (dims 64.. pass through).
        shapes = super().smoke_shapes()
        base = min(self.shapes, key=lambda s: self.cost(s).total_bytes)
        params = {**base.params, "total_tokens": 7, "num_heads": 8, "num_kv_heads": 2}
        return shapes + [
            dataclasses.replace(base, id="smoke_7tok", params={**params, "qkv_bias": True}, smoke=True,
                                description="reduced: 7 tokens, heads 8/2, with a qkv bias"),
            dataclasses.replace(base, id="smoke_gptj", smoke=True,
                                params={**params, "rope_dim": 64, "is_neox_style": False},
                                description="reduced: 7 tokens, heads 8/2, GPT-J pairs on rope_dim 64 of 128")]


spec = register_spec(FusedQkvRope.from_catalog())
