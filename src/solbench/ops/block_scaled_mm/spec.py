"""block_scaled_mm (vLLM ``w8a8_triton_block_scaled_mm``,
vllm/model_executor/layers/quantization/utils/fp8_utils.py).

``a [M, K]`` fp8 e4m3 with per-token-group scales ``a_scales [M, K/group_k]`` fp32, ``b [N, K]``
fp8 (the weight, row per output feature) with block scales ``b_scales [N/group_n, K/group_k]``:

``out[m, n] = sum_kb a_scales[m, kb] * b_scales[n // group_n, kb] * sum_{k in kb} a[m, k] b[n, k]``

i.e. ``out = (a * a_scales) @ (b * b_scales)^T`` with every scale applied to its block; fp32
output (the catalog's output dtype; vLLM takes it as ``output_dtype``).
"""
from __future__ import annotations

from dataclasses import replace

from solbench.core import fp8_blocks
from solbench.core import inputs as rnd
from solbench.core.moe_routing import ceil_div
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype

# Rows of ``a`` dequantized per step of the reference: bounds its fp32 temporaries to ~0.5 GB.
_REF_ROWS_ELEMS = 1 << 27


def mm_dims(shape: Shape) -> tuple[int, int, int, int, int]:
    m, n, k = int(shape["m"]), int(shape["n"]), int(shape["k"])
    gn, gk = int(shape["group_n"]), int(shape["group_k"])
    if m < 0 or min(n, k, gn, gk) < 1:
        raise ValueError(f"{shape.key}: need m >= 0 and positive n, k, group sizes (got {m}, {n}, {k}, {gn}, {gk})")
    return m, n, k, gn, gk


