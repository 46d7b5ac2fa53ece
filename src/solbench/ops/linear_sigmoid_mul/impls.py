"""linear_sigmoid_mul baselines: sglang's GPU formulation, F.linear + sigmoid + mul in bf16."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines


def eager(hidden_states, weight, bias, post_mul_mat):
    import torch
    import torch.nn.functional as F

    return torch.sigmoid(F.linear(hidden_states, weight, bias)) * post_mul_mat


register_torch_baselines("linear_sigmoid_mul", eager, "F.linear + torch.sigmoid + mul (bf16), as sglang on GPU")
