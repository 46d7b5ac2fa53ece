"""Terminal tables (rich) for ``solbench run`` and friends."""
from __future__ import annotations

from collections import defaultdict
from typing import Mapping, Sequence

from rich.console import Console
from rich.table import Table

from solbench.core.score import op_scores, suite_scores


def fmt(x, spec=".3g", none="-") -> str:
    if x is None:
        return none
    try:
        return format(x, spec)
    except (TypeError, ValueError):
        return str(x)


def fmt_us(x) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


_STATUS_STYLE = {"ok": "green", "fail": "bold red", "skip": "yellow"}


def op_table(op: str, records: Sequence[Mapping], hw_name: str) -> Table:
    t = Table(title=f"{op}", title_justify="left", show_lines=False, pad_edge=False)
    for col, kw in (("shape", {}), ("description", {"max_width": 44, "overflow": "ellipsis", "no_wrap": True}),
                    ("impl", {}), ("status", {}), ("µs", {"justify": "right"}),
                    (f"SOL µs {hw_name}", {"justify": "right"}), ("SOL µs ach.", {"justify": "right"}),
                    ("S ach.", {"justify": "right"}), ("S floor", {"justify": "right"}),
                    ("× compile", {"justify": "right"})):
        t.add_column(col, **kw)
    last_shape = None
    for r in records:
        sid = str(r["shape_id"])
        first = sid != last_shape
        last_shape = sid
        status = r["status"]
        t.add_row(sid if first else "", (r.get("description") or "") if first else "", r["impl"],
                  f"[{_STATUS_STYLE.get(status, '')}]{status.upper() if status == 'fail' else status}[/]",
                  fmt_us(r.get("time_us")), fmt_us(r.get("sol_us")) if first else "",
                  fmt_us(r.get("sol_achievable_us")) if first else "",
                  fmt(r.get("s_achievable"), ".2f"), fmt(r.get("s_floor"), ".2f"),
                  fmt((r.get("speedup") or {}).get("vs_torch_compile"), ".2f"),
                  end_section=False)
    return t


def reasons(records: Sequence[Mapping]) -> list[str]:
    lines = []
    for r in records:
        if r["status"] in ("fail", "skip") and r.get("reason"):
            lines.append(f"  {r['status'].upper()} {r['op']} #{r['shape_id']} {r['impl']}: {r['reason']}")
    return lines


def print_run(console: Console, records: Sequence[Mapping], hw_name: str, importance: Mapping[str, float],
              max_reasons: int = 12) -> None:
    by_op: dict[str, list] = defaultdict(list)
    for r in records:
        by_op[r["op"]].append(r)
    for op, recs in by_op.items():
        console.print(op_table(op, recs, hw_name))
        why = reasons(recs)
        # Skip reasons repeat per shape; show each distinct one once.
        seen, shown = set(), 0
        for line in why:
            k = line.split(":", 1)[-1] + line.split()[2] if len(line.split()) > 2 else line
            if k in seen:
                continue
            seen.add(k)
            if shown < max_reasons:
                console.print(line, style="dim", markup=False, highlight=False)
                shown += 1
    print_summary(console, records, importance)


def print_summary(console: Console, records: Sequence[Mapping], importance: Mapping[str, float]) -> None:
    per_op = op_scores(records)
    if not per_op:
        console.print("[yellow]no correct timed results to summarize[/]")
        return
    t = Table(title="Summary: weighted-median achievable S per operator (importance-weighted suite score last)",
              title_justify="left")
    impls = sorted({i for v in per_op.values() for i in v})
    t.add_column("operator")
    t.add_column("importance", justify="right")
    for i in impls:
        t.add_column(i, justify="right")
    for op in sorted(per_op, key=lambda o: -float(importance.get(o, 0.0))):
        t.add_row(op, fmt(importance.get(op), ".4f"), *[fmt(per_op[op].get(i), ".2f") for i in impls])
    suite = suite_scores(records, importance)
    t.add_row("[b]suite Σ imp×S[/]", fmt(sum(float(importance.get(o, 0)) for o in per_op), ".4f"),
              *[fmt(suite[i]["score"], ".4f") for i in impls], end_section=True)
    t.add_row("[b]normalized[/]", "", *[fmt(suite[i]["normalized"], ".2f") for i in impls])
    # Beside it, the same score against max(SOL, cold floor): decode-sized calls whose SOL is
    # nanoseconds are judged against what a kernel of that size can reach.
    floor = suite_scores(records, importance, key="s_floor")
    if any(v["coverage"] for v in floor.values()):
        t.add_row("[b]suite, S floor[/]", "", *[fmt(floor.get(i, {}).get("score"), ".4f") for i in impls])
        t.add_row("[b]normalized[/]", "", *[fmt(floor.get(i, {}).get("normalized"), ".2f") for i in impls])
    console.print(t)
