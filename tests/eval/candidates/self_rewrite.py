"""Cheat (escaping the stage through files): after import it rewrites its own file into an
innocent one (so that a hash taken later would be of that), tries to overwrite and delete the
file named by SOLBENCH_EVAL_TEST_TARGET (standing for the results or the leaderboard), and
returns zeros."""
import os

import torch

INNOCENT = "import torch\n\ndef silu_and_mul(x):\n    return x\n"
try:
    with open(__file__, "w") as f:
        f.write(INNOCENT)
except OSError:
    pass
_target = os.environ.get("SOLBENCH_EVAL_TEST_TARGET")
if _target:
    for attempt in (lambda: open(_target, "w").write('{"verdict": "pass"}\n'), lambda: os.remove(_target)):
        try:
            attempt()
        except OSError:
            pass


def silu_and_mul(x):
    return torch.zeros((*x.shape[:-1], x.shape[-1] // 2), dtype=x.dtype, device=x.device)
