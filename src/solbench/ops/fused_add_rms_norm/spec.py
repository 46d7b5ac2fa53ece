"""fused_add_rms_norm: vLLM ``fused_add_rms_norm`` (csrc/layernorm_kernels.cu).

Upstream works in place: ``residual <- x + residual`` (added in the input dtype, i.e. the sum is
rounded to bf16 and stored), then ``x <- rms_norm(residual) * weight`` computed from that stored
bf16 sum. The operator's outputs are therefore both tensors, in this order:

* ``out = s / sqrt(mean(s^2) + eps) * weight`` with ``s = bf16(x + residual)``;
* ``residual = s``.

The reference follows that exactly: the sum is rounded once (it *is* a bf16 tensor), the norm of
it is computed in fp32 and rounded once.
"""
from __future__ import annotations

from dataclasses import replace

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, register_spec, torch_dtype
from solbench.ops.rms_norm.spec import RmsNormOp, norm_weight, rms_normalize

# fp32 operations per element: the add (1) plus the RMSNorm's 4.
FLOPS_PER_ELEM = 5
FLOPS_PER_ROW = 4


class FusedAddRmsNormOp(RmsNormOp):
    name = "fused_add_rms_norm"
    output_names = ("out", "residual")

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        gen = rnd.generator(device, seed)
        t, n = self.dims(shape)
        dt = torch_dtype(self.dtype)
        x = rnd.randn((t, n), dt, device, gen)
        # The residual stream is larger than a layer's update, and varies per token.
        residual = rnd.randn((t, n), dt, device, gen) * rnd.uniform((t, 1), dt, device, gen, 1.0, 8.0)
        return {"x": x, "residual": residual, "weight": norm_weight(n, dt, device, gen),
                "eps": self.eps(shape)}

    def reference(self, x, residual, weight, eps):
        """s = round(x + residual); out = s / sqrt(mean(s^2) + eps) * weight (fp32, one rounding);
        returns (out, s)."""
        s = (x.float() + residual.float()).to(residual.dtype)
        return (rms_normalize(s, eps) * weight.float()).to(x.dtype), s

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        return torch.empty_like(inputs["x"]), torch.empty_like(inputs["residual"])

    def cost(self, shape: Shape) -> Cost:
        # Read: x, residual [T, n], weight [n]. Write: out, residual [T, n].
        # FLOPs (fp32): 5 per element + 4 per row.
        t, n = self.dims(shape)
        b = 2  # bf16
        return Cost(flops={"fp32": FLOPS_PER_ELEM * t * n + FLOPS_PER_ROW * t},
                    bytes_read=(2 * t * n + n) * b, bytes_written=2 * t * n * b)

    def smoke_shapes(self) -> list[Shape]:
        # The smallest catalog shapes (53 x 7168, 126 x 2048) take seconds in the Triton
        # interpreter; keep their hidden sizes (one wide, one medium) with a few decode tokens.
        return [replace(s, id=f"smoke{i}", params={**s.params, "token_count": t}, smoke=True)
                for i, (s, t) in enumerate(zip(OpSpec.smoke_shapes(self), (5, 3)))]


register_spec(FusedAddRmsNormOp.from_catalog())
