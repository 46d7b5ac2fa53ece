"""Hot shapes: turn the input shapes a torch profiler recorded (``record_shapes=True``) into a suite
file in the catalog's schema, for ``solbench run --suite``.

Each recorded CPU-operator call is attributed to the catalog operator its kernels were classified
as (it must be exactly one catalog operator, so a call wrapping a whole MoE layer is left out), then
a per-operator mapper turns its tensor dims into the catalog's kwargs. Operators whose inputs do
not map onto the catalog's parameters (attention with its varlen metadata, fp8 GEMMs with scales
laid out per framework) have no mapper and are reported as such.
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable

from solbench.profiles.classifier import Classifier
from solbench.profiles.model import ShapeCall


def _tensors(dims) -> list[list[int]]:
    return [list(d) for d in dims if isinstance(d, list) and d and all(isinstance(x, int) for x in d)]


def _rows(t: list[int]) -> tuple[int, int]:
    return math.prod(t[:-1]), t[-1]


def _floats(concrete) -> list[float]:
    out = []
    for c in concrete or []:
        try:
            if isinstance(c, str) and c.strip() and any(ch in c for ch in ".e") and not c.startswith("["):
                out.append(float(c))
        except ValueError:
            pass
    return out


def _ints(concrete) -> list[int]:
    out = []
    for c in concrete or []:
        if isinstance(c, str) and c.strip().lstrip("-").isdigit():
            out.append(int(c))
    return out


def _eps(call: ShapeCall) -> dict:
    small = [f for f in _floats(call.concrete) if 0 < f < 1e-2]
    return {"eps": small[0]} if small else {}


def _first(ts, rank_min=2):
    return next((t for t in ts if len(t) >= rank_min), None)


def _silu_and_mul(call):
    ts = _tensors(call.input_dims)
    # The input is [..., 2d]; an out= tensor beside it is [..., d].
    cands = [t for t in ts if len(t) >= 2 and t[-1] % 2 == 0]
    if not cands:
        return None
    x = max(cands, key=lambda t: t[-1])
    n, h = _rows(x)
    return {"shape": [n, h]}


def _row_norm(call):
    x = _first(_tensors(call.input_dims))
    if x is None:
        return None
    n, h = _rows(x)
    return {"token_count": n, "hidden_size": h, **_eps(call)}


def _tokens_hidden(call):
    x = _first(_tensors(call.input_dims))
    if x is None:
        return None
    n, h = _rows(x)
    return {"token_count": n, "hidden_size": h}


def _l2_norm(call):
    x = _first(_tensors(call.input_dims))
    if x is None:
        return None
    n, h = _rows(x)
    return {"num_tokens": n, "hidden_size": h}


def _layer_norm(call):
    x = _first(_tensors(call.input_dims))
    return None if x is None else {"shape": x, **_eps(call)}


def _topk_softmax(call):
    ts = [t for t in _tensors(call.input_dims) if len(t) == 2]
    if not ts:
        return None
    gating = max(ts, key=lambda t: t[-1])
    ks = [t[-1] for t in ts if t[0] == gating[0] and t[-1] < gating[-1]]
    out = {"token_count": gating[0], "num_experts": gating[-1]}
    if ks:
        out["top_k"] = min(ks)
    return out


def _moe_align(call):
    ids = _first(_tensors(call.input_dims))
    if ids is None or len(ids) != 2:
        return None
    out = {"token_count": ids[0], "top_k": ids[1]}
    ints = [i for i in _ints(call.concrete) if i > 0]
    if len(ints) >= 2:  # (topk_ids, num_experts, block_size, ...)
        out["num_experts"], out["block_size"] = ints[0], ints[1]
    return out


def _moe_sum(call):
    x = next((t for t in _tensors(call.input_dims) if len(t) == 3), None)
    return None if x is None else {"token_count": x[0], "top_k": x[1], "hidden_size": x[2]}


def _topk_filter(call):
    x = _first(_tensors(call.input_dims))
    if x is None:
        return None
    n, v = _rows(x)
    out = {"seq_len": n, "hidden_size": v}
    ks = [i for i in _ints(call.concrete) if 0 < i < v]
    if ks:
        out["top_k"] = ks[0]
    return out


def _reshape_and_cache(call):
    ts = _tensors(call.input_dims)
    key = next((t for t in ts if len(t) == 3), None)
    if key is None:
        return None
    out = {"shape": key}
    cache = next((t for t in ts if len(t) == 4), None)
    if cache is not None:  # flash layout [num_blocks, block_size, heads, head_size]
        out["block_size"] = cache[1]
    return out


def _fused_moe(call):
    ts = _tensors(call.input_dims)
    hs = next((t for t in ts if len(t) == 2), None)
    ws = [t for t in ts if len(t) == 3]
    if hs is None or len(ws) < 2:
        return None
    w1, w2 = ws[0], ws[1]
    topk = next((t for t in ts if len(t) == 2 and t is not hs and t[0] == hs[0]), None)
    out = {"token_count": hs[0], "hidden_size": hs[1], "num_experts": w1[0], "intermediate_size": w2[-1]}
    if topk is not None:
        out["top_k"] = topk[1]
    return out


MAPPERS: dict[str, Callable[[ShapeCall], dict | None]] = {
    "silu_and_mul": _silu_and_mul,
    "rms_norm": _row_norm,
    "fused_add_rms_norm": _row_norm,
    "fused_rmsnorm_quant": _tokens_hidden,
    "fp8_dynamic_per_token_quant": _tokens_hidden,
    "per_token_group_quant_fp8": _tokens_hidden,
    "l2_norm": _l2_norm,
    "layer_norm": _layer_norm,
    "moe_topk_gating_softmax": _topk_softmax,
    "moe_align_block_size": _moe_align,
    "moe_count_and_sort": _moe_align,
    "moe_sum_reduce": _moe_sum,
    "topk_filter": _topk_filter,
    "reshape_and_cache": _reshape_and_cache,
    "fused_moe": _fused_moe,
}


def _catalog_layout(entry: dict) -> tuple[set, set, dict]:
    """Which kwargs the catalog puts in init_kwargs and input_kwargs, and the most common value of
    each (a default for what a recorded call cannot tell, such as a norm's eps)."""
    init_keys, input_keys = set(), set()
    values: dict[str, Counter] = {}
    for s in entry["shapes"]:
        for part, keys in (("init_kwargs", init_keys), ("input_kwargs", input_keys)):
            for k, v in (s.get(part) or {}).items():
                keys.add(k)
                values.setdefault(k, Counter())[json.dumps(v)] += 1
    defaults = {k: json.loads(c.most_common(1)[0][0]) for k, c in values.items()}
    return init_keys, input_keys, defaults


@dataclass
class ShapeHistogram:
    op: str
    counts: Counter = field(default_factory=Counter)       # params json -> calls
    time_us: Counter = field(default_factory=Counter)      # params json -> kernel time
    cpu_ops: dict = field(default_factory=dict)            # params json -> Counter of cpu op names
    kernels: dict = field(default_factory=dict)            # params json -> Counter of kernel names


@dataclass
class ShapeReport:
    histograms: dict[str, ShapeHistogram]
    calls: int = 0
    unmapped: Counter = field(default_factory=Counter)     # reason -> calls


def collect(calls: Iterable[ShapeCall], classifier: Classifier) -> ShapeReport:
    from solbench.catalog import operator_entries

    catalog = operator_entries()
    rep = ShapeReport(histograms={})
    for call in calls:
        rep.calls += 1
        targets = {classifier.match(n, call.cpu_op).target for n in call.kernel_names}
        ops = {t for t in targets if t in catalog}
        if len(ops) != 1:
            if ops:
                rep.unmapped[f"{call.cpu_op}: kernels of several operators ({', '.join(sorted(ops))})"] += 1
            continue
        op = ops.pop()
        mapper = MAPPERS.get(op)
        if mapper is None:
            rep.unmapped[f"{op}: no input-shape mapping"] += 1
            continue
        params = mapper(call)
        if not params:
            rep.unmapped[f"{op}: inputs of {call.cpu_op} do not match the expected layout"] += 1
            continue
        key = json.dumps(params, sort_keys=True)
        h = rep.histograms.setdefault(op, ShapeHistogram(op))
        h.counts[key] += 1
        h.time_us[key] += call.device_us
        h.cpu_ops.setdefault(key, Counter())[call.cpu_op] += 1
        h.kernels.setdefault(key, Counter()).update(call.kernel_names)
    return rep


def to_suite(rep: ShapeReport, top: int = 20, min_calls: int = 1, sources: Iterable[str] = ()) -> dict:
    """The suite file: per operator its hottest shapes by kernel time, in the catalog schema."""
    from solbench.catalog import operator_entries

    catalog = operator_entries()
    ops = []
    for op, h in sorted(rep.histograms.items(), key=lambda kv: -sum(kv[1].time_us.values())):
        init_keys, input_keys, defaults = _catalog_layout(catalog[op])
        shapes = []
        for key, t in sorted(h.time_us.items(), key=lambda kv: (-kv[1], -h.counts[kv[0]])):
            if h.counts[key] < min_calls or len(shapes) >= top:
                continue
            known = init_keys | input_keys
            # A recorded value the catalog has no parameter for (eps of layer_norm) is dropped.
            params = {**defaults, **{k: v for k, v in json.loads(key).items() if k in known}}
            init = {k: v for k, v in params.items() if k in init_keys} or None
            inp = {k: v for k, v in params.items() if k in input_keys}
            cpu_op = h.cpu_ops[key].most_common(1)[0][0]
            shapes.append({
                "id": len(shapes), "init_kwargs": init, "input_kwargs": inp,
                "description": f"from profiles: {h.counts[key]} calls of {cpu_op}, "
                               + ", ".join(f"{k}={v}" for k, v in json.loads(key).items()),
                "source_framework": "profile",
                "call_count": h.counts[key], "total_duration_us": round(t, 3),
                "source_kernel_name": h.kernels[key].most_common(1)[0][0],
            })
        if shapes:
            ops.append({"name": op, "shapes": shapes})
    return {"about": "hot shapes extracted by `solbench profile shapes` from: " + ", ".join(sources),
            "operators": ops}


__all__ = ["MAPPERS", "ShapeReport", "collect", "to_suite"]
