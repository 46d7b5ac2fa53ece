"""unified_attention (vLLM ``unified_attention``, vllm/v1/attention/ops/triton_unified_attention.py).

Inputs, as the upstream wrapper takes them:

* ``q`` [total_q, num_query_heads, head_size] bf16, packed by ``cu_seqlens_q`` (int32, [B + 1]);
* ``k_cache`` / ``v_cache`` [num_blocks, block_size, num_kv_heads, head_size] bf16 (vLLM's
  ``nhd`` paged layout), ``block_table`` [B, max_blocks] int32, ``seqused_k`` [B] int32 (keys
  per sequence, context included); ``max_seqlen_q`` / ``max_seqlen_k`` host ints;
  ``softmax_scale`` = 1/sqrt(head_size).

Semantics (upstream asserts ``causal``): the queries of sequence b are the last L_q[b] of its
L_k[b] tokens, so query i sees key j iff j <= L_k - L_q + i; query head h reads kv head
h // (H / H_kv). The output has the query's dtype (bf16), as vLLM's kernel and Atrex's reference
write it (the catalog metadata's fp32 is a recording error).

Catalog shapes: ``seq_lens`` are the sequence lengths of a batch of fresh prefills (the
descriptions say "prefill paged attention" / "causal attention", and the deployed times track
the L² prefill work, not a decode's L reads), so L_q = L_k = seq_len. A smoke shape adds
``query_lens`` shorter than ``seq_lens`` to cover the chunked-prefill case.
"""
from __future__ import annotations

import dataclasses

from solbench.core import inputs as rnd
from solbench.core.attention_ref import (attention_matmul_flops, attention_tolerance, varlen_attention_reference,
                                        visible_pairs)
from solbench.core.paged import blocks_needed, packed_from_nhd, pool_blocks, random_block_table
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype


class UnifiedAttention(OpSpec):
    name = "unified_attention"
    dtype = "bf16"
    output_names = ("out",)

    @staticmethod
    def lengths(shape: Shape) -> tuple[list[int], list[int]]:
        """(query lengths, key lengths) per sequence."""
        lk = [int(n) for n in shape["seq_lens"]]
        lq = [int(n) for n in shape.get("query_lens", lk)]
        if not lk or len(lq) != len(lk) or min(lk) < 1 or any(a < 1 or a > b for a, b in zip(lq, lk)):
            raise ValueError(f"unified_attention shape {shape.id}: need 1 <= query_lens[i] <= seq_lens[i] "
                             f"for every sequence (seq_lens={shape['seq_lens']!r})")
        n = shape.get("num_seqs")
        if n is not None and int(n) != len(lk):
            raise ValueError(f"unified_attention shape {shape.id}: num_seqs={n} but {len(lk)} seq_lens")
        return lq, lk

    @staticmethod
    def heads(shape: Shape) -> tuple[int, int, int]:
        h, hkv, d = int(shape["num_query_heads"]), int(shape["num_kv_heads"]), int(shape["head_size"])
        if h % hkv:
            raise ValueError(f"unified_attention shape {shape.id}: {h} query heads not a multiple of {hkv} kv heads")
        return h, hkv, d

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        import torch

        lq, lk = self.lengths(shape)
        h, hkv, d = self.heads(shape)
        bs = int(shape["block_size"])
        gen = rnd.generator(device, seed)
        dt = torch_dtype(self.dtype)
        nb = pool_blocks(len(lk) * max(blocks_needed(lk, bs)))
        return {
            "q": rnd.randn((sum(lq), h, d), dt, device, gen),
            "k_cache": rnd.randn((nb, bs, hkv, d), dt, device, gen),
            "v_cache": rnd.randn((nb, bs, hkv, d), dt, device, gen),
            "cu_seqlens_q": torch.tensor([0] + lq, device=device).cumsum(0).to(torch.int32),
            "seqused_k": torch.tensor(lk, device=device, dtype=torch.int32),
            "block_table": random_block_table(lk, bs, nb, device, gen),
            "max_seqlen_q": max(lq),
            "max_seqlen_k": max(lk),
            "softmax_scale": d ** -0.5,
        }

    def reference(self, q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q,
                  max_seqlen_k, softmax_scale):
        """out[t, h] = Σ_j softmax_j(softmax_scale · q[t, h]·K_b[j, h // G]) V_b[j, h // G] over
        the keys j <= L_k - L_q + i of t's sequence b (t is its query i); K_b / V_b are the
        sequence's tokens read through ``block_table``. fp32 math, one cast to q's dtype."""
        import torch

        lens = [int(n) for n in seqused_k.cpu().tolist()]
        k = packed_from_nhd(k_cache, block_table, lens)
        v = packed_from_nhd(v_cache, block_table, lens)
        cu_k = torch.tensor([0] + lens, device=q.device).cumsum(0)
        return varlen_attention_reference(q, k, v, cu_seqlens_q, cu_k, scale=softmax_scale, causal=True,
                                          out_dtype=q.dtype)

    def cost(self, shape: Shape) -> Cost:
        # Read: q [Tq, H, D] bf16; the K and V of each sequence's L_k tokens (bf16, through the
        # block table: its ceil(L_k / block_size) entries, int32); cu_seqlens_q and seqused_k.
        # Write: out [Tq, H, D] bf16. FLOPs: QK^T and PV over the causal (bottom-right) pairs only.
        lq, lk = self.lengths(shape)
        h, hkv, d = self.heads(shape)
        bs = int(shape["block_size"])
        pairs = sum(visible_pairs(a, b, True) for a, b in zip(lq, lk))
        read = (sum(lq) * h * d * 2 + 2 * sum(lk) * hkv * d * 2 + sum(blocks_needed(lk, bs)) * 4
                + (len(lk) + 1) * 4 + len(lk) * 4)
        return Cost(flops={"bf16_tc": attention_matmul_flops(pairs, h, d, d)}, bytes_read=read,
                    bytes_written=sum(lq) * h * d * 2)

    def tolerance(self, shape: Shape) -> Tolerance:
        return attention_tolerance("bf16")

    def smoke_shapes(self) -> list[Shape]:
        shapes = super().smoke_shapes()
        base = next(s for s in self.shapes if int(s["num_kv_heads"]) < int(s["num_query_heads"])
                    and len(s["seq_lens"]) > 1)
        # Reduced batch of the multi-sequence GQA shape, with contexts (L_q < L_k) and a
        # sequence shorter than a block, to cover chunked prefill and partial blocks.
        params = {**base.params, "num_seqs": 3, "seq_lens": [40, 9, 70], "query_lens": [40, 3, 17],
                  "num_query_heads": 4, "num_kv_heads": 2, "head_size": 64}
        return shapes + [dataclasses.replace(base, id="smoke_chunked", params=params, smoke=True,
                                             description="reduced: 3 sequences, L_q (40, 3, 17) of L_k (40, 9, 70), GQA 4/2")]


spec = register_spec(UnifiedAttention.from_catalog())