class BlockScaledMm(OpSpec):
    name = "block_scaled_mm"
    dtype = "fp8_e4m3"
    out_dtype = "fp32"
    output_names = ("out",)

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        m, n, k, gn, gk = mm_dims(shape)
        gen = rnd.generator(device, seed)
        # Dequantized a ~N(0, 1), b ~N(0, 1/K): out is O(1).
        a, a_scales = fp8_blocks.random_blocks((m, k), (1, gk), device, gen, scale=1.0)
        b, b_scales = fp8_blocks.random_blocks((n, k), (gn, gk), device, gen, scale=k ** -0.5)
        return {"a": a, "b": b, "a_scales": a_scales, "b_scales": b_scales}

    def reference(self, a, b, a_scales, b_scales):
        """out = dequant(a, a_scales, 1 x group_k) @ dequant(b, b_scales, group_n x group_k)^T, fp32
        math (exact products of fp8 values and scales), in row chunks of a."""
        import torch

        m, k = a.shape
        n = b.shape[0]
        gk = ceil_div(k, a_scales.shape[1])
        gn = ceil_div(n, b_scales.shape[0])
        bt = fp8_blocks.dequantize(b, b_scales, (gn, gk)).T
        out = torch.empty((m, n), dtype=torch_dtype(self.out_dtype), device=a.device)
        step = max(1, _REF_ROWS_ELEMS // max(k, n, 1))
        for r0 in range(0, m, step):
            r1 = min(m, r0 + step)
            out[r0:r1] = fp8_blocks.dequantize(a[r0:r1], a_scales[r0:r1], (1, gk)) @ bt
        return out

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        m, n = inputs["a"].shape[0], inputs["b"].shape[0]
        return (torch.empty((m, n), dtype=torch_dtype(self.out_dtype), device=inputs["a"].device),)

    def cost(self, shape: Shape) -> Cost:
        # Read: a (M*K fp8), b (N*K fp8), a_scales (M*ceil(K/gk) fp32), b_scales
        # (ceil(N/gn)*ceil(K/gk) fp32). Write: out (M*N fp32). FLOPs: 2*M*N*K on fp8 tensor cores
        # (the per-block rescale of the accumulator, 2 per M*N*ceil(K/gk), counted as fp32).
        m, n, k, gn, gk = mm_dims(shape)
        kb = ceil_div(k, gk)
        read = m * k + n * k + 4 * (m * kb + ceil_div(n, gn) * kb)
        return Cost(flops={"fp8_e4m3_tc": 2.0 * m * n * k, "fp32": 2.0 * m * n * kb},
                    bytes_read=read, bytes_written=m * n * 4)

    def tolerance(self, shape: Shape) -> Tolerance:
        # out ~N(0, 1). fp8 products are exact and accumulate in fp32; implementations that
        # dequantize to bf16 or emit bf16 round at 2^-9 relative (about 0.2% RMS), so the
        # per-element bound is a few of those plus an absolute floor for values near 0.
        return Tolerance(atol=3e-2, rtol=3e-2, rms_rtol=8e-3)

    def smoke_shapes(self) -> list[Shape]:
        # The smallest catalog GEMM (349x2048x2048) is 3 GFLOP of fp32 on the CPU: use the same
        # 128x128 block structure at small sizes (one with a partial last row group of a).
        base = min(self.shapes, key=lambda s: int(s["m"]))
        dims = [dict(m=5, n=256, k=384, group_n=128, group_k=128),
                dict(m=33, n=384, k=256, group_n=128, group_k=128)]
        return [replace(base, id=f"smoke{j}", params=d, smoke=True) for j, d in enumerate(dims)]


class BlockScaledMmPerTensor(BlockScaledMm):
    """An upper reference beside block_scaled_mm, not its contract: the same GEMM sizes with one
    fp32 scale per operand, ``out = (a * a_scale) @ (b * b_scale)^T`` (fp32 out). What fp8 tensor
    cores reach without per-block scales; a separate variant so that its figures are ranked apart
    from the block-scaled implementations and never enter the suite score (importance 0)."""

    name = "block_scaled_mm_per_tensor"
    catalog = False

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        import torch

        m, n, k, _, _ = mm_dims(shape)
        gen = rnd.generator(device, seed)
        # One block spanning each operand: the same value statistics as the block-scaled inputs.
        a, a_scale = fp8_blocks.random_blocks((m, k), (max(m, 1), k), device, gen, scale=1.0)
        b, b_scale = fp8_blocks.random_blocks((n, k), (n, k), device, gen, scale=k ** -0.5)
        return {"a": a, "b": b, "a_scale": a_scale.reshape(()).to(torch.float32),
                "b_scale": b_scale.reshape(()).to(torch.float32)}

    def reference(self, a, b, a_scale, b_scale):
        """out = (a * a_scale) @ (b * b_scale)^T in fp32, in row chunks of a."""
        import torch

        m, k = a.shape
        bt = (b.to(torch.float32) * b_scale).T
        out = torch.empty((m, b.shape[0]), dtype=torch.float32, device=a.device)
        step = max(1, _REF_ROWS_ELEMS // max(k, b.shape[0], 1))
        for r0 in range(0, m, step):
            r1 = min(m, r0 + step)
            out[r0:r1] = (a[r0:r1].to(torch.float32) * a_scale) @ bt
        return out

    def cost(self, shape: Shape) -> Cost:
        # Read: a (M*K fp8), b (N*K fp8), two fp32 scales. Write: out (M*N fp32). FLOPs: 2*M*N*K on
        # fp8 tensor cores; the one rescale per output is the epilogue's (counted as fp32).
        m, n, k, _, _ = mm_dims(shape)
        return Cost(flops={"fp8_e4m3_tc": 2.0 * m * n * k, "fp32": 1.0 * m * n},
                    bytes_read=m * k + n * k + 8, bytes_written=m * n * 4)


BLOCK_SCALED_MM = register_spec(BlockScaledMm.from_catalog())
# The variant's shapes drop the deployed times: those measured the block-scaled contract.
PER_TENSOR = register_spec(BlockScaledMmPerTensor(
    {**BLOCK_SCALED_MM.entry, "name": BlockScaledMmPerTensor.name, "importance": 0.0},
    [replace(s, op=BlockScaledMmPerTensor.name,
             provenance={k: v for k, v in s.provenance.items() if k != "deployed_us"})
     for s in BLOCK_SCALED_MM.shapes]))
