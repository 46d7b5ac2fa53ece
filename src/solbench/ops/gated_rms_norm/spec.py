"""gated_rms_norm: SGLang ``rms_norm_gated`` (python/sglang/srt/layers/attention/fla/
layernorm_gated.py, from flash-linear-attention), the output norm of gated-delta-net layers
(Qwen3-Next): rows are (token, value head) pairs of ``hidden_size`` = head dim 128.

With ``norm_before_gate`` (the catalog's setting)::

    out = x / sqrt(mean(x^2) + eps) * weight * silu(z)

otherwise ``v = x * silu(z)`` is normalized: ``out = v / sqrt(mean(v^2) + eps) * weight``.
Upstream computes everything in fp32 and rounds once; no bias (the RMSNorm module has none);
``group_size`` None means one group per row. ``activation`` must be silu (alias swish): that is
the only gate upstream's kernel implements.
"""
from __future__ import annotations

from dataclasses import replace

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype

# fp32 operations per element: RMSNorm 4, silu(z) = z / (1 + exp(-z)) 4, gate multiply 1.
FLOPS_PER_ELEM = 9
FLOPS_PER_ROW = 4
GATE_ACTIVATIONS = ("silu", "swish")


class GatedRmsNormOp(OpSpec):
    name = "gated_rms_norm"
    dtype = "bf16"
    output_names = ("out",)

    def dims(self, shape: Shape) -> tuple[int, int]:
        return int(shape["rows"]), int(shape["hidden_size"])

    def options(self, shape: Shape) -> dict:
        act = str(shape.get("activation", "silu"))
        if act not in GATE_ACTIVATIONS:
            raise ValueError(f"gated_rms_norm: activation {act!r} is not supported (upstream gates with "
                             f"{' / '.join(GATE_ACTIVATIONS)})")
        return {"eps": float(shape.get("eps", 1e-6)), "norm_before_gate": bool(shape.get("norm_before_gate", True)),
                "group_size": shape.get("group_size")}

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        gen = rnd.generator(device, seed)
        r, n = self.dims(shape)
        dt = torch_dtype(self.dtype)
        x = rnd.randn((r, n), dt, device, gen) * rnd.uniform((r, 1), dt, device, gen, 0.25, 4.0)
        z = rnd.randn((r, n), dt, device, gen, scale=2.0)
        return {"x": x, "z": z, "weight": rnd.randn((n,), dt, device, gen, scale=0.25, shift=1.0),
                **self.options(shape)}

    def reference(self, x, z, weight, eps, norm_before_gate=True, group_size=None):
        """norm_before_gate: out = rmsnorm(x) * weight * silu(z); else out = rmsnorm(x * silu(z)) * weight.
        rmsnorm(v) = v / sqrt(mean over each group of v^2 + eps). fp32, one rounding."""
        import torch

        n = x.shape[-1]
        g = int(group_size or n)
        xf, zf = x.float(), z.float()
        gate = zf * torch.sigmoid(zf)
        v = xf if norm_before_gate else xf * gate
        vg = v.reshape(*v.shape[:-1], n // g, g)
        y = (vg * torch.rsqrt(vg.square().mean(dim=-1, keepdim=True) + eps)).reshape(v.shape) * weight.float()
        if norm_before_gate:
            y = y * gate
        return y.to(x.dtype)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        return (torch.empty_like(inputs["x"]),)

    def cost(self, shape: Shape) -> Cost:
        # Read: x, z [R, n], weight [n]. Write: out [R, n]. FLOPs (fp32): 9 per element + 4 per row.
        r, n = self.dims(shape)
        return Cost(flops={"fp32": FLOPS_PER_ELEM * r * n + FLOPS_PER_ROW * r},
                    bytes_read=(2 * r * n + n) * 2, bytes_written=r * n * 2)

    def tolerance(self, shape: Shape) -> Tolerance:
        return Tolerance(atol=1e-2, rtol=1.6e-2, rms_rtol=8e-3)

    def smoke_shapes(self) -> list[Shape]:
        # The catalog's smallest shape has 134k rows: too many for the Triton interpreter. The
        # same structure (head-dim rows, catalog eps/gate options) with a decode-sized and an odd
        # row count.
        base = min(self.shapes, key=lambda s: s["rows"])
        return [replace(base, id=f"smoke{i}", params={**base.params, "rows": r}, smoke=True)
                for i, r in enumerate((64, 37))]


register_spec(GatedRmsNormOp.from_catalog())
