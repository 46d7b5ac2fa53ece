"""Cheat (GPU: doing less in the timed calls): under CUDA-graph capture only every other call
launches its work; the others hand back the buffer of an earlier call, so each replay does half
the work. Honest outside capture."""
import torch

_n = 0
_last = {}


def silu_and_mul(x):
    global _n
    key = tuple(x.shape)
    capturing = x.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    _n += 1
    if capturing and _n % 2 and key in _last:
        return _last[key]
    d = x.shape[-1] // 2
    out = (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)
    _last[key] = out
    return out
