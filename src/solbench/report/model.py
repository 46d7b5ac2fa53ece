"""The report's data model: results records regrouped into runs, operators and shapes, compact
enough to inline into one HTML page (a full 440-shape sweep must stay well under 5 MB).

What is shared by every implementation of a shape (description, parameters, provenance, cost,
production weight) is stored once per shape; what is shared by a whole run (environment,
calibrated ceilings, datasheet) once per run; repeated failure and skip reasons once in a table.
Every figure is taken from the records or recomputed from their cost fields; nothing is re-run.
"""
from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from solbench.core import hardware, record, roofline
from solbench.core.atrex_compat import DEPLOYED_ATREX_CONTRACT, atrex_sol_for
from solbench.core.score import DEPLOYED_SKU, amdahl_estimate, suite_scores
from solbench.report import compare as cmp

STATUS = ("ok", "fail", "skip")
# Environment fields worth a line in the summary; the rest (platform strings) stay in the records.
ENV_KEYS = ("device", "gpu_uuid", "driver", "cuda", "torch", "triton", "python", "commit", "capability", "sm_count",
            "memory_gb", "clock_sm_mhz", "clock_mem_mhz", "clock_sm_max_mhz", "power_limit_w", "cpu",
            "cpu_count", "timer", "triton_interpret")


@dataclass
class Source:
    """One results file (or any list of records) and how the page names it."""
    label: str
    records: list[dict]
    date: str = ""


@dataclass
class Run:
    label: str
    source: str
    device: str
    hw: str
    timer: str
    smoke: bool
    date: str
    records: list[dict] = field(default_factory=list)


def load_sources(paths: Sequence[str | os.PathLike]) -> list[Source]:
    from solbench.runner import read_records

    out = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise FileNotFoundError(f"results file {p} does not exist")
        recs = read_records(p)
        if not recs:
            raise ValueError(f"{p}: no records")
        out.append(Source(label=p.name, records=recs,
                          date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(p.stat().st_mtime))))
    return out


def split_runs(sources: Sequence[Source], merge: bool = False) -> list[Run]:
    """A run is the records of one source measured on one device, SKU and timer. With ``merge``,
    sources are pooled first (a sweep split over several files); a later record replaces an
    earlier one with the same key, as a resumed run would."""
    if merge and len(sources) > 1:
        pooled: dict[tuple, dict] = {}
        for s in sources:
            for r in s.records:
                pooled[cmp.match_key(r) + (r.get("device"),)] = r
        sources = [Source(label=" + ".join(s.label for s in sources), records=list(pooled.values()),
                          date=max(s.date for s in sources))]
    runs: list[Run] = []
    for s in sources:
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for r in s.records:
            groups[(r.get("device") or "?", r.get("hw") or "?", r.get("timer") or "?", bool(r.get("smoke")))].append(r)
        for (device, hw, timer, smoke), recs in groups.items():
            label = s.label if len(groups) == 1 else f"{s.label} · {device} · {timer}{' · smoke' if smoke else ''}"
            runs.append(Run(label=label, source=s.label, device=device, hw=hw, timer=timer, smoke=smoke,
                            date=s.date, records=recs))
    return runs


def _round(x, digits: int = 6):
    """Six significant digits: well below any timing noise, and a third of the page size."""
    if x is None or isinstance(x, bool) or not isinstance(x, (int, float)):
        return x
    if not math.isfinite(x):
        return None
    if x == 0 or isinstance(x, int):
        return x
    return float(f"{x:.{digits}g}")


def _brief(v, max_items: int = 12):
    """Parameters as shown on the page: long lists (varlen ``seq_lens``...) are summarized."""
    if isinstance(v, list) and len(v) > max_items:
        nums = [x for x in v if isinstance(x, (int, float)) and not isinstance(x, bool)]
        if len(nums) == len(v):
            return f"[{len(v)} values, min {min(nums)}, max {max(nums)}, sum {sum(nums)}]"
        return f"[{len(v)} items]"
    if isinstance(v, dict):
        return {k: _brief(x, max_items) for k, x in v.items()}
    return v


def _env_summary(records: Sequence[Mapping]) -> dict:
    vals: dict[str, list] = defaultdict(list)
    for r in records:
        for k in ENV_KEYS:
            v = (r.get("env") or {}).get(k)
            if v is not None and v not in vals[k]:
                vals[k].append(v)
    out = {k: (v[0] if len(v) == 1 else " | ".join(str(x) for x in v)) for k, v in vals.items()}
    for k in _CLOCK_KEYS:  # read after each shape's timing: a range, not a list of every reading
        nums = [float(x) for x in vals.get(k, ()) if str(x).replace(".", "", 1).isdigit()]
        if len(nums) > 1:
            out[k] = f"{min(nums):g}-{max(nums):g}"
    return out


