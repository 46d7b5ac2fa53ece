"""Cheat: returns a tensor subclass (a lazy wrapper could defer or fake its values)."""
import torch


class Lazy(torch.Tensor):
    pass


def silu_and_mul(x):
    d = x.shape[-1] // 2
    out = (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)
    return out.as_subclass(Lazy)
