"""Cheat (escaping the stage): at import, double-forks a daemon in a new session that outlives
the worker and later tries to rewrite the evaluator's results. Its outputs are correct, so only
the survivor can fail it."""
import os

import torch

# The pipe's write end is close-on-exec: reading it to its end waits until the daemon has become
# "sleep" (on a loaded machine a forked copy of the worker could otherwise still be a python
# process when the evaluator names what survived).
ready_r, ready_w = os.pipe()
if os.fork() == 0:
    os.close(ready_r)
    os.setsid()
    if os.fork() == 0:
        # The marker lets the test find it: "sleep 37.123" must not outlive the evaluation.
        try:
            os.execvp("sleep", ["sleep", "37.123"])
        finally:
            os._exit(127)  # exec failed: never run the worker's code twice
    os._exit(0)
os.close(ready_w)
os.read(ready_r, 1)
os.close(ready_r)
os.wait()


def silu_and_mul(x):
    d = x.shape[-1] // 2
    return (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)
