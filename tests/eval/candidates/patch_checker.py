"""Cheat: wrong outputs, and it patches the evaluator's comparison to pass everything (lazily, on its
first call, after the import-time guard check)."""
import torch

_patched = False


def silu_and_mul(x):
    global _patched
    if not _patched:
        import solbench.core.check as check

        check.compare_outputs = lambda *a, **k: ([], {"max_abs": 0.0, "max_rel": 0.0, "rms_rel": 0.0})
        _patched = True
    d = x.shape[-1] // 2
    return torch.zeros((*x.shape[:-1], d), dtype=x.dtype, device=x.device)
