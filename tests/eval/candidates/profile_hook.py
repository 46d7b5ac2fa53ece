"""Cheat (fake output through a profile hook): installs ``sys.setprofile`` / ``threading.setprofile``
hooks that, whenever a function with a local named like the judge's reference runs, copy that
reference into the output it returned; the call itself computes nothing."""
import sys
import threading

import torch

_outs = []


def _hook(frame, event, arg):
    if event != "call":
        return
    loc = frame.f_locals
    for name in ("ref", "expected"):
        r = loc.get(name)
        if isinstance(r, dict):
            r = next(iter(r.values()), None)
        if isinstance(r, torch.Tensor):
            for o in _outs:
                if o.shape == r.shape:
                    o.copy_(r)


sys.setprofile(_hook)
threading.setprofile(_hook)


def silu_and_mul(x):
    out = torch.zeros((*x.shape[:-1], x.shape[-1] // 2), dtype=x.dtype, device=x.device)
    _outs.append(out)
    return out
