"""Cheat (patching the judge): replaces every piece of judging it can reach -- the checker's
comparison, builtins, ``sys.modules`` entries of the judge, the operator's tolerance and cost
model -- then returns outputs that are off by one everywhere."""
import builtins
import sys
import types

import torch

try:
    import solbench.core.check as check
    from solbench.core.spec import get_spec

    check.compare_outputs = lambda *a, **k: ([], {"max_abs": 0.0, "max_rel": 0.0, "rms_rel": 0.0})
    check.compare_tensor = lambda *a, **k: ([], {"max_abs": 0.0, "max_rel": 0.0, "rms_rel": 0.0})
    spec_cls = type(get_spec("silu_and_mul"))
    spec_cls.tolerance = lambda self, shape: __import__("solbench.core.spec", fromlist=["Tolerance"]).Tolerance(1e9, 1e9)
    spec_cls.cost = lambda self, shape: None
    fake = types.ModuleType("solbench.eval.judge")
    fake.Judge = object
    sys.modules["solbench.eval.judge"] = fake
    sys.modules["solbench.eval.integrity"] = fake
except Exception:  # noqa: BLE001 - whatever is there, the cheat patches it
    pass
builtins.all = lambda it: True
builtins.any = lambda it: False


def silu_and_mul(x):
    d = x.shape[-1] // 2
    good = (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float())
    return (good + 1.0).to(x.dtype)
