"""Edge-case shapes a task promises besides its catalog shapes: 0 tokens, an odd token count, an
odd hidden size.

They are derived from the operator's smallest shape by changing one dimension. A derived shape
is kept only when the operator's own reference accepts it (on the CPU, here and now), so a task
never promises a case its reference cannot compute; an operator whose spec defines
``edge_shapes()`` decides for itself. Edge shapes are checked for correctness and never timed.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from solbench.core.spec import OpSpec, Shape

# Catalog kwargs that count tokens (rows) and that size a row, in the catalog's own names.
TOKEN_KEYS = ("token_count", "num_tokens", "total_tokens", "rows", "seq_len", "m")
HIDDEN_KEYS = ("hidden_size", "dim")
ODD_TOKENS = 7
MAX_EDGE_BYTES = 8 << 20  # edge shapes stay small: they run on the CPU too


def _variants(params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for k in TOKEN_KEYS:
        if isinstance(params.get(k), int):
            out.append((f"0 tokens ({k}=0)", {**params, k: 0}))
            out.append((f"odd token count ({k}={ODD_TOKENS})", {**params, k: ODD_TOKENS}))
            break
    dims = params.get("shape")
    if isinstance(dims, (list, tuple)) and len(dims) >= 2 and all(isinstance(d, int) for d in dims):
        out.append(("0 tokens (leading dim 0)", {**params, "shape": [0, *dims[1:]]}))
        # An odd last dim where the operator allows it, else an odd half (pairs such as [gate | up]).
        for last in (dims[-1] + 1, dims[-1] + 2):
            out.append((f"odd sizes ({ODD_TOKENS} rows, last dim {last})",
                        {**params, "shape": [ODD_TOKENS, *dims[1:-1], last]}))
    for k in HIDDEN_KEYS:
        h = params.get(k)
        if isinstance(h, int) and h > 2:
            tok = {t: ODD_TOKENS for t in TOKEN_KEYS if isinstance(params.get(t), int)}
            out.append((f"odd {k} ({k}={h + 1})", {**params, **tok, k: h + 1}))
            break
    return out


def _reference_accepts(spec: OpSpec, shape: Shape) -> bool:
    import torch

    try:
        if spec.cost(shape).total_bytes > MAX_EDGE_BYTES:
            return False
    except NotImplementedError:
        pass
    except Exception:  # noqa: BLE001 - a cost model that rejects the shape rejects the shape
        return False
    try:
        inputs = spec.make_inputs(shape, torch.device("cpu"), 0)
        with torch.no_grad():
            out = spec.normalize_outputs(spec.reference(**inputs))
        if not all(isinstance(v, torch.Tensor) for v in out.values()):
            return False
        # The checker itself must be able to judge the shape: the reference against itself passes.
        from solbench.core.check import compare_outputs

        errors, _ = compare_outputs(spec, shape, inputs, out, out, torch.device("cpu"))
        return not errors
    except Exception:  # noqa: BLE001 - the reference refusing the shape is the answer
        return False


def edge_shapes(spec: OpSpec, limit: int = 3) -> list[Shape]:
    """At most ``limit`` edge shapes of ``spec`` (ids ``edge-0``, ``edge-1``...), each with a
    description of what makes it an edge case."""
    own = getattr(spec, "edge_shapes", None)
    if callable(own):
        return list(own())[:limit]
    if not spec.shapes:
        return []
    try:
        base = min(spec.shapes, key=lambda s: spec.cost(s).total_bytes)
    except Exception:  # noqa: BLE001
        base = spec.shapes[0]
    kept: list[Shape] = []
    seen_kinds = set()
    for desc, params in _variants(dict(base.params)):
        kind = desc.split(" (")[0]
        if kind in seen_kinds:
            continue
        shape = replace(base, id=f"edge-{len(kept)}", params=params, description=f"edge case: {desc}",
                        init_kwargs=None, input_kwargs=dict(params), provenance={}, weight=0.0, smoke=True)
        if _reference_accepts(spec, shape):
            kept.append(shape)
            seen_kinds.add(kind)
        if len(kept) >= limit:
            break
    return kept
