"""Cheat (GPU): launches its work on a side stream the caller's stream never waits for, so CUDA
events on the caller's stream see nothing."""
import torch

_side = None


def silu_and_mul(x):
    global _side
    d = x.shape[-1] // 2
    out = torch.empty((*x.shape[:-1], d), dtype=x.dtype, device=x.device)
    if x.device.type != "cuda":
        out.copy_((torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype))
        return out
    if _side is None:
        _side = torch.cuda.Stream()
    _side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(_side):
        for _ in range(20):  # enough work that hiding it matters
            out.copy_((torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype))
    return out
