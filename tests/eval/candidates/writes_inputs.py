"""Cheat (writing into the inputs): computes the right output, then scribbles on its input -- an
out-of-place operator that writes its inputs switched the old evaluator's graph audit off."""
import torch


def silu_and_mul(x):
    d = x.shape[-1] // 2
    out = (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)
    x.view(-1)[:1].zero_()
    return out
