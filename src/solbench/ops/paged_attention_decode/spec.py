"""paged_attention_decode (aiter ``paged_attention_rocm`` as rtp-llm / vLLM-ROCm call it;
semantics of aiter op_tests/test_pa.py ``run_native`` and vLLM's paged_attention_v1/v2).

Inputs:

* ``query`` [num_seqs, num_query_heads, head_size] (bf16 or fp16, per shape ``dtype``): the one
  new token of every sequence;
* ``k_cache`` [num_blocks, num_kv_heads, head_size / x, block_size, x] with x = 16 bytes /
  element size (8 here), ``v_cache`` [num_blocks, num_kv_heads, head_size, block_size]:
  the original vLLM paged-attention layout that aiter keeps (``x_split`` in core/paged.py);
* ``block_tables`` [num_seqs, max_blocks] int32, ``seq_lens`` [num_seqs] int32 (= ``ctx_len``,
  the number of cached tokens including the new one), ``max_seq_len`` host int;
* ``scale`` = 1/sqrt(head_size).

out[b, h] = Σ_{j < seq_lens[b]} softmax_j(scale · query[b, h]·K_b[j, h // G]) V_b[j, h // G],
G = num_query_heads / num_kv_heads; out has query's shape and dtype.
"""
from __future__ import annotations

from solbench.core import inputs as rnd
from solbench.core.attention_ref import attention_matmul_flops, attention_tolerance, varlen_attention_reference
from solbench.core.paged import blocks_needed, packed_from_nhd, pool_blocks, random_block_table, x_split_to_nhd
from solbench.core.spec import DTYPE_BYTES, Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype

X_BYTES = 16  # the key cache's innermost split is 16 bytes wide


class PagedAttentionDecode(OpSpec):
    name = "paged_attention_decode"
    dtype = "bf16"
    output_names = ("out",)

    def shape_dtype(self, shape: Shape) -> str:
        return str(shape.get("dtype", self.dtype))

    @staticmethod
    def dims(shape: Shape) -> tuple[int, int, int, int, int, int]:
        b, ctx = int(shape["num_seqs"]), int(shape["ctx_len"])
        h, hkv, d, bs = (int(shape[k]) for k in ("num_query_heads", "num_kv_heads", "head_size", "block_size"))
        if h % hkv or ctx < 1:
            raise ValueError(f"paged_attention_decode shape {shape.id}: need num_query_heads % num_kv_heads == 0 "
                             f"and ctx_len >= 1 (got {h}/{hkv}, ctx_len {ctx})")
        return b, ctx, h, hkv, d, bs

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        import torch

        b, ctx, h, hkv, d, bs = self.dims(shape)
        dt = torch_dtype(self.shape_dtype(shape))
        x = X_BYTES // DTYPE_BYTES[self.shape_dtype(shape)]
        if d % x:
            raise ValueError(f"paged_attention_decode shape {shape.id}: head_size {d} is not a multiple of x={x}")
        lens = [ctx] * b
        nb = pool_blocks(sum(blocks_needed(lens, bs)))
        gen = rnd.generator(device, seed)
        return {
            "query": rnd.randn((b, h, d), dt, device, gen),
            "k_cache": rnd.randn((nb, hkv, d // x, bs, x), dt, device, gen),
            "v_cache": rnd.randn((nb, hkv, d, bs), dt, device, gen),
            "block_tables": random_block_table(lens, bs, nb, device, gen),
            "seq_lens": torch.tensor(lens, device=device, dtype=torch.int32),
            "max_seq_len": ctx,
            "scale": d ** -0.5,
        }

    def reference(self, query, k_cache, v_cache, block_tables, seq_lens, max_seq_len, scale):
        """out[b, h] = Σ_{j < seq_lens[b]} softmax_j(scale · query[b, h]·K_b[j, h // G]) V_b[j, h // G];
        fp32 math, one cast to query's dtype."""
        import torch

        lens = [int(n) for n in seq_lens.cpu().tolist()]
        k_nhd, v_nhd = x_split_to_nhd(k_cache, v_cache)
        k = packed_from_nhd(k_nhd, block_tables, lens)
        v = packed_from_nhd(v_nhd, block_tables, lens)
        b = query.shape[0]
        cu_q = torch.arange(b + 1, device=query.device)
        cu_k = torch.tensor([0] + lens, device=query.device).cumsum(0)
        return varlen_attention_reference(query, k, v, cu_q, cu_k, scale=scale, causal=False, out_dtype=query.dtype)

    def cost(self, shape: Shape) -> Cost:
        # Read: query [B, H, D]; the K and V of each sequence's ctx_len tokens [ctx, Hkv, D]; the
        # ceil(ctx / block_size) block-table entries per sequence and seq_lens (int32).
        # Write: out [B, H, D]. FLOPs: q·k and p·v for every head and cached token.
        b, ctx, h, hkv, d, bs = self.dims(shape)
        e = DTYPE_BYTES[self.shape_dtype(shape)]
        read = b * h * d * e + 2 * b * ctx * hkv * d * e + b * blocks_needed([ctx], bs)[0] * 4 + b * 4
        path = "fp16_tc" if self.shape_dtype(shape) == "fp16" else "bf16_tc"
        return Cost(flops={path: attention_matmul_flops(b * ctx, h, d, d)}, bytes_read=read,
                    bytes_written=b * h * d * e)

    def tolerance(self, shape: Shape) -> Tolerance:
        return attention_tolerance(self.shape_dtype(shape))

    def smoke_shapes(self) -> list[Shape]:
        # The two smallest catalog shapes are bf16; the smallest fp16 one covers the other dtype.
        shapes = super().smoke_shapes()
        fp16 = [s for s in self.shapes if self.shape_dtype(s) == "fp16"]
        if fp16 and not any(self.shape_dtype(s) == "fp16" for s in shapes):
            shapes.append(min(fp16, key=lambda s: self.cost(s).total_bytes))
        return shapes


spec = register_spec(PagedAttentionDecode.from_catalog())
