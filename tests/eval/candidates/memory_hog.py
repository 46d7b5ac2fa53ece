"""Misbehaves: tries to allocate far more host memory than the cap allows."""
import torch


def silu_and_mul(x):
    hog = torch.ones(64 << 30, dtype=torch.uint8)  # 64 GiB
    return hog[:1]
