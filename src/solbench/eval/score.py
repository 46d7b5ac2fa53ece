"""Scores of evaluated candidates, computed from their records only.

Per task (one candidate, one operator):

* ``fraction_correct``: shapes that passed / shapes evaluated (edge cases included; a flagged
  shape is not counted correct: its timing was not trusted, and nothing about it is scored);
* ``geomean_vs_torch_compile``: geometric mean of t_torch_compile / t_candidate over correct
  timed shapes (GPU only);
* ``median_s``: production-weighted median of achievable S over correct timed shapes (GPU only),
  the same statistic ``run``'s summary uses.

For a batch (one candidate per operator): the production-weighted suite score
sum(importance x S_op) of :func:`solbench.core.score.suite_scores`, with its coverage.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from solbench.core.score import geomean, suite_scores, weighted_median


def task_scores(records: Sequence[Mapping]) -> dict:
    n = len(records)
    correct = [r for r in records if r.get("verdict") == "pass"]
    timed = [r for r in correct if r.get("time_us")]
    no_gpu = any(r.get("perf") == "not measured: no GPU" for r in records)
    out = {
        "op": records[0]["op"] if records else None,
        "shapes": n,
        "correct": len(correct),
        "fraction_correct": len(correct) / n if n else None,
        "failed": sum(1 for r in records if r.get("verdict") == "fail"),
        "flagged": sum(1 for r in records if r.get("verdict") == "flagged"),
        "timed": len(timed),
        "performance": "measured" if timed else ("not measured: no GPU" if no_gpu else "no correct timed shape"),
        "geomean_vs_torch_compile": None,
        "median_s": None,
    }
    if timed:
        out["geomean_vs_torch_compile"] = geomean((r.get("speedup") or {}).get("vs_torch_compile") for r in timed)
        out["median_s"] = weighted_median([r.get("s_achievable") for r in timed],
                                          [float(r.get("weight") or 1.0) for r in timed])
    return out


def leaderboard(per_candidate: Sequence[tuple[str, Sequence[Mapping]]], importance: Mapping[str, float],
                name: str = "candidate") -> dict:
    """``per_candidate``: (file, its records). The suite score treats the batch as one submission
    (impl ``name``) covering the operators it has candidates for."""
    rows = []
    all_records = []
    for path, recs in per_candidate:
        rows.append({"candidate": path, **task_scores(recs)})
        all_records += [r for r in recs if not r.get("edge")]
    suite = suite_scores(all_records, importance).get(name)
    measured = any(r.get("performance") == "measured" for r in rows)
    return {
        "candidates": rows,
        "suite": suite if measured else None,
        "suite_note": ("sum over operators of importance x weighted-median achievable S (core/score.py suite_scores); "
                       "coverage = importance of operators with a correct timed candidate")
        if measured else "not measured: no GPU (correctness only: S and the suite score need a GPU)",
        "importance": {r["op"]: float(importance.get(r["op"], 0.0)) for r in rows if r.get("op")},
    }
