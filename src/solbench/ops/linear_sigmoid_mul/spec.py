"""linear_sigmoid_mul (sgl_kernel ``fused_linear_sigmoid_mul``, sgl-kernel/csrc/cpu/gemm.cpp, used by
sglang's qwen2_moe ``_forward_shared_experts`` for the shared-expert gate).

``out = sigmoid(hidden_states @ weight^T + bias) * post_mul_mat``

``hidden_states [T, H]``, ``weight [1, H]`` (Qwen2-MoE's ``shared_expert_gate`` is a Linear(H, 1)),
``bias [1]``, ``post_mul_mat [T, D]`` (the shared expert's output; D = the catalog's
``out_features``): one scalar gate per token broadcast over the row of post_mul_mat. All bf16;
the GPU path of sglang computes the same thing as three kernels
(``F.sigmoid(self.shared_expert_gate(x)) * shared_output``).
"""
from __future__ import annotations

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype


def gate_dims(shape: Shape) -> tuple[int, int, int]:
    t, h, d = int(shape["token_count"]), int(shape["hidden_size"]), int(shape["out_features"])
    if t < 0 or h < 1 or d < 1:
        raise ValueError(f"{shape.key}: need token_count >= 0, hidden_size and out_features >= 1")
    return t, h, d


class LinearSigmoidMul(OpSpec):
    name = "linear_sigmoid_mul"
    dtype = "bf16"
    output_names = ("out",)

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        t, h, d = gate_dims(shape)
        gen = rnd.generator(device, seed)
        dt = torch_dtype(self.dtype)
        # weight ~N(0, 1/H) makes the gate logit ~N(0, 1): sigmoid spans its whole range.
        return {"hidden_states": rnd.randn((t, h), dt, device, gen),
                "weight": rnd.randn((1, h), dt, device, gen, scale=h ** -0.5),
                "bias": rnd.randn((1,), dt, device, gen, scale=0.5),
                "post_mul_mat": rnd.randn((t, d), dt, device, gen)}

    def reference(self, hidden_states, weight, bias, post_mul_mat):
        """out[t, :] = sigmoid(sum_h x[t, h] w[0, h] + b[0]) * post_mul_mat[t, :]; fp32, cast once."""
        import torch

        gate = torch.sigmoid(hidden_states.float() @ weight.float().T + bias.float())
        return (gate * post_mul_mat.float()).to(post_mul_mat.dtype)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        return (torch.empty_like(inputs["post_mul_mat"]),)

    def cost(self, shape: Shape) -> Cost:
        # Read: hidden_states (T*H), weight (H), bias (1), post_mul_mat (T*D), all bf16.
        # Write: out (T*D bf16). FLOPs (fp32: a one-column GEMV has no tensor-core shape):
        # 2*T*H for the dot products, 5*T for bias + sigmoid, T*D for the broadcast multiply.
        t, h, d = gate_dims(shape)
        return Cost(flops={"fp32": 2.0 * t * h + 5.0 * t + 1.0 * t * d},
                    bytes_read=(t * h + h + 1 + t * d) * 2, bytes_written=t * d * 2)

    def tolerance(self, shape: Shape) -> Tolerance:
        # The eager path rounds the gate logit and the gate to bf16 before the final rounding
        # (three 2^-9 roundings), the default bf16 tolerance covers it.
        return Tolerance(atol=1e-2, rtol=1.6e-2, rms_rtol=8e-3)


register_spec(LinearSigmoidMul.from_catalog())
