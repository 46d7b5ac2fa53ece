"""linear_sigmoid_mul (sgl_kernel ``fused_linear_sigmoid_mul``, sgl-kernel/csrc/cpu/gemm.cpp, used by
sglang's qwen2_moe ``_forward_shared_experts`` for the shared-expert gate).

``out = sigmoid(hidden_states @ weight^T + bias) * post_mul_mat``

Production contract (this operator): ``hidden_states [T, H]``, ``weight [1, H]`` (Qwen2-MoE's
``shared_expert_gate`` is a Linear(H, 1)), ``bias [1]``, ``post_mul_mat [T, H]`` (the shared
expert's output, hidden_size wide) and ``out [T, H]``: one scalar gate per token broadcast over
its row. The profile's time per call fits this (65 us on the largest prefill); a GEMM with the
catalog's ``out_features`` columns would be 270 GFLOP. All bf16; the GPU path of sglang computes
the same thing as three kernels (``F.sigmoid(self.shared_expert_gate(x)) * shared_output``).

Atrex-compatible variant (``linear_sigmoid_mul_atrex``, not a catalog operator): ``weight
[out_features, H]``, ``bias [out_features]``, ``post_mul_mat`` and ``out [T, out_features]``, as
Atrex-Bench's reference defines it; a bf16 tensor-core GEMM with a sigmoid-multiply epilogue,
which is what Atrex's published SOL and deployed times measure.
"""
from __future__ import annotations

from dataclasses import replace

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype


def gate_dims(shape: Shape) -> tuple[int, int, int]:
    """(token_count, hidden_size, out_features)."""
    t, h, d = int(shape["token_count"]), int(shape["hidden_size"]), int(shape["out_features"])
    if t < 0 or h < 1 or d < 1:
        raise ValueError(f"{shape.key}: need token_count >= 0, hidden_size and out_features >= 1")
    return t, h, d


class LinearSigmoidMul(OpSpec):
    name = "linear_sigmoid_mul"
    dtype = "bf16"
    output_names = ("out",)

    def gate_width(self, shape: Shape) -> tuple[int, int]:
        """(N, D): rows of the weight and width of post_mul / out. Production: (1, hidden_size)."""
        _, h, _ = gate_dims(shape)
        return 1, h

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        t, h, _ = gate_dims(shape)
        n, d = self.gate_width(shape)
        gen = rnd.generator(device, seed)
        dt = torch_dtype(self.dtype)
        # weight ~N(0, 1/H) makes the gate logit ~N(0, 1): sigmoid spans its whole range.
        return {"hidden_states": rnd.randn((t, h), dt, device, gen),
                "weight": rnd.randn((n, h), dt, device, gen, scale=h ** -0.5),
                "bias": rnd.randn((n,), dt, device, gen, scale=0.5),
                "post_mul_mat": rnd.randn((t, d), dt, device, gen)}

    def reference(self, hidden_states, weight, bias, post_mul_mat):
        """out[t, j] = sigmoid(sum_h x[t, h] w[n, h] + b[n]) * post_mul_mat[t, j] with n = 0 for the
        one-row gate (broadcast over the row) and n = j otherwise; fp32, cast once."""
        import torch

        gate = torch.sigmoid(hidden_states.float() @ weight.float().T + bias.float())
        return (gate * post_mul_mat.float()).to(post_mul_mat.dtype)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        return (torch.empty_like(inputs["post_mul_mat"]),)

    def cost(self, shape: Shape) -> Cost:
        # Read: hidden_states (T*H), weight (H), bias (1), post_mul_mat (T*H), all bf16.
        # Write: out (T*H bf16). FLOPs (fp32: a one-column GEMV has no tensor-core shape):
        # 2*T*H for the dot products, 5*T for bias + sigmoid, T*H for the broadcast multiply.
        t, h, _ = gate_dims(shape)
        return Cost(flops={"fp32": 2.0 * t * h + 5.0 * t + 1.0 * t * h},
                    bytes_read=(t * h + h + 1 + t * h) * 2, bytes_written=t * h * 2)

    def tolerance(self, shape: Shape) -> Tolerance:
        # The eager path rounds the gate logit and the gate to bf16 before the final rounding
        # (three 2^-9 roundings), the default bf16 tolerance covers it.
        return Tolerance(atol=1e-2, rtol=1.6e-2, rms_rtol=8e-3)


class LinearSigmoidMulAtrex(LinearSigmoidMul):
    name = "linear_sigmoid_mul_atrex"
    catalog = False

    def gate_width(self, shape: Shape) -> tuple[int, int]:
        _, _, d = gate_dims(shape)
        return d, d

    def cost(self, shape: Shape) -> Cost:
        # Read: hidden_states (T*H), weight (N*H), bias (N), post_mul_mat (T*N), all bf16. Write:
        # out (T*N bf16). FLOPs: the GEMM, 2*T*H*N on bf16 tensor cores; the epilogue (bias,
        # sigmoid, multiply: 6 per output) on CUDA cores, which can overlap the tensor cores.
        t, h, n = gate_dims(shape)
        return Cost(flops={"bf16_tc": 2.0 * t * h * n, "fp32": 6.0 * t * n},
                    bytes_read=(t * h + n * h + n + t * n) * 2, bytes_written=t * n * 2)

    def smoke_shapes(self) -> list[Shape]:
        # The catalog's smallest GEMM (1 x 2048 x 4096) is slow in the CPU interpreter. Reduced
        # shapes with partial tiles on every side: a decode-sized M and one past the 64-row tiles.
        base = min(self.shapes, key=lambda s: self.cost(s).total_bytes)
        return [replace(base, id=f"smoke_{t}x{h}x{n}", smoke=True,
                        params={**base.params, "token_count": t, "hidden_size": h, "out_features": n},
                        description=f"reduced: T={t}, H={h}, out_features={n}")
                for t, h, n in ((5, 136, 48), (70, 96, 80))]


GATE = register_spec(LinearSigmoidMul.from_catalog())
GATE_ATREX = register_spec(LinearSigmoidMulAtrex(
    {**GATE.entry, "name": LinearSigmoidMulAtrex.name, "importance": 0.0},
    [replace(s, op=LinearSigmoidMulAtrex.name) for s in GATE.shapes]))