#: Clocks the runner reads after each shape's timing (core/env.running_clocks).
_CLOCK_KEYS = ("clock_sm_mhz", "clock_mem_mhz")


def _peaks(r: Mapping, which: str) -> dict | None:
    p = (r.get("peaks") or {}).get(which)
    if not p or not p.get("bandwidth"):
        return None
    return {"peaks": {k: _round(v) for k, v in (p.get("peaks") or {}).items()}, "bw": _round(p["bandwidth"]),
            "source": p.get("source", "datasheet" if which == "datasheet" else "")}


def _catalog_meta() -> dict:
    try:
        from solbench.catalog import operator_entries

        return {name: {"phase": e.get("phase"), "origin": e.get("origin")} for name, e in operator_entries().items()}
    except Exception:  # noqa: BLE001 - metadata is decoration; the records carry every figure
        return {}


def _sol(r: Mapping, which: str, field: str) -> float | None:
    """SOL of a record under today's roofline rule, from its cost fields and the ceilings it
    records (records measured before a rule change carry the old ``sol_us``); else as recorded."""
    p = (r.get("peaks") or {}).get(which)
    cost = r.get("cost")
    if not p or not p.get("bandwidth") or not cost:
        return r.get(field)
    from solbench.report.plot import record_cost

    hw = hardware.Hardware(name=which, peaks=dict(p.get("peaks") or {}), bandwidth=float(p["bandwidth"]))
    try:
        return roofline.roofline(record_cost(r), hw).sol_us
    except KeyError:  # a FLOP path these ceilings lack
        return r.get(field)


def _atrex_sol(op: str, shape_id) -> float | None:
    """Atrex-mode SOL (µs) of a catalog shape on the deployed SKU; None for other shapes."""
    try:
        return atrex_sol_for(op, shape_id, DEPLOYED_SKU)
    except Exception:  # noqa: BLE001 - an operator this build does not know: no figure, not a crash
        return None


