"""Cheat (patching the clocks): rebinds the clocks a timer reads -- ``time.perf_counter``, the
worker's own clock, CUDA events -- so every sample reads as almost nothing. Correct outputs."""
import sys
import time

import torch

torch.cuda.Event.elapsed_time = lambda self, end: 1e-3
time.perf_counter = lambda: 0.0
for name in ("__main__", "solbench.eval.worker"):
    mod = sys.modules.get(name)
    if mod is not None and hasattr(mod, "_clock"):
        mod._clock = lambda: 0.0


def silu_and_mul(x):
    d = x.shape[-1] // 2
    return (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)
