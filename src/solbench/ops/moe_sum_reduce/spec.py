"""moe_sum_reduce (sglang ``moe_sum_reduce_triton``,
``python/sglang/srt/layers/moe/moe_runner/triton_utils/fused_moe_triton_kernels.py``; the kernel
comes from lightllm's ``moe_sum_reduce``).

The last step of the Triton fused MoE: each token's ``top_k`` expert outputs (already multiplied
by their routing weights in the down-projection GEMM) are summed:

    out[t, :] = routed_scaling_factor * sum_k expert_outputs[t, k, :]

with fp32 accumulation, the scaling factor applied to the fp32 sum, and one cast to the input
dtype. ``expert_outputs [tokens, top_k, hidden]`` and ``out [tokens, hidden]`` are contiguous
bf16; upstream writes into a caller-provided ``out``.
"""
from __future__ import annotations

import dataclasses

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, tensor_bytes, torch_dtype


class MoeSumReduce(OpSpec):
    name = "moe_sum_reduce"
    dtype = "bf16"
    output_names = ("out",)

    @staticmethod
    def dims(shape: Shape) -> tuple[int, int, int]:
        t, k, h = int(shape["token_count"]), int(shape["top_k"]), int(shape["hidden_size"])
        if t < 0 or k < 1 or h < 1:
            raise ValueError(f"moe_sum_reduce shape {shape.id}: token_count >= 0, top_k >= 1, hidden_size >= 1 "
                             f"required, got {t}, {k}, {h}")
        return t, k, h

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        t, k, h = self.dims(shape)
        gen = rnd.generator(device, seed)
        # Expert outputs already carry their routing weight (~1/top_k each).
        return {"expert_outputs": rnd.randn((t, k, h), torch_dtype(self.dtype), device, gen, scale=1.0 / k),
                "routed_scaling_factor": float(shape.get("routed_scaling_factor", 1.0))}

    def reference(self, expert_outputs, routed_scaling_factor):
        """out[t] = routed_scaling_factor * sum_k expert_outputs[t, k]; fp32 sum and scale, one cast."""
        return (expert_outputs.float().sum(1) * routed_scaling_factor).to(expert_outputs.dtype)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        x = inputs["expert_outputs"]
        return (torch.empty((x.shape[0], x.shape[2]), dtype=x.dtype, device=x.device),)

    def cost(self, shape: Shape) -> Cost:
        # Read: expert_outputs [T, top_k, H] bf16. Write: out [T, H] bf16.
        # FLOPs (fp32): top_k - 1 adds and one scale multiply per output element.
        t, k, h = self.dims(shape)
        return Cost(flops={"fp32": t * h * k}, bytes_read=tensor_bytes((t, k, h), "bf16"),
                    bytes_written=tensor_bytes((t, h), "bf16"))

    def tolerance(self, shape: Shape) -> Tolerance:
        # One bf16 rounding of an fp32 sum (eager torch.sum also accumulates in fp32); a baseline
        # that scales after rounding adds a second rounding when the factor is not 1.
        return Tolerance(atol=1e-2, rtol=1.6e-2, rms_rtol=8e-3)

    def smoke_shapes(self) -> list[Shape]:
        # Catalog shapes are 4k-11k tokens (70-180 MB): the CPU check keeps their top_k and hidden
        # size on a few tokens, plus a scaled variant (DeepSeek-style routed_scaling_factor 2.5).
        base = min(self.shapes, key=lambda s: self.cost(s).total_bytes)
        return [dataclasses.replace(base, id="smoke0", smoke=True, params={**base.params, "token_count": 7}),
                dataclasses.replace(base, id="smoke1", smoke=True,
                                    params={**base.params, "token_count": 33, "routed_scaling_factor": 2.5})]


spec = register_spec(MoeSumReduce.from_catalog())
