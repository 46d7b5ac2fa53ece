"""Subcommands ``report``, ``plot`` and ``compare`` (registered by solbench.cli)."""
from __future__ import annotations

import json
import sys

from solbench.cli import split_csv


def _console():
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def cmd_report(args) -> int:
    from solbench.report.html import MAX_BYTES, write_report

    path, data = write_report(args.results, args.out, merge=args.merge, baseline=args.baseline, title=args.title)
    size = path.stat().st_size
    runs = data["runs"]
    n = sum(r["records"] for r in runs)
    print(f"wrote {path} ({size / 2**20:.2f} MB): {len(data['ops'])} operators, {len(data['shapes'])} shapes, "
          f"{n} records in {len(runs)} run{'s' if len(runs) != 1 else ''}"
          + (f"; deltas against run {data['baseline']} ({runs[data['baseline']]['label']})"
             if data["baseline"] is not None else ""))
    for i, r in enumerate(runs):
        print(f"  run {i}: {r['label']}: {r['device']}, {r['hw']}, timer {r['timer']}"
              f"{', smoke subset' if r['smoke'] else ''}: {r['counts']['ok']} ok, {r['counts']['fail']} FAIL, "
              f"{r['counts']['skip']} skipped")
    if size > MAX_BYTES:
        print(f"solbench: warning: the page is {size / 2**20:.1f} MB, above the {MAX_BYTES / 2**20:.0f} MB "
              "a full sweep should need", file=sys.stderr)
    return 0


def cmd_plot(args) -> int:
    from solbench.report.plot import plot

    path = plot(args.results, args.out, op=args.op, hw=args.hw, impls=split_csv(args.impls))
    print(f"wrote {path}")
    return 0


def cmd_compare(args) -> int:
    from solbench.report.compare import compare_records, print_comparison
    from solbench.runner import read_records

    if args.fail_on_regression is not None and not args.fail_on_regression >= 0:
        raise ValueError(f"--fail-on-regression takes a percentage >= 0, got {args.fail_on_regression:g}")
    base, new = read_records(args.base), read_records(args.new)
    for path, recs in ((args.base, base), (args.new, new)):
        if not recs:
            raise ValueError(f"{path}: no records to compare (an empty results file)")
    cmp = compare_records(base, new)
    if args.json:
        print(json.dumps(cmp.to_json(), indent=1))
    else:
        print_comparison(_console(), cmp, args.base, args.new, changed_only=args.changed_only)
    if not cmp.shapes:
        print(f"solbench: warning: no records matched between {args.base} and {args.new} "
              "(records are matched by op x shape x impl x hw, timer and smoke flag)", file=sys.stderr)
    if args.fail_on_regression is not None:
        bad = cmp.regressions(args.fail_on_regression)
        if bad:
            print(f"solbench: {len(bad)} regression(s) beyond noise and {args.fail_on_regression:g}%: " +
                  ", ".join(f"{o.op}/{o.impl} ({o.verdict}" + (f", x{o.ratio:.3f}" if o.ratio else "") + ")"
                            for o in bad), file=sys.stderr)
            return 1
    return 0


def cmd_bars(args) -> int:
    from pathlib import Path

    from solbench.report.issue_bars import ISSUES, folder_runs, markdown, verdicts
    from solbench.runner import read_records

    runs = []
    for given in args.results:
        path = Path(given)
        if path.is_dir():
            found = folder_runs(path)
            if not found:
                raise ValueError(f"{given}: no JSONL runs in this folder")
            runs += found
        elif path.is_file():
            runs.append((str(path), read_records(path)))
        else:
            raise FileNotFoundError(f"{given}: no such results file or folder")
    results = verdicts(runs)
    if args.issue:
        chosen = {k: v for k, v in results.items() if any(k.startswith(f"#{n.lstrip('#')} ") for n in args.issue)}
        if not chosen:
            raise ValueError(f"--issue {', '.join(args.issue)}: known issues are "
                             + ", ".join(k.split()[0] for k in ISSUES))
        results = chosen
    sys.stdout.write(markdown(results, max_misses=10 ** 6 if args.all_misses else 12))
    return 0


def register(sub) -> None:
    q = sub.add_parser("report", help="one self-contained HTML page from results files (opens offline)")
    q.add_argument("results", nargs="+", help="JSONL results files; each is a run unless --merge")
    q.add_argument("-o", "--out", default="report.html", help="output HTML file (default report.html)")
    q.add_argument("--merge", action="store_true", help="pool the files into one run (a sweep split over files)")
    q.add_argument("--baseline", type=int, default=None,
                   help="index of the run the others are compared with (default: the first, when there are several)")
    q.add_argument("--title", help="page title")
    q.set_defaults(func=cmd_report)

    q = sub.add_parser("plot", help="static roofline and S-per-shape figure (matplotlib; png, svg or pdf)")
    q.add_argument("results", nargs="+", help="JSONL results files (pooled)")
    q.add_argument("--op", help="operator to plot; without it, the whole suite (roofline + S per operator)")
    q.add_argument("-o", "--out", required=True, help="output figure, e.g. fig.png or fig.svg")
    q.add_argument("--hw", default="achievable",
                   help="ceilings: 'achievable' (the run's calibrated device, default), 'datasheet' (the run's SKU) "
                        "or a SKU name (H20, XPU-A, H100, H200, A100, B200)")
    q.add_argument("--impls", action="append", help="implementations to draw (default: all)")
    q.set_defaults(func=cmd_plot)

    q = sub.add_parser("compare", help="compare two results files: faster, slower or the same within noise")
    q.add_argument("base", help="baseline JSONL")
    q.add_argument("new", help="new JSONL")
    q.add_argument("--fail-on-regression", type=float, metavar="PCT", default=None,
                   help="exit 1 if an operator x implementation is slower beyond noise by at least PCT percent, "
                        "or now FAILs where it was correct")
    q.add_argument("--changed-only", action="store_true", help="per-shape table: only shapes that changed")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_compare)

    q = sub.add_parser("bars", help="which bar items of the kernel issues (#22-#24) the results meet, and the misses")
    q.add_argument("results", nargs="+", help="a GPU results folder (each JSONL file one run) or JSONL files")
    q.add_argument("--issue", action="append", metavar="N", help="only this issue (22, 23 or 24); repeatable")
    q.add_argument("--all-misses", action="store_true", help="list every miss (default: the first 12 a bar)")
    q.set_defaults(func=cmd_bars)
