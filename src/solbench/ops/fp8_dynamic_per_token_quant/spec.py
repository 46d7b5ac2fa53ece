"""fp8_dynamic_per_token_quant: aiter ``dynamic_per_token_scaled_quant`` (aiter/ops/quant.py,
csrc/kernels/quant_kernels.cu), as rtp-llm calls it before its per-token fp8 GEMMs.

Per token ``t`` (a row of ``x[T, n]``, bf16):

* ``scale[t] = max(max_j |x[t, j]|, 1e-10) / 448`` (fp32, shape ``[T, 1]``);
* ``q[t, j] = fp8_e4m3fn(clamp(x[t, j] * (1 / scale[t]), -448, 448))``, round to nearest even,
  with the reciprocal rounded to fp32 first, as upstream multiplies by ``1 / scale``.

Upstream's scale is ``absmax * (1 / DTYPE_MAX)`` (within an fp32 ulp of ours); its fp8 max is
``torch.finfo(out dtype).max`` (240 for e4m3fnuz on MI300, 448 for e4m3fn): we measure the
e4m3fn format (see kernels/fp8_format.py). The 1e-10 floor is aiter's zero-row guard (its test
``test_zero_scale_is_positive`` expects ``amax.clamp_min(1e-10) / max``); it changes nothing for
rows that are not all zeros.
"""
from __future__ import annotations

from dataclasses import replace

from solbench.core import inputs as rnd
from solbench.core.fp8 import Fp8QuantSpec, activation_like, row_chunks
from solbench.core.spec import Cost, Shape, register_spec, torch_dtype
from solbench.kernels.fp8_format import fp8_dtype, quantize_per_token

#: aiter's floor of the row max-abs.
MIN_AMAX = 1e-10
# fp32 operations per element: abs + max (2), multiply by 1/scale (1), clamp (2).
FLOPS_PER_ELEM = 5
# Per row: floor, divide by 448, reciprocal.
FLOPS_PER_ROW = 3


class Fp8DynamicPerTokenQuantOp(Fp8QuantSpec):
    name = "fp8_dynamic_per_token_quant"
    output_names = ("q", "scale")
    fp8_outputs = {"q": ("scale", None)}
    input_dtype = "bf16"

    def dims(self, shape: Shape) -> tuple[int, int]:
        return int(shape["token_count"]), int(shape["hidden_size"])

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        t, n = self.dims(shape)
        return {"x": activation_like((t, n), torch_dtype(self.input_dtype), device, rnd.generator(device, seed))}

    def reference(self, x):
        """scale = max(max|x_row|, 1e-10) / 448 ([T, 1] fp32); q = fp8(clamp(x * (1/scale), +-448))."""
        import torch

        n = x.shape[-1]
        x2 = x.reshape(-1, n)
        q = torch.empty(x2.shape, dtype=fp8_dtype(), device=x.device)
        s = torch.empty((x2.shape[0], 1), dtype=torch.float32, device=x.device)
        for sl in row_chunks(x2.shape[0], n):
            q[sl], s[sl] = quantize_per_token(x2[sl].float(), MIN_AMAX)
        return q.view(x.shape), s.view(*x.shape[:-1], 1)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        x = inputs["x"]
        return (torch.empty(x.shape, dtype=fp8_dtype(), device=x.device),
                torch.empty((*x.shape[:-1], 1), dtype=torch.float32, device=x.device))

    def cost(self, shape: Shape) -> Cost:
        # Read: x [T, n] bf16. Write: q [T, n] fp8 (1 B), scale [T, 1] fp32.
        # FLOPs (fp32): 5 per element + 3 per row.
        t, n = self.dims(shape)
        return Cost(flops={"fp32": FLOPS_PER_ELEM * t * n + FLOPS_PER_ROW * t},
                    bytes_read=t * n * 2, bytes_written=t * n * 1 + t * 4)

    def smoke_shapes(self) -> list[Shape]:
        # The smallest catalog shape (one decode token, hidden 2048), and the widest hidden size
        # (7168) with a few tokens so the interpreter runs several rows of the prefill tiling.
        small = min(self.shapes, key=lambda s: self.cost(s).total_bytes)
        wide = max(self.shapes, key=lambda s: (self.dims(s)[1], -self.dims(s)[0]))
        return [small, replace(wide, id="smoke0", params={**wide.params, "token_count": 5}, smoke=True)]


register_spec(Fp8DynamicPerTokenQuantOp.from_catalog())
