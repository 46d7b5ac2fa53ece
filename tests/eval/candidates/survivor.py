"""Cheat (escaping the stage): at import, double-forks a daemon in a new session that outlives
the worker and later tries to rewrite the evaluator's results. Its outputs are correct, so only
the survivor can fail it."""
import os

import torch

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        # The marker lets the test find it: "sleep 37.123" must not outlive the evaluation.
        os.execvp("sleep", ["sleep", "37.123"])
    os._exit(0)
os.wait()


def silu_and_mul(x):
    d = x.shape[-1] // 2
    return (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)
