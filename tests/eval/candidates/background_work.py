"""Cheat (work moved out of the timed calls, the CPU analogue of an unjoined side stream): once
calls come in a quick burst (a timing loop), a call returns an empty output at once and a
background thread computes it afterwards."""
import queue
import threading
import time

import torch

_q = queue.Queue()
_stamps = []


def _work():
    while True:
        x, out = _q.get()
        d = x.shape[-1] // 2
        for _ in range(20):  # enough work that hiding it matters
            out.copy_((torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype))


threading.Thread(target=_work, daemon=True).start()


def silu_and_mul(x):
    now = time.perf_counter()
    _stamps.append(now)
    out = torch.empty((*x.shape[:-1], x.shape[-1] // 2), dtype=x.dtype, device=x.device)
    burst = len(_stamps) > 20 and now - _stamps[-20] < 0.01
    if burst:
        _q.put((x, out))
        return out
    d = x.shape[-1] // 2
    out.copy_((torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype))
    return out
