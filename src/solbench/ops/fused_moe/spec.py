"""fused_moe (vLLM ``fused_experts``, vllm/model_executor/layers/fused_moe/fused_moe.py).

The expert FFN of a mixture-of-experts layer for already-routed tokens, bf16 weights:
``hidden_states [T, H]``, ``w1 [E, 2I, H]`` (gate rows then up rows), ``w2 [E, H, I]``,
``topk_weights [T, k]`` fp32, ``topk_ids [T, k]`` int32. The activation is ``silu_and_mul`` and the
router weights are applied inside (vLLM multiplies them in the second GEMM, MUL_ROUTED_WEIGHT),
so ``out[t] = sum_j topk_weights[t, j] * w2[e] @ (silu(g) * u)`` with ``[g | u] = w1[e] @ x[t]``,
``e = topk_ids[t, j]``.

Output dtype: the catalog records ``out`` as fp32 (vLLM's own wrapper returns the hidden dtype;
the benchmark follows the catalog, so implementations return fp32 and the cost counts 4-byte
writes).
"""
from __future__ import annotations


from solbench.core import inputs as rnd
from solbench.core.moe_routing import MoeOutputs, moe_dims, moe_ffn_cost, random_routing, reference_moe
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype


class FusedMoe(MoeOutputs, OpSpec):
    name = "fused_moe"
    dtype = "bf16"
    out_dtype = "fp32"  # the catalog's output_dtypes

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        t, h, i, e, k = moe_dims(shape)
        gen = rnd.generator(device, seed)
        dt = torch_dtype(self.dtype)
        # Weights scaled by 1/sqrt(fan_in) keep every intermediate O(1), as trained layers are.
        x = rnd.randn((t, h), dt, device, gen)
        w1 = rnd.randn((e, 2 * i, h), dt, device, gen, scale=h ** -0.5)
        w2 = rnd.randn((e, h, i), dt, device, gen, scale=i ** -0.5)
        topk_weights, topk_ids = random_routing(t, e, k, device, gen)
        return {"hidden_states": x, "w1": w1, "w2": w2, "topk_weights": topk_weights, "topk_ids": topk_ids}

    def reference(self, hidden_states, w1, w2, topk_weights, topk_ids):
        """out[t] = sum_j topk_weights[t,j] * W2[e] (silu(W1g[e] x[t]) * W1u[e] x[t]), e = topk_ids[t,j];
        fp32 math, one expert at a time, cast once to fp32 (the catalog's output dtype)."""
        return reference_moe(hidden_states.float(), topk_weights, topk_ids, w1.shape[0],
                             lambda e: (w1[e].float(), w2[e].float()), torch_dtype(self.out_dtype))

    def cost(self, shape: Shape) -> Cost:
        # Read: hidden_states once (T*H bf16), topk_weights + topk_ids (T*k*4 each), and the w1/w2
        # of the experts that receive tokens (expected count under the seeded uniform routing,
        # E*(1-(1-k/E)^T); unrouted experts are never read). Write: out [T, H] fp32.
        # FLOPs: only routed rows R = T*k: 2*R*H*2I + 2*R*I*H on bf16 tensor cores; fp32 for
        # silu*mul (6 per R*I element) and the weighted top-k sum (2 per R*H element).
        t, h, i, e, k = moe_dims(shape)
        gemm, hit = moe_ffn_cost(t, h, i, e, k)
        r = t * k
        weights = hit * (2 * i * h + h * i) * 2
        return Cost(flops={"bf16_tc": gemm, "fp32": 6.0 * r * i + 2.0 * r * h},
                    bytes_read=t * h * 2 + r * 8 + weights, bytes_written=t * h * 4)

    def tolerance(self, shape: Shape) -> Tolerance:
        # Outputs are O(0.5). bf16 implementations round the GEMM1 output, the activation and the
        # GEMM2 output (three 2^-9 roundings, independent per element): about 0.4% RMS, a few
        # 1e-3 absolute at the tails over 1e8 elements.
        return Tolerance(atol=2.5e-2, rtol=3e-2, rms_rtol=1e-2)

    def smoke_shapes(self) -> list[Shape]:
        # The smallest catalog shape still holds 128 experts' weights (1.2 GB of bf16): too heavy
        # for a CPU check. Same structure, smaller dims: decode-like and prefill-like.
        return self.small_shapes([dict(token_count=3, hidden_size=128, intermediate_size=64, num_experts=8, top_k=2),
                                  dict(token_count=24, hidden_size=256, intermediate_size=96, num_experts=16, top_k=4)])


register_spec(FusedMoe.from_catalog())
