"""Torch formulations of the library's kernels: what a public function computes on tensors that
our Triton kernels do not run on (see :func:`solbench.kernels.common.runs_eager`). fp32 math and
one rounding, as the benchmark's references."""
from __future__ import annotations


def rms_normalize(v, eps: float, group: int | None = None):
    """``v / sqrt(mean(v^2) + eps)`` in fp32 over the last dim, or over each ``group`` of it."""
    import torch

    v = v.float()
    if group is None or group == v.shape[-1]:
        return v * torch.rsqrt(v.square().mean(dim=-1, keepdim=True) + eps)
    g = v.reshape(*v.shape[:-1], v.shape[-1] // group, group)
    return (g * torch.rsqrt(g.square().mean(dim=-1, keepdim=True) + eps)).reshape(v.shape)


def silu(v):
    import torch

    return v * torch.sigmoid(v)
