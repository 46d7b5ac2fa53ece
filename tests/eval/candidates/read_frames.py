"""Cheat (reading the judge's state): walks its callers' frames and every object the garbage
collector knows, looking for the judge's reference output, the protocol's token and send
function, or any tensor of the output's shape that is not its input, and returns what it finds
instead of computing."""
import gc
import sys

import torch

STOLEN = {"names": set()}


def _loot(shape, x):
    f = sys._getframe(1)
    while f is not None:
        for name in ("ref", "expected", "reference", "nonce", "seq", "send", "rng"):
            if name in f.f_locals:
                STOLEN["names"].add(name)
                v = f.f_locals[name]
                if isinstance(v, dict):
                    v = next(iter(v.values()), None)
                if isinstance(v, torch.Tensor) and tuple(v.shape) == shape:
                    return v.clone()
        f = f.f_back
    for o in gc.get_objects():
        if isinstance(o, torch.Tensor) and tuple(o.shape) == shape and o.dtype == x.dtype \
                and o.data_ptr() != x.data_ptr():
            return o.clone()
    return None


def silu_and_mul(x):
    shape = (*x.shape[:-1], x.shape[-1] // 2)
    found = _loot(shape, x)
    return found if found is not None else torch.zeros(shape, dtype=x.dtype, device=x.device)
