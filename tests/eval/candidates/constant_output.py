"""Cheat: a degenerate output (all zeros) of the right shape and dtype."""
import torch


def silu_and_mul(x):
    return torch.zeros((*x.shape[:-1], x.shape[-1] // 2), dtype=x.dtype, device=x.device)
