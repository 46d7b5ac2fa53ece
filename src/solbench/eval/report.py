"""Terminal verdict table of ``solbench eval`` and the batch leaderboard."""
from __future__ import annotations

from typing import Mapping

from rich.table import Table

from solbench.eval.evaluate import NO_GPU, EvalResult
from solbench.eval.score import task_scores

_STYLE = {"pass": "green", "fail": "bold red", "flagged": "bold yellow"}


def _f(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def _us(x):
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else (f"{x:.2f}" if x >= 1 else f"{x:.3f}")


_CONFINEMENT_NOTED = False


def confinement_note(res: EvalResult) -> str | None:
    """What this system could not enforce around the candidate (None when everything was)."""
    missing = []
    if res.confinement and not res.confinement.startswith("landlock"):
        missing.append(f"its file writes are not confined ({res.confinement.removeprefix('none: ')})")
    if res.workers and not res.namespace:
        missing.append("no PID namespace (processes it starts are found and ended by a sweep instead)")
    if not missing:
        return None
    return ("note: on this system the candidate runs with " + "; ".join(missing)
            + ". Evaluate untrusted code inside a container (docs/EVAL.md, Threat model).")


def print_eval(console, res: EvalResult, brief: bool = False) -> None:
    global _CONFINEMENT_NOTED
    recs = res.records
    if not recs:
        return
    note = confinement_note(res)
    if note and not _CONFINEMENT_NOTED:  # once per process: a batch says it once
        console.print(f"[yellow]{note}[/]", markup=True)
        _CONFINEMENT_NOTED = True
    op = recs[0]["op"]
    imp = res.import_info or {}
    head = (f"{op}: candidate {recs[0]['candidate']['path']} ({imp.get('desc') or 'not imported'}) on {res.device}"
            + ("" if res.gpu else " [yellow](no GPU: correctness only)[/]"))
    if not brief:
        t = Table(title=head, title_justify="left", pad_edge=False)
        cols = ["shape", "kind", "verdict"]
        if res.gpu:
            cols += ["µs", "SOL µs ach.", "S ach.", "× compile", "× best lib"]
        else:
            cols += ["performance"]
        cols += ["reason"]
        numeric = ("µs", "SOL µs ach.", "S ach.", "× compile", "× best lib")
        for c in cols:
            t.add_column(c, justify="right" if c in numeric else "left",
                         **({"max_width": 90, "overflow": "fold"} if c == "reason" else {}))
        for r in recs:
            kind = r.get("kind") or ("edge" if r.get("edge") else "catalog")
            v = r["verdict"]
            row = [str(r["shape_id"]), kind, f"[{_STYLE[v]}]{v.upper()}[/]"]
            if res.gpu:
                sp = r.get("speedup") or {}
                row += [_us(r.get("time_us") if v == "pass" else None), _us(r.get("sol_achievable_us")),
                        _f(r.get("s_achievable")), _f(sp.get("vs_torch_compile")), _f(sp.get("vs_best_library"))]
            else:
                row += [NO_GPU]
            row.append(r.get("reason") or "")
            t.add_row(*row)
        console.print(t)
    s = task_scores(recs)
    line = (f"[b]{op}[/]: {s['correct']}/{s['shapes']} shapes correct ({s['fraction_correct']:.0%})"
            + (f", {s['flagged']} flagged" if s["flagged"] else ""))
    if s["performance"] == "measured":
        line += (f"; geomean speedup vs torch_compile {_f(s['geomean_vs_torch_compile'])}x"
                 f"; median achievable S {_f(s['median_s'])}")
    else:
        line += f"; performance {s['performance']}"
    console.print(line)
    if brief:
        for r in recs:
            if r["verdict"] != "pass":
                console.print(f"  {r['verdict'].upper()} #{r['shape_id']}: {r.get('reason')}", markup=False)


def print_leaderboard(console, board: Mapping) -> None:
    t = Table(title="Leaderboard", title_justify="left")
    for c in ("candidate", "operator", "importance", "correct", "flagged", "× compile (geomean)", "median S ach."):
        t.add_column(c, justify="left" if c in ("candidate", "operator") else "right")
    for row in board["candidates"]:
        t.add_row(row["candidate"].split("/")[-1], row.get("op") or "-",
                  _f(board["importance"].get(row.get("op")), ".4f"),
                  f"{row['correct']}/{row['shapes']}", str(row["flagged"]),
                  _f(row["geomean_vs_torch_compile"]) if row["performance"] == "measured" else row["performance"],
                  _f(row["median_s"]) if row["performance"] == "measured" else "-")
    console.print(t)
    suite = board.get("suite")
    if suite:
        console.print(f"production-weighted score Σ importance×S = {suite['score']:.4f} over importance "
                      f"{suite['coverage']:.4f} covered (normalized {_f(suite['normalized'])})")
    else:
        console.print(f"suite score: {board['suite_note']}")
