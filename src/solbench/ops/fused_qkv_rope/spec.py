"""fused_qkv_rope (rtp-llm ``add_fusedQKV_bias_transpose_prefill_kernel``,
rtp_llm/cpp/kernels/unfused_attention_kernels.cu, with ``RopeStyle::Base`` from
rotary_position_embedding.h; the ``store_q`` + ``store_kv`` outputs).

Inputs:

* ``qkv`` [total_tokens, (num_heads + 2·num_kv_heads)·head_dim] (bf16 or fp16, per shape): per
  token the q heads, then the k heads, then the v heads (the fused QKV GEMM's output);
* ``qkv_bias`` [(num_heads + 2·num_kv_heads)·head_dim], same dtype;
* ``positions`` [total_tokens] int32 (rtp-llm's ``position_ids``);
* ``num_heads``, ``num_kv_heads``, ``head_dim``, ``rope_dim`` and ``rope_theta`` (rtp-llm's
  default base, 10000).

Semantics: x = qkv + bias; q and k heads get NeoX (rotate-half) rotary embedding on their first
``rope_dim`` dims at their token's position, frequency i = rope_theta^(-2i / rope_dim); v is
not rotated. The tokens form one sequence (batch 1), and the outputs are transposed to
rtp-llm's ``[batch, heads, seq_len, head_dim]``: q [1, H, T, D], k and v [1, H_kv, T, D].
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
        return {
            "qkv": rnd.randn((t, width), dt, device, gen),
            "qkv_bias": rnd.randn((width,), dt, device, gen, scale=0.5),
            "positions": torch.randint(0, MAX_POSITION, (t,), generator=gen, device=device, dtype=torch.int32),
            "num_heads": h,
            "num_kv_heads": hkv,
            "head_dim": d,
            "rope_dim": rd,
            "rope_theta": ROPE_THETA,
        }

    def reference(self, qkv, qkv_bias, positions, num_heads, num_kv_heads, head_dim, rope_dim, rope_theta):
        """x = qkv + bias; q = rope(x_q), k = rope(x_k), v = x_v (NeoX rotation of the first
        rope_dim dims at each token's position), each transposed to [1, heads, T, head_dim];
        fp32 math, one cast to qkv's dtype."""
        t = qkv.shape[0]
        x = (qkv.float() + qkv_bias.float()).view(t, num_heads + 2 * num_kv_heads, head_dim)
        q, k, v = x.split([num_heads, num_kv_heads, num_kv_heads], dim=1)
        cos, sin = cos_sin(positions, rope_dim, rope_theta)
        q = rotate(q, cos[:, None, :], sin[:, None, :], is_neox=True)
        k = rotate(k, cos[:, None, :], sin[:, None, :], is_neox=True)
        return tuple(y.transpose(0, 1).unsqueeze(0).to(qkv.dtype).contiguous() for y in (q, k, v))

    def cost(self, shape: Shape) -> Cost:
        # Read: qkv [T, (H + 2 H_kv)·D], the bias, positions (int32). Write: q [H, T, D], k and v
        # [H_kv, T, D]. FLOPs (fp32): the bias add on every element, 3 per rotated element of q
        # and k, and cos + sin of T·rope_dim/2 angles (one each).
        t, h, hkv, d, rd = self.dims(shape)
        e = DTYPE_BYTES[self.shape_dtype(shape)]
        width = (h + 2 * hkv) * d
        flops = t * width + rotary_flops(t * (h + hkv) * rd) + 2 * t * (rd // 2)
        return Cost(flops={"fp32": flops}, bytes_read=t * width * e + width * e + t * 4,
                    bytes_written=t * width * e)

    def tolerance(self, shape: Shape) -> Tolerance:
        return rope_tolerance(self.shape_dtype(shape))

    def smoke_shapes(self) -> list[Shape]:
        # Every catalog shape has one token (decode); a reduced shape with 7 tokens at different
        # positions checks the per-token rotation and the [heads, T, D] transpose.
        shapes = super().smoke_shapes()
        base = min(self.shapes, key=lambda s: self.cost(s).total_bytes)
        params = {**base.params, "total_tokens": 7, "num_heads": 8, "num_kv_heads": 2}
        return shapes + [dataclasses.replace(base, id="smoke_7tok", params=params, smoke=True,
                                             description="reduced: 7 tokens, heads 8/2")]


spec = register_spec(FusedQkvRope.from_catalog())
