"""mla_decode_attention (aiter ``mla_decode_stage1_asm_fwd``, called through ``aiter.mla.mla_decode_fwd``
by SGLang's aiter backend; semantics of aiter op_tests/test_mla.py ``torch_mla_extend``).

Absorbed multi-head latent attention, one query token per sequence:

* ``q`` [B, nhead, kv_lora_rank + qk_rope_head_dim] bf16 (the absorbed nope part, then rope);
* ``kv_cache`` [num_pages, page_size = 1, 1, kv_lora_rank + qk_rope_head_dim] bf16: one latent
  row per token shared by all heads (SGLang's aiter backend uses pages of one token);
* ``kv_indptr`` [B + 1] int32 and ``kv_indices`` [sum ctx] int32: sequence b's tokens are the
  pages ``kv_indices[kv_indptr[b]:kv_indptr[b+1]]``; ``max_seqlen_k`` host int;
* ``sm_scale`` = 1/sqrt(kv_lora_rank + qk_rope_head_dim), aiter's convention for the absorbed
  head (its tests and ``mla_decode_fwd``'s default); SGLang passes the model's own scale, which
  changes nothing in the cost.

out[b, h] = Σ_j softmax_j(sm_scale · q[b, h]·c_j) · c_j[:kv_lora_rank] with c_j the latent rows of
sequence b: keys are the whole row, values its first kv_lora_rank entries. out [B, nhead,
kv_lora_rank] bf16.
"""
from __future__ import annotations

from solbench.core import inputs as rnd
from solbench.core.attention_ref import attention_matmul_flops, attention_tolerance, varlen_attention_reference
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype


class MlaDecodeAttention(OpSpec):
    name = "mla_decode_attention"
    dtype = "bf16"
    output_names = ("out",)

    @staticmethod
    def dims(shape: Shape) -> tuple[int, int, int, int, int]:
        b, ctx, h = int(shape["batch_size"]), int(shape["ctx_len"]), int(shape["nhead"])
        r, p = int(shape["kv_lora_rank"]), int(shape["qk_rope_head_dim"])
        if min(b, ctx, h, r) < 1 or p < 0:
            raise ValueError(f"mla_decode_attention shape {shape.id}: batch_size, ctx_len, nhead and "
                             "kv_lora_rank must be positive")
        return b, ctx, h, r, p

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        import torch

        b, ctx, h, r, p = self.dims(shape)
        gen = rnd.generator(device, seed)
        dt = torch_dtype(self.dtype)
        total = b * ctx
        pages = total + max(16, total // 8)  # a pool larger than the batch: indices are scattered
        return {
            "q": rnd.randn((b, h, r + p), dt, device, gen),
            "kv_cache": rnd.randn((pages, 1, 1, r + p), dt, device, gen),
            "kv_indptr": torch.arange(0, total + 1, ctx, device=device, dtype=torch.int32),
            "kv_indices": torch.randperm(pages, generator=gen, device=device)[:total].to(torch.int32),
            "kv_lora_rank": r,
            "max_seqlen_k": ctx,
            "sm_scale": (r + p) ** -0.5,
        }

    def reference(self, q, kv_cache, kv_indptr, kv_indices, kv_lora_rank, max_seqlen_k, sm_scale):
        """out[b, h] = Σ_j softmax_j(sm_scale · q[b, h]·c_j) c_j[:kv_lora_rank], c_j = kv_cache row
        kv_indices[j] for j in sequence b; fp32 math, one cast to bf16."""
        import torch

        d = kv_cache.shape[-1]
        c = kv_cache.reshape(-1, d)[kv_indices.long()][:, None, :]          # [Tk, 1, D]
        cu_q = torch.arange(q.shape[0] + 1, device=q.device)
        return varlen_attention_reference(q, c, c[..., :kv_lora_rank], cu_q, kv_indptr, scale=sm_scale,
                                          causal=False, out_dtype=q.dtype)

    def cost(self, shape: Shape) -> Cost:
        # Read: q [B, H, R+P]; each sequence's ctx latent rows [ctx, R+P] once (shared by all
        # heads: that is the point of MLA); kv_indices [B·ctx] and kv_indptr [B+1] int32.
        # Write: out [B, H, R] bf16. FLOPs: q·c over R+P and p·c over R, per head and token.
        b, ctx, h, r, p = self.dims(shape)
        read = b * h * (r + p) * 2 + b * ctx * (r + p) * 2 + b * ctx * 4 + (b + 1) * 4
        return Cost(flops={"bf16_tc": attention_matmul_flops(b * ctx, h, r + p, r)}, bytes_read=read,
                    bytes_written=b * h * r * 2)

    def tolerance(self, shape: Shape) -> Tolerance:
        return attention_tolerance(self.dtype)


spec = register_spec(MlaDecodeAttention.from_catalog())