def _sid_sort(sid):
    s = str(sid)
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def build(sources: Sequence[Source], *, merge: bool = False, baseline: int | None = None,
          title: str | None = None) -> dict:
    """The page's data: one JSON-able dict (see docs/REPORT.md for the fields)."""
    runs = split_runs(sources, merge=merge)
    if not runs:
        raise ValueError("no records to report")
    if baseline is not None and not 0 <= baseline < len(runs):
        raise ValueError(f"--baseline {baseline} is out of range: there are {len(runs)} runs "
                         f"({', '.join(f'{i}: {r.label}' for i, r in enumerate(runs))})")
    if baseline is None and len(runs) > 1:
        baseline = 0

    reasons: list[str] = []
    reason_idx: dict[str, int] = {}

    def reason(text: str | None) -> int | None:
        if not text:
            return None
        if text not in reason_idx:
            reason_idx[text] = len(reasons)
            reasons.append(text)
        return reason_idx[text]

    meta = _catalog_meta()
    ops: dict[str, dict] = {}
    shapes: dict[tuple[str, str], dict] = {}
    run_out = []
    for ri, run in enumerate(runs):
        first = run.records[0]
        counts = {s: sum(1 for r in run.records if r.get("status") == s) for s in STATUS}
        importance: dict[str, float] = {}
        for r in run.records:
            op = r["op"]
            if r.get("importance") is not None:
                importance.setdefault(op, float(r["importance"]))
            if op not in ops:
                m = meta.get(op, {})
                ops[op] = {"name": op, "dtype": r.get("dtype"), "importance": r.get("importance"),
                           "phase": m.get("phase"), "origin": m.get("origin"),
                           "dep_contract": "atrex" if op in DEPLOYED_ATREX_CONTRACT else "native"}
            key = (op, str(r.get("shape_id")))
            sh = shapes.get(key)
            if sh is None:
                cost = r.get("cost") or {}
                dep = ((r.get("provenance") or {}).get("deployed_us") or {})
                sh = shapes[key] = {
                    "op": op, "id": str(r.get("shape_id")), "desc": r.get("description") or "",
                    "params": _brief(r.get("params") or {}),
                    "prov": {k: v for k, v in (r.get("provenance") or {}).items() if k != "deployed_us"},
                    "dep": {sku: {"fw": d.get("framework"), "us": _round(d.get("time_us"))}
                            for sku, d in dep.items() if isinstance(d, Mapping) and d.get("time_us")},
                    "w": _round(float(r.get("weight") or 1.0)),
                    # No cost fields (a record from outside the runner): S cannot be recomputed.
                    "cost": {"f": {k: _round(v) for k, v in (cost.get("flops") or {}).items() if v},
                             "r": _round(cost.get("bytes_read") or 0), "w": _round(cost.get("bytes_written") or 0),
                             **({"sr": list(cost["serial"])} if cost.get("serial") else {})}
                    if cost else None,
                    # Atrex-mode SOL on the deployed SKU, beside the published deployed time.
                    "atx": _round(_atrex_sol(op, r.get("shape_id"))) if dep else None,
                    "ai": _round(r.get("ai")), "regime": r.get("regime"), "runs": {}}
            per_run = sh["runs"].setdefault(str(ri), {"sol": _round(_sol(r, "datasheet", "sol_us")),
                                                      "sola": _round(_sol(r, "achievable", "sol_achievable_us")),
                                                      "i": {}})
            sp = r.get("speedup") or {}
            res = {"st": r.get("status")}
            if r.get("status") == "ok":
                res.update({"t": _round(r.get("time_us")), "lo": _round(r.get("p20_us")),
                            "hi": _round(r.get("p80_us"))})
            # A record copied in from another run says so next to its figures.
            carried = f"carried from {r['carried_from']}" if r.get("carried_from") else None
            why = reason("; ".join(x for x in (r.get("reason"), carried) if x))
            if why is not None:
                res["why"] = why
            if sp:
                res["sp"] = {k[3:]: _round(v) for k, v in sp.items() if v is not None}
            if r.get("compile_s"):
                res["cs"] = _round(r["compile_s"])
            chk = r.get("check") or {}
            if r.get("s_floor") is not None:
                res["sf"] = _round(r["s_floor"])
            if chk.get("max_rel") is not None:
                res["err"] = _round(chk.get("max_rel"), 3)
            per_run["i"][r["impl"]] = res
        amd = amdahl_estimate(run.records, importance)
        suite = suite_scores(run.records, importance, key="s_achievable")
        suite_floor = suite_scores(run.records, importance, key="s_floor")
        run_out.append({
            "label": run.label, "source": run.source, "device": run.device, "hw": run.hw, "timer": run.timer,
            "smoke": run.smoke, "date": run.date, "records": len(run.records), "counts": counts,
            "env": _env_summary(run.records), "ach": _peaks(first, "achievable"), "ds": _peaks(first, "datasheet"),
            "launch_floor_us": _round(first.get("launch_floor_us")), "importance": importance,
            "amdahl": {"saved": _round(amd["saved"]), "coverage": _round(amd["coverage"]), "basis": amd["basis"],
                       "sku": amd["sku"],
                       "per_op": {op: {k: _round(v) if k != "best_impls" else v for k, v in d.items()}
                                  for op, d in amd["per_op"].items()}},
            # Python's suite score on the calibrated ceilings: the page recomputes it, the browser
            # test checks both agree.
            "suite_ach": {k: {kk: _round(vv) for kk, vv in v.items()} for k, v in suite.items()},
            # The same score against max(SOL, cold floor): what decode-sized calls can reach.
            "suite_floor": {k: {kk: _round(vv) for kk, vv in v.items()} for k, v in suite_floor.items()},
            "cold_floor_us": _round(first.get("cold_floor_us")),
        })

    deltas = {}
    if baseline is not None:
        for ri, run in enumerate(runs):
            if ri == baseline:
                continue
            c = cmp.compare_records(runs[baseline].records, run.records)
            d_ops: dict[str, dict] = defaultdict(dict)
            for o in c.ops:
                d_ops[o.op][o.impl] = {"ratio": _round(o.ratio, 4), "band": _round(o.band, 3), "v": o.verdict,
                                       "n": o.shapes}
            d_shapes: dict[str, dict] = defaultdict(dict)
            for d in c.shapes:
                d_shapes[f"{d.op}|{d.shape_id}"][d.impl] = {"ratio": _round(d.ratio, 4), "band": _round(d.band, 3),
                                                          "v": d.verdict, "base": _round(d.base_us)}
            deltas[str(ri)] = {"base": baseline, "ops": d_ops, "shapes": d_shapes, "matched": len(c.shapes)}

    shape_list = sorted(shapes.values(), key=lambda s: (s["op"], _sid_sort(s["id"])))
    op_list = sorted(ops.values(), key=lambda o: -(o["importance"] or 0))
    for o in op_list:
        o["shapes"] = [i for i, s in enumerate(shape_list) if s["op"] == o["name"]]
    # Peer order on the page: ours first, then the baselines, then third-party peers.
    impls = record.display_order(r for run in runs for r in run.records)
    from solbench import __version__ as version

    return {
        "title": title or "solbench report",
        "generated": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "version": version,
        "skus": {n: {"peaks": {k: _round(v) for k, v in h.peaks.items()}, "bw": _round(h.bandwidth), "notes": h.notes}
                 for n, h in hardware.SKUS.items()},
        "fallback": {k: list(v) for k, v in hardware._FALLBACK.items()},
        "deployed_sku": DEPLOYED_SKU,
        "compute_bound_ai": roofline.COMPUTE_BOUND_AI,
        "runs": run_out, "baseline": baseline, "impls": impls, "ops": op_list, "shapes": shape_list,
        "reasons": reasons, "deltas": deltas,
    }
