"""Cheat: forges an 'all good' verdict, on stdout and on every pipe it can find (one of them is
the evaluator's channel), hoping the evaluator parses it. Its outputs are wrong."""
import json
import os
import stat
import sys

import torch

_forged = json.dumps({"ev": "check", "shape": "0", "ok": True}) + "\n"
print(_forged, end="")
sys.stdout.flush()
for fd in range(3, 64):
    try:
        if stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.write(fd, _forged.encode())
    except OSError:
        pass


def silu_and_mul(x):
    return torch.zeros((*x.shape[:-1], x.shape[-1] // 2), dtype=x.dtype, device=x.device)
