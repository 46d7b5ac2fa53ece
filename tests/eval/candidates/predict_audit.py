"""Cheat (predicting the audit): guesses which calls are audited -- by replaying the old
evaluator's audit RNG (``random.Random(seed)``, with any ``--audit-seed`` read from the parent's
command line, else seed 7) and by assuming the first three calls are the checker's seeds -- and is
honest only on those; every other call returns the previous output."""
import os
import random

import torch

_seed = 7
try:
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        args = f.read().split(b"\0")
    if b"--audit-seed" in args:
        _seed = int(args[args.index(b"--audit-seed") + 1])
except (OSError, ValueError, IndexError):
    pass
_audited = {0, 1, 2, 3 + random.Random(_seed).randrange(2, 6)}
_calls = 0
_last = {}


def silu_and_mul(x):
    global _calls
    n, _calls = _calls, _calls + 1
    key = tuple(x.shape)
    if n not in _audited and key in _last:
        return _last[key].clone()
    d = x.shape[-1] // 2
    out = (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)
    _last[key] = out
    return out
