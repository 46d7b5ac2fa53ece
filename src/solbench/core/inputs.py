"""Seeded random inputs. Every generator takes an explicit ``torch.Generator`` so that a shape's
inputs are a pure function of (shape, device, seed), and values are never all zeros."""
from __future__ import annotations

from typing import Sequence


def generator(device, seed: int):
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def randn(shape: Sequence[int], dtype, device, gen, scale: float = 1.0, shift: float = 0.0):
    """Normal(shift, scale) drawn in fp32 and cast once."""
    import torch

    x = torch.randn(tuple(shape), generator=gen, device=device, dtype=torch.float32)
    if scale != 1.0:
        x.mul_(scale)
    if shift:
        x.add_(shift)
    return x.to(dtype)


def uniform(shape: Sequence[int], dtype, device, gen, low: float = 0.0, high: float = 1.0):
    import torch

    x = torch.rand(tuple(shape), generator=gen, device=device, dtype=torch.float32)
    return (x * (high - low) + low).to(dtype)


def randint(shape: Sequence[int], low: int, high: int, device, gen, dtype=None):
    import torch

    return torch.randint(low, high, tuple(shape), generator=gen, device=device, dtype=dtype or torch.int32)


def row_slice(x, extra: int):
    """A view of ``x`` with the same values whose rows are ``extra`` elements longer than its last
    dim: a non-contiguous-rows input, as a slice of a wider activation buffer would be."""
    import torch

    n = x.shape[-1]
    wide = torch.empty((*x.shape[:-1], n + extra), dtype=x.dtype, device=x.device)
    wide[..., n:] = 0
    wide[..., :n] = x
    return wide[..., :n]
