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


# ---- published deployed kernels and the end-to-end (Amdahl) estimate -----------------------------

DEPLOYED_SKU = "XPU-A"


def deployed_s(record: Mapping, sku: str = DEPLOYED_SKU, compat: str = "native") -> float | None:
    """S of the published deployed kernel for this record's shape: datasheet SOL on ``sku``
    (from the record's cost fields) over the deployed time published for that same SKU. Only
    the SKU the time was measured on is meaningful, so there is no cross-hardware variant.
    ``compat="atrex"`` puts the time against the Atrex-mode SOL of the shape instead. A time is
    compared only with the contract it measured: where that is Atrex's and ours differs
    (core/atrex_compat.DEPLOYED_ATREX_CONTRACT), the native S is None."""
    from solbench.core.atrex_compat import DEPLOYED_ATREX_CONTRACT, atrex_sol_for
    from solbench.core.hardware import get_sku
    from solbench.core.roofline import roofline
    from solbench.core.spec import Cost

    dep = ((record.get("provenance") or {}).get("deployed_us") or {}).get(sku) or {}
    t = dep.get("time_us") if isinstance(dep, Mapping) else None
    cost = record.get("cost")
    if not t or t <= 0:
        return None
    if compat == "atrex":
        try:
            sol = atrex_sol_for(record["op"], record.get("shape_id"), sku)
        except KeyError:
            return None
        return sol / t if sol else None
    if not cost or record.get("op") in DEPLOYED_ATREX_CONTRACT:
        return None
    c = Cost(flops=dict(cost.get("flops") or {}), bytes_read=float(cost.get("bytes_read") or 0),
             bytes_written=float(cost.get("bytes_written") or 0), serial=tuple(cost.get("serial") or ()))
    if c.total_bytes <= 0 and c.total_flops <= 0:
        return None
    return roofline(c, get_sku(sku)).sol_us / t


def amdahl_estimate(records: Sequence[Mapping], importance: Mapping[str, float] | None = None,
                    key: str = "s", sku: str = DEPLOYED_SKU) -> dict:
    """Share of production GPU time saved if each operator's deployed kernel were replaced by the
    best correct implementation measured here.

    Per shape, saving = 1 - t_best / t_deployed. The deployed times were published for ``sku``
    while the records were measured on another device, so times are never divided across
    chips: on one chip t_best / t_deployed = S_deployed / S_best (same SOL), and we use that
    ratio with S_deployed = datasheet SOL on ``sku`` / published time, and S_best = the best
    correct ``key`` (default: datasheet S of the measured device) over the shape's records.
    The assumption, stated wherever the figure is shown, is that the fraction of the speed of
    light a kernel reaches carries over between the two chips.

    A shape only counts where replacing helps (saving clipped at 0: one would keep the deployed
    kernel otherwise). Within an operator, shapes are weighted by their production weight
    (traced GPU time where recorded); the operator counts with its importance (share of
    production GPU time), so ``saved`` = sum over operators of importance x weighted saving.
    Operators without a deployed time or a correct measurement are left out and ``coverage``
    says how much importance was covered.
    """
    by_shape: dict[tuple[str, str], list[Mapping]] = defaultdict(list)
    for r in records:
        by_shape[(r["op"], str(r.get("shape_id")))].append(r)
    per_op_rows: dict[str, list[tuple[float, float, float, float, str]]] = defaultdict(list)
    imp: dict[str, float] = {}
    for (op, _sid), rs in by_shape.items():
        for r in rs:
            if r.get("importance") is not None:
                imp.setdefault(op, float(r["importance"]))
        good = [r for r in ok_records(rs) if r.get(key) is not None and math.isfinite(r[key]) and r[key] > 0]
        if not good:
            continue
        best = max(good, key=lambda r: r[key])
        s_dep = deployed_s(best, sku)
        if s_dep is None:
            continue
        saving = max(0.0, 1.0 - s_dep / best[key])
        per_op_rows[op].append((float(best.get("weight") or 1.0), saving, s_dep, best[key], best["impl"]))
    if importance is not None:
        imp.update({k: float(v) for k, v in importance.items()})
    per_op = {}
    saved = coverage = 0.0
    for op, rows in sorted(per_op_rows.items()):
        w = [x[0] for x in rows]
        frac = sum(wi * x[1] for wi, x in zip(w, rows)) / sum(w)
        weight = imp.get(op, 0.0)
        impls = defaultdict(float)
        for wi, x in zip(w, rows):
            impls[x[4]] += wi
        per_op[op] = {"importance": weight, "saved_fraction": frac, "saved": weight * frac, "shapes": len(rows),
                      "s_deployed": weighted_median([x[2] for x in rows], w),
                      "s_best": weighted_median([x[3] for x in rows], w),
                      "best_impls": dict(sorted(impls.items(), key=lambda kv: -kv[1]))}
        saved += weight * frac
        coverage += weight
    total = importance_total(imp)
    return {"saved": saved / total, "coverage": coverage / total, "importance_total": total,
            "per_op": per_op, "sku": sku, "key": key,
            "basis": (f"S_deployed (datasheet SOL on {sku} / published deployed time on {sku}) against the best "
                      f"correct measured S per shape ('{key}': datasheet SOL of the measured device / measured "
                      "time); t_best/t_deployed = S_deployed/S_best holds on one chip, and is assumed to carry "
                      "over between chips. Savings clipped at 0 per shape; shapes weighted by production GPU "
                      "time; operators by importance"
                      + (f", normalised by the catalog's importance sum ({total:.3f}: each operator's share is "
                         "measured over the profiles that run it, so the shares do not sum to 1)." if total != 1.0
                         else "."))}


def importance_total(importance: Mapping[str, float]) -> float:
    """What shares of production time are divided by: the catalog's importance sum (see
    :func:`solbench.catalog.catalog_importance`) where ``importance`` is the catalog's own, else
    1 (weights from ``solbench profile import`` are shares of one fleet's time already)."""
    from solbench.catalog import catalog_importance

    cat = catalog_importance()
    if importance and all(op in cat and abs(cat[op] - float(v)) < 1e-12 for op, v in importance.items()):
        return max(1.0, sum(cat.values()))
    return 1.0
