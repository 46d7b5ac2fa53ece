"""Scores computed from results records (never from anything else).

* S per shape is in each record (``s`` datasheet, ``s_achievable`` calibrated).
* S per operator and implementation: the weighted median of S over its correct shapes, with the
  shapes' production weights (traced GPU time, else call count, else equal).
* Suite score per implementation: sum over operators of importance x S_op. Operators the
  implementation has no correct figure for contribute nothing, and ``coverage`` says how much
  importance was covered.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Mapping, Sequence


def weighted_median(values: Sequence[float], weights: Sequence[float] | None = None) -> float | None:
    pairs = sorted((v, (1.0 if weights is None else w)) for v, w in
                   zip(values, weights if weights is not None else [1.0] * len(values))
                   if v is not None and math.isfinite(v) and (weights is None or w > 0))
    if not pairs:
        return None
    total = sum(w for _, w in pairs)
    acc = 0.0
    for i, (v, w) in enumerate(pairs):
        acc += w
        if acc > total / 2:
            return v
        if math.isclose(acc, total / 2):  # exactly half: average with the next value
            return (v + pairs[i + 1][0]) / 2 if i + 1 < len(pairs) else v
    return pairs[-1][0]


def geomean(values: Iterable[float]) -> float | None:
    vals = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def ok_records(records: Iterable[Mapping]) -> list[Mapping]:
    return [r for r in records if r.get("status") == "ok" and r.get("time_us")]


def op_scores(records: Iterable[Mapping], key: str = "s_achievable") -> dict[str, dict[str, float]]:
    """``{op: {impl: weighted median S}}`` over correct records."""
    groups: dict[tuple[str, str], list[Mapping]] = defaultdict(list)
    for r in ok_records(records):
        groups[(r["op"], r["impl"])].append(r)
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (op, impl), rs in groups.items():
        med = weighted_median([r.get(key) for r in rs], [float(r.get("weight") or 1.0) for r in rs])
        if med is not None:
            out[op][impl] = med
    return dict(out)


def suite_scores(records: Sequence[Mapping], importance: Mapping[str, float],
                 key: str = "s_achievable") -> dict[str, dict[str, float]]:
    """Per implementation: ``score`` = sum importance x S_op, ``coverage`` = importance covered,
    ``normalized`` = score / coverage, plus the ``best`` correct implementation per operator."""
    per_op = op_scores(records, key)
    impls = sorted({impl for v in per_op.values() for impl in v})
    result = {}
    for impl in impls + ["best"]:
        score = cov = 0.0
        for op, by_impl in per_op.items():
            w = float(importance.get(op, 0.0))
            s = max(by_impl.values()) if impl == "best" else by_impl.get(impl)
            if s is not None:
                score += w * s
                cov += w
        result[impl] = {"score": score, "coverage": cov, "normalized": score / cov if cov else None}
    return result


def speedups(records: Sequence[Mapping], baseline: str) -> dict[tuple, float]:
    """``{(op, shape_id, impl): t_baseline / t_impl}`` where both are correct."""
    base = {(r["op"], str(r["shape_id"])): r["time_us"] for r in ok_records(records) if r["impl"] == baseline}
    out = {}
    for r in ok_records(records):
        t0 = base.get((r["op"], str(r["shape_id"])))
        if t0:
            out[(r["op"], str(r["shape_id"]), r["impl"])] = t0 / r["time_us"]
    return out
