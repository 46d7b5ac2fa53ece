"""mrope (vLLM ``triton_mrope``, vllm/model_executor/layers/rotary_embedding/mrope.py; Qwen2-VL style).

Inputs, as the upstream function takes them:

* ``q`` [num_tokens, num_query_heads · head_size], ``k`` [num_tokens, num_kv_heads · head_size] bf16;
* ``cos`` / ``sin`` [3, num_tokens, rotary_dim / 2] fp32: the cos/sin cache already gathered at
  each token's temporal, height and width position;
* ``mrope_section`` [t, h, w] with t + h + w = rotary_dim / 2, ``head_size``, ``rotary_dim``,
  ``mrope_interleaved``, ``is_neox_style``.

Frequency i takes its cos/sin from plane T, H or W: sectioned (not interleaved) — T for
i < t, H for t <= i < t + h, W after; interleaved — H when i % 3 == 1 and i <= 3h, W when
i % 3 == 2 and i <= 3w, T otherwise. Every head of q and k is rotated with those (NeoX pairs i,
i + rotary_dim/2; GPT-J pairs 2i, 2i+1); dims past rotary_dim pass through. Upstream rotates q
and k in place and returns them; outputs (q, k) have the inputs' shapes and dtype.

Positions for the inputs are random T/H/W triples below 8192 with Qwen2-VL's rope theta 1e6.
"""
from __future__ import annotations

import dataclasses

from solbench.core import inputs as rnd
from solbench.core.rotary import cos_sin, rope_tolerance, rotary_flops, rotate
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype

ROPE_THETA = 1_000_000.0
MAX_POSITION = 8192


def section_planes(mrope_section, rotary_dim: int, interleaved: bool, device):
    """Which plane (0 = T, 1 = H, 2 = W) each of the rotary_dim/2 frequencies reads."""
    import torch

    t, h, w = (int(s) for s in mrope_section)
    half = rotary_dim // 2
    if t + h + w != half:
        raise ValueError(f"mrope: mrope_section {list(mrope_section)} must sum to rotary_dim/2 = {half}")
    i = torch.arange(half, device=device)
    if interleaved:
        plane = torch.zeros(half, dtype=torch.long, device=device)
        plane[(i % 3 == 1) & (i <= 3 * h)] = 1
        plane[(i % 3 == 2) & (i <= 3 * w)] = 2
        return plane
    return (i >= t).long() + (i >= t + h).long()


class Mrope(OpSpec):
    name = "mrope"
    dtype = "bf16"
    output_names = ("q", "k")

    @staticmethod
    def dims(shape: Shape) -> tuple[int, int, int, int, int]:
        t, hq, hk = int(shape["token_count"]), int(shape["num_query_heads"]), int(shape["num_kv_heads"])
        hs, rd = int(shape["head_size"]), int(shape["rotary_dim"])
        if rd % 2 or rd > hs:
            raise ValueError(f"mrope shape {shape.id}: rotary_dim {rd} must be even and <= head_size {hs}")
        return t, hq, hk, hs, rd

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        import torch

        t, hq, hk, hs, rd = self.dims(shape)
        gen = rnd.generator(device, seed)
        dt = torch_dtype(self.dtype)
        positions = torch.randint(0, MAX_POSITION, (3, t), generator=gen, device=device)
        cos, sin = cos_sin(positions, rd, ROPE_THETA)
        return {
            "q": rnd.randn((t, hq * hs), dt, device, gen),
            "k": rnd.randn((t, hk * hs), dt, device, gen),
            "cos": cos,
            "sin": sin,
            "mrope_section": [int(s) for s in shape["mrope_section"]],
            "head_size": hs,
            "rotary_dim": rd,
            "mrope_interleaved": bool(shape.get("mrope_interleaved", False)),
            "is_neox_style": bool(shape.get("is_neox_style", True)),
        }

    def reference(self, q, k, cos, sin, mrope_section, head_size, rotary_dim, mrope_interleaved, is_neox_style):
        """x'[t, h] = rotate(x[t, h], cos[P_i, t, i], sin[P_i, t, i]) for x in (q, k), with P_i the
        plane of frequency i (see module docstring); fp32 math, one cast back to x's dtype."""
        import torch

        plane = section_planes(mrope_section, rotary_dim, mrope_interleaved, cos.device)
        i = torch.arange(rotary_dim // 2, device=cos.device)
        c = cos[plane, :, i].t()[:, None, :]    # [T, 1, rd/2]
        s = sin[plane, :, i].t()[:, None, :]
        outs = []
        for x in (q, k):
            xh = x.view(x.shape[0], x.shape[1] // head_size, head_size)
            outs.append(rotate(xh, c, s, is_neox_style).to(x.dtype).view_as(x))
        return tuple(outs)

    def cost(self, shape: Shape) -> Cost:
        # Read: the rotary_dim part of every q and k head (bf16; the rest is not touched in place)
        # and, of cos/sin [3, T, rd/2] fp32, only the plane each frequency uses: T·rd/2 each.
        # Write: the rotated part of q and k. FLOPs: 3 per rotated element, fp32.
        t, hq, hk, hs, rd = self.dims(shape)
        rotated = t * (hq + hk) * rd
        return Cost(flops={"fp32": rotary_flops(rotated)}, bytes_read=rotated * 2 + 2 * t * (rd // 2) * 4,
                    bytes_written=rotated * 2)

    def tolerance(self, shape: Shape) -> Tolerance:
        return rope_tolerance(self.dtype)

    def smoke_shapes(self) -> list[Shape]:
        # The catalog's smallest shape has 838 tokens (too many for the CPU interpreter). Reduced
        # shapes: Qwen2-VL's sections on 7 tokens; and Qwen3-VL-style interleaving with GPT-J pairs
        # on a partial rotary dim (dims 64.. pass through), head counts not powers of two.
        base = min(self.shapes, key=lambda s: self.cost(s).total_bytes)
        p = {**base.params, "token_count": 7, "num_query_heads": 4, "num_kv_heads": 2}
        return [dataclasses.replace(base, id="smoke_sections", params=p, smoke=True,
                                    description="reduced: 7 tokens, heads 4/2, sections [16, 24, 24]"),
                dataclasses.replace(base, id="smoke_interleaved", smoke=True,
                                    params={**p, "token_count": 5, "num_query_heads": 3, "num_kv_heads": 1,
                                            "rotary_dim": 64, "mrope_section": [12, 10, 10],
                                            "mrope_interleaved": True, "is_neox_style": False},
                                    description="reduced: 5 tokens, heads 3/1, interleaved [12, 10, 10], "
                                                "GPT-J pairs on rotary_dim 64 of 128")]


spec = register_spec(Mrope.from_catalog())
