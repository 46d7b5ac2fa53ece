"""Misbehaves (slowly): correct, but every call takes 0.5 s, so each request of the check stage
comes back well within the stage's limit while the stage as a whole does not."""
import time

import torch


def silu_and_mul(x):
    time.sleep(0.5)
    d = x.shape[-1] // 2
    return (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)
