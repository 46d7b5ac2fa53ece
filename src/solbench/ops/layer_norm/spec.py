"""layer_norm: the LayerNorm vLLM runs (``torch.nn.LayerNorm`` / ``F.layer_norm`` in vision
towers such as SigLIP with hidden 1152, and in text models), over the last dim of ``shape``.

``out = (x - mean(x)) / sqrt(var(x) + eps) * weight + bias`` with the biased variance.

Decisions (the catalog records only the input ``x``, since module parameters are not traced
inputs): the affine ``weight`` and ``bias`` of ``nn.LayerNorm(elementwise_affine=True)`` are
inputs here, because every traced use has them and a kernel must read them; ``eps`` defaults to
``nn.LayerNorm``'s 1e-5 unless a shape gives ``eps``.
"""
from __future__ import annotations

import math

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype

# fp32 operations per element: sum for the mean (1), subtract (1), square and accumulate (2),
# scale (1), weight (1), bias (1). Per row: two divides by n, add eps, sqrt, reciprocal.
FLOPS_PER_ELEM = 7
FLOPS_PER_ROW = 5


class LayerNormOp(OpSpec):
    name = "layer_norm"
    dtype = "bf16"
    output_names = ("out",)

    def dims(self, shape: Shape) -> tuple[list[int], int, int]:
        full = [int(s) for s in shape["shape"]]
        n = full[-1]
        return full, math.prod(full[:-1]), n

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        gen = rnd.generator(device, seed)
        full, t, n = self.dims(shape)
        dt = torch_dtype(self.dtype)
        # A per-row offset and scale: a kernel that skips the mean or mixes rows fails.
        lead = [*full[:-1], 1]
        x = (rnd.randn(full, dt, device, gen) * rnd.uniform(lead, dt, device, gen, 0.5, 3.0)
             + rnd.uniform(lead, dt, device, gen, -2.0, 2.0))
        return {"x": x, "weight": rnd.randn((n,), dt, device, gen, scale=0.25, shift=1.0),
                "bias": rnd.randn((n,), dt, device, gen, scale=0.5), "eps": float(shape.get("eps", 1e-5))}

    def reference(self, x, weight, bias, eps):
        """out = (x - mean) / sqrt(mean((x - mean)^2) + eps) * weight + bias; fp32, one rounding."""
        import torch

        xf = x.float()
        xc = xf - xf.mean(dim=-1, keepdim=True)
        y = xc * torch.rsqrt(xc.square().mean(dim=-1, keepdim=True) + eps)
        return (y * weight.float() + bias.float()).to(x.dtype)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        return (torch.empty_like(inputs["x"]),)

    def cost(self, shape: Shape) -> Cost:
        # Read: x [..., n], weight [n], bias [n]. Write: out [..., n].
        # FLOPs (fp32): 7 per element + 5 per row.
        _, t, n = self.dims(shape)
        return Cost(flops={"fp32": FLOPS_PER_ELEM * t * n + FLOPS_PER_ROW * t},
                    bytes_read=(t * n + 2 * n) * 2, bytes_written=t * n * 2)

    def tolerance(self, shape: Shape) -> Tolerance:
        return Tolerance(atol=1e-2, rtol=1.6e-2, rms_rtol=8e-3)


register_spec(LayerNormOp.from_catalog())
