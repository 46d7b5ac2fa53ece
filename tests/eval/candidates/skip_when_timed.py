"""Cheat (stage detection by frame): reads its callers' frames and, when the caller is the timing
loop (not a single checked call), skips the work and hands back an output it computed earlier."""
import sys

import torch

_last = {}


def _timed() -> bool:
    f = sys._getframe(2)
    for _ in range(6):
        if f is None:
            return False
        if f.f_code.co_name in ("cmd_pass", "cmd_capture", "_replay_samples", "body", "<listcomp>"):
            return True
        f = f.f_back
    return False


def silu_and_mul(x):
    key = tuple(x.shape)
    if key in _last and _timed():
        return _last[key]
    d = x.shape[-1] // 2
    out = (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)
    _last[key] = out
    return out
