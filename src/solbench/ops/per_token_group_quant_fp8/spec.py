"""per_token_group_quant_fp8: vLLM ``per_token_group_quant_fp8``
(vllm/model_executor/layers/quantization/utils/fp8_utils.py and its CUDA kernel
csrc/quantization/8bit/per_token_group_quant_8bit), as used before block-fp8 GEMMs
(DeepSeek-V3 style, group 128).

Per group ``g`` of ``group_size`` consecutive elements of row ``t`` of ``x[T, K]`` (bf16):

* ``scales[t, g] = max(max|x[t, g*G:(g+1)*G]|, eps) / 448`` (fp32, row-major ``[T, K/G]``,
  ``eps = 1e-10``);
* ``quantized = fp8_e4m3fn(clamp(x / scales[t, g], -448, 448))``, round to nearest even
  (a true division, as vLLM's CUDA kernel; our kernel multiplies by ``1 / scale``, which can
  land one fp8 step away where the quotient is exactly a midpoint: see kernels/fp8_format.py).

448 is vLLM's fp8 max on NVIDIA (``torch.float8_e4m3fn``); vLLM's UE8M0 and column-major scale
options are kernel options of our API (the catalog shapes use the default row-major fp32 scales).
The non-catalog variant ``per_token_group_quant_fp8_ue8m0_colmajor`` runs the same shapes with
UE8M0 scales (``2^ceil(log2(scale))``) written column-major, as DeepGEMM on Blackwell reads them.
Outputs, in order: ``quantized``, ``scales``.
"""
from __future__ import annotations

from dataclasses import replace

from solbench.core import inputs as rnd
from solbench.core.fp8 import Fp8QuantSpec, activation_like
from solbench.core.spec import Cost, Shape, register_spec, torch_dtype
from solbench.kernels.fp8_format import GROUP_EPS, fp8_dtype, quantize_per_group

# fp32 operations per element: abs + max (2), multiply by 1/scale (1), clamp (2).
FLOPS_PER_ELEM = 5
# Per group: eps floor, divide by 448, reciprocal.
FLOPS_PER_GROUP = 3


class PerTokenGroupQuantFp8Op(Fp8QuantSpec):
    name = "per_token_group_quant_fp8"
    output_names = ("quantized", "scales")
    fp8_outputs = {"quantized": ("scales", "group")}
    input_dtype = "bf16"
    ue8m0 = False          # scales rounded up to powers of two
    column_major = False   # scales stored as a transposed [K/G, T] buffer

    def dims(self, shape: Shape) -> tuple[int, int, int]:
        t, k, g = int(shape["token_count"]), int(shape["hidden_size"]), int(shape.get("group_size", 128))
        if k % g:
            raise ValueError(f"{self.name} shape {shape.id}: hidden_size {k} is not divisible by group_size {g}")
        return t, k, g

    def group_size_of(self, shape: Shape) -> int:
        return self.dims(shape)[2]

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        t, k, g = self.dims(shape)
        # Built in row chunks on the device: the largest shape is 3.1M x 2048 (12.6 GB of bf16).
        x = activation_like((t, k), torch_dtype(self.input_dtype), device, rnd.generator(device, seed))
        return {"x": x, "group_size": g, "eps": GROUP_EPS}

    def reference(self, x, group_size, eps):
        """scales = max(max|group|, eps) / 448 per group of group_size; quantized = fp8(clamp(x / scale))."""
        return quantize_per_group(x, group_size, eps, self.ue8m0)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        x, g = inputs["x"], inputs["group_size"]
        q = torch.empty(x.shape, dtype=fp8_dtype(), device=x.device)
        if self.column_major:
            return q, torch.empty((x.shape[-1] // g, x.shape[0]), dtype=torch.float32, device=x.device).t()
        return q, torch.empty((*x.shape[:-1], x.shape[-1] // g), dtype=torch.float32, device=x.device)

    def cost(self, shape: Shape) -> Cost:
        # Read: x [T, K] bf16. Write: quantized [T, K] fp8, scales [T, K/G] fp32.
        # FLOPs (fp32): 5 per element + 3 per group.
        t, k, g = self.dims(shape)
        groups = t * (k // g)
        return Cost(flops={"fp32": FLOPS_PER_ELEM * t * k + FLOPS_PER_GROUP * groups},
                    bytes_read=t * k * 2, bytes_written=t * k + groups * 4)


class PerTokenGroupQuantFp8Ue8m0ColMajorOp(PerTokenGroupQuantFp8Op):
    name = "per_token_group_quant_fp8_ue8m0_colmajor"
    catalog = False
    ue8m0 = True
    column_major = True

    def reference(self, x, group_size, eps):
        """As per_token_group_quant_fp8, with scales rounded up to powers of two (UE8M0)."""
        return quantize_per_group(x, group_size, eps, True)


GROUP_QUANT = register_spec(PerTokenGroupQuantFp8Op.from_catalog())
_variant = PerTokenGroupQuantFp8Ue8m0ColMajorOp(
    {**GROUP_QUANT.entry, "name": PerTokenGroupQuantFp8Ue8m0ColMajorOp.name, "importance": 0.0},
    [replace(s, op=PerTokenGroupQuantFp8Ue8m0ColMajorOp.name) for s in GROUP_QUANT.shapes])
GROUP_QUANT_SPECS = {GROUP_QUANT.name: GROUP_QUANT, _variant.name: register_spec(_variant)}
