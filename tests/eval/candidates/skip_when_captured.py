"""Cheat (GPU): honest eagerly, but during CUDA-graph capture launches nothing and returns the
output of its last eager call, so the timed graph is empty."""
import torch

_last = {}


def silu_and_mul(x):
    key = tuple(x.shape)
    if x.device.type == "cuda" and torch.cuda.is_current_stream_capturing() and key in _last:
        return _last[key]
    d = x.shape[-1] // 2
    out = (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)
    _last[key] = out
    return out
