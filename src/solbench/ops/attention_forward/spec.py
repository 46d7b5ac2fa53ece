"""attention_forward (vLLM ``attention_forward_varlen``: ck_tile ``FmhaFwdKernel``, i.e.
``flash_attn_varlen_func`` on ROCm/aiter).

``q, k, v`` are packed ``[total_tokens, num_heads, head_dim]`` bf16 with ``cu_seqlens_q`` /
``cu_seqlens_k`` (int32, ``[num_seqs + 1]``) and host-side ``max_seqlen_q`` / ``max_seqlen_k``;
softmax scale ``1/sqrt(head_dim)``; ``out`` has q's shape and dtype.

**Not causal.** The traced call sites are vLLM's multimodal-encoder attention
(``vit_flash_attn_wrapper`` -> ``flash_attn_varlen_func(..., causal=False)``): 16 (TP1) or
4 (TP4) heads of 72 is the SigLIP-so400m vision tower, one sequence per image, and the published
deployed times scale with the full L² work on the 72- and 128-wide shapes alike (a causal kernel
would do half of it). The reference still takes ``causal`` so the same code serves both.
"""
from __future__ import annotations

import dataclasses

from solbench.core import inputs as rnd
from solbench.core.attention_ref import (attention_matmul_flops, attention_tolerance, varlen_attention_reference,
                                        visible_pairs)
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype


class AttentionForward(OpSpec):
    name = "attention_forward"
    dtype = "bf16"
    output_names = ("out",)
    causal = False

    @staticmethod
    def seq_lens(shape: Shape) -> list[int]:
        lens = [int(n) for n in shape["seq_lens"]]
        if not lens or min(lens) < 1:
            raise ValueError(f"attention_forward shape {shape.id}: seq_lens must be a non-empty list of "
                             f"positive lengths, got {shape['seq_lens']!r}")
        return lens

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        import torch

        lens = self.seq_lens(shape)
        h, d = int(shape["num_heads"]), int(shape["head_dim"])
        total = sum(lens)
        gen = rnd.generator(device, seed)
        dt = torch_dtype(self.dtype)
        cu = torch.tensor([0] + lens, device=device).cumsum(0).to(torch.int32)
        return {
            "q": rnd.randn((total, h, d), dt, device, gen),
            "k": rnd.randn((total, h, d), dt, device, gen),
            "v": rnd.randn((total, h, d), dt, device, gen),
            "cu_seqlens_q": cu,
            "cu_seqlens_k": cu.clone(),
            "max_seqlen_q": max(lens),
            "max_seqlen_k": max(lens),
            "softmax_scale": d ** -0.5,
        }

    def reference(self, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale):
        """out[t, h] = Σ_j softmax_j(softmax_scale · q[t, h]·k[j, h]) v[j, h] over the keys j of
        t's own sequence (no causal mask); fp32 math, one cast to q's dtype."""
        return varlen_attention_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, scale=softmax_scale,
                                          causal=self.causal, out_dtype=q.dtype)

    def cost(self, shape: Shape) -> Cost:
        # Read: q, k, v [T, H, D] bf16 and both cu_seqlens (int32). Write: out [T, H, D] bf16.
        # FLOPs: QK^T and PV over every (query, key) pair of each sequence (bidirectional: L²).
        lens = self.seq_lens(shape)
        h, d = int(shape["num_heads"]), int(shape["head_dim"])
        total = sum(lens)
        pairs = sum(visible_pairs(n, n, self.causal) for n in lens)
        act = total * h * d * 2
        return Cost(flops={"bf16_tc": attention_matmul_flops(pairs, h, d, d)},
                    bytes_read=3 * act + 2 * (len(lens) + 1) * 4, bytes_written=act)

    def tolerance(self, shape: Shape) -> Tolerance:
        return attention_tolerance(self.dtype)

    def smoke_shapes(self) -> list[Shape]:
        shapes = super().smoke_shapes()
        # A reduced varlen batch (three sequences of unequal length) of the TP4 vision shape: the
        # catalog only has single-sequence calls, but the operator is varlen.
        base = min(self.shapes, key=lambda s: self.cost(s).total_bytes)
        params = {**base.params, "num_heads": 4, "head_dim": 72, "seq_lens": [37, 100, 5]}
        return shapes + [dataclasses.replace(base, id="smoke_varlen", params=params, smoke=True,
                                             description="reduced: 3 sequences (37, 100, 5), 4 heads of 72")]


spec = register_spec(AttentionForward.from_catalog())
