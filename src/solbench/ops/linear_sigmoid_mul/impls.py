"""linear_sigmoid_mul implementations (the production N = 1 gate and the Atrex-compatible GEMM
variant): ours_triton, and sglang's GPU formulation F.linear + sigmoid + mul in bf16, eager and
compiled."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, add_impl
from solbench.ops.linear_sigmoid_mul.spec import GATE, GATE_ATREX


def eager(hidden_states, weight, bias, post_mul_mat):
    import torch
    import torch.nn.functional as F

    return torch.sigmoid(F.linear(hidden_states, weight, bias)) * post_mul_mat


def ours(hidden_states, weight, bias, post_mul_mat, out=None):
    from solbench.kernels.gate import linear_sigmoid_mul

    return linear_sigmoid_mul(hidden_states, weight, bias, post_mul_mat, out=out)


for _spec, _what in ((GATE, "one pass: per-token dot product, sigmoid and the broadcast multiply"),
                     (GATE_ATREX, "tensor-core GEMM with the bias, sigmoid and multiply in its epilogue")):
    add_impl(Impl(_spec.name, "ours_triton", ours, available=triton_support, takes_out=True,
                  description=f"solbench Triton {_what}"))
    register_torch_baselines(_spec.name, eager, "F.linear + torch.sigmoid + mul (bf16), as sglang on GPU")
