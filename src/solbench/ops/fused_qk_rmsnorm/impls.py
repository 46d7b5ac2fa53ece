"""fused_qk_rmsnorm implementations: ours_triton (in place, like upstream), torch_eager,
torch_compile, torch_native (F.rms_norm on the head views). liger has no QK-norm operator."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, add_impl
from solbench.peers import torch_rms_norm_support

OP = "fused_qk_rmsnorm"


def _heads(hidden_states, head_num, kv_head_num, size_per_head):
    t = hidden_states.shape[0]
    x = hidden_states.view(t, head_num + 2 * kv_head_num, size_per_head)
    return x[:, :head_num], x[:, head_num:head_num + kv_head_num]


def eager_qk(hidden_states, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps):
    """Per-head RMSNorm written the usual way (fp32 statistics, round, weight), written back
    into the q and k slices in place."""
    import torch

    for part, w in zip(_heads(hidden_states, head_num, kv_head_num, size_per_head), (q_weight, k_weight)):
        pf = part.float()
        part.copy_((pf * torch.rsqrt(pf.pow(2).mean(dim=-1, keepdim=True) + eps)).to(part.dtype) * w)
    return hidden_states


def native_qk(hidden_states, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps):
    import torch.nn.functional as F

    for part, w in zip(_heads(hidden_states, head_num, kv_head_num, size_per_head), (q_weight, k_weight)):
        part.copy_(F.rms_norm(part, (size_per_head,), w, eps))
    return hidden_states


def ours(hidden_states, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps):
    from solbench.kernels.rownorm import fused_qk_rmsnorm_

    return fused_qk_rmsnorm_(hidden_states, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps)


add_impl(Impl(OP, "ours_triton", ours, available=triton_support,
              description="solbench Triton row-norm kernel over (token, head) rows, in place"))
register_torch_baselines(OP, eager_qk, "per-head fp32 RMSNorm, written back in place")
add_impl(Impl(OP, "torch_native", native_qk, available=torch_rms_norm_support, baseline=True,
              description="torch.nn.functional.rms_norm on the q and k head views, copied back"))
