"""l2_norm: vLLM ``l2norm_fwd`` (vllm/model_executor/layers/fla/ops/l2norm.py, from
flash-linear-attention), used on q and k of gated-delta-net linear attention.

``out[t, :] = x[t, :] / sqrt(sum(x[t, :]^2) + eps)``: eps is added to the *sum* of squares
(not to the mean, and not clamped as in ``F.normalize``); upstream default eps = 1e-6, no weight;
the output has x's dtype.
"""
from __future__ import annotations

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype

# fp32 operations per element: square and accumulate (2), scale (1). Per row: add eps, sqrt, reciprocal.
FLOPS_PER_ELEM = 3
FLOPS_PER_ROW = 3


class L2NormOp(OpSpec):
    name = "l2_norm"
    dtype = "bf16"
    output_names = ("out",)

    def dims(self, shape: Shape) -> tuple[int, int]:
        return int(shape["num_tokens"]), int(shape["hidden_size"])

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        gen = rnd.generator(device, seed)
        t, n = self.dims(shape)
        dt = torch_dtype(self.dtype)
        x = rnd.randn((t, n), dt, device, gen) * rnd.uniform((t, 1), dt, device, gen, 0.25, 4.0)
        return {"x": x, "eps": float(shape.get("eps", 1e-6))}

    def reference(self, x, eps):
        """out = x / sqrt(sum(x^2) + eps), fp32, one rounding to x.dtype."""
        import torch

        xf = x.float()
        return (xf * torch.rsqrt(xf.square().sum(dim=-1, keepdim=True) + eps)).to(x.dtype)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        return (torch.empty_like(inputs["x"]),)

    def cost(self, shape: Shape) -> Cost:
        # Read: x [T, n]. Write: out [T, n]. FLOPs (fp32): 3 per element + 3 per row.
        t, n = self.dims(shape)
        return Cost(flops={"fp32": FLOPS_PER_ELEM * t * n + FLOPS_PER_ROW * t},
                    bytes_read=t * n * 2, bytes_written=t * n * 2)

    def tolerance(self, shape: Shape) -> Tolerance:
        # Outputs are unit-norm rows: |out| ~ 1/sqrt(n) (0.02 at n = 2048), so the absolute floor
        # must be far below bf16's default 1e-2; relative terms as for one/two bf16 roundings.
        return Tolerance(atol=1e-4, rtol=1.6e-2, rms_rtol=8e-3)


register_spec(L2NormOp.from_catalog())
