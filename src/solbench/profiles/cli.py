"""``solbench profile import|shapes``: importance weights and hot shapes from your own profiles."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from solbench.profiles.classifier import CLASSES, UNCLASSIFIED, Classifier, RulesError
from solbench.profiles.model import ProfileError


def _count(text: str) -> int:
    """An argparse type: a whole number >= 0 (a negative count is refused, not read as 'all')."""
    import argparse

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{n} is negative; give 0 or more")
    return n


def register(sub) -> None:
    p = sub.add_parser("profile", help="operator importance and hot shapes from your nsys / torch profiles")
    psub = p.add_subparsers(dest="profile_cmd", required=True)

    q = psub.add_parser("import", help="classify kernel time by operator; write weights for `run --weights`")
    q.add_argument("files", nargs="*", help="profiles or folders of profiles (nsys CSV/table/SQLite, torch "
                                            "key_averages table, Chrome trace .json/.json.gz)")
    q.add_argument("--out", help="write the weights JSON here")
    q.add_argument("--rules", action="append", default=[], help="extra rules YAML, tried before the built-in ones")
    q.add_argument("--weighting", choices=("mean", "time"), default="mean",
                   help="'mean' of per-profile shares (default) or total-time-weighted shares")
    q.add_argument("--top", type=_count, default=20, help="unclassified kernels to list")
    q.add_argument("--skip-bad", action="store_true", help="warn about unreadable files instead of stopping")
    q.add_argument("--json", action="store_true", help="print the weights JSON instead of the table")
    q.add_argument("--explain", action="append", default=[], metavar="NAME",
                   help="print which rule files kernel NAME where, and why (repeatable; no files needed)")
    q.set_defaults(func=cmd_import)

    q = psub.add_parser("shapes", help="hot shapes from traces recorded with record_shapes=True -> suite file")
    q.add_argument("files", nargs="+")
    q.add_argument("--out", help="write the suite JSON (catalog schema) here, for `run --suite`")
    q.add_argument("--rules", action="append", default=[])
    q.add_argument("--top", type=_count, default=20, help="shapes kept per operator (hottest by kernel time)")
    q.add_argument("--min-calls", type=_count, default=1)
    q.add_argument("--skip-bad", action="store_true")
    q.set_defaults(func=cmd_shapes)


def _console():
    from rich.console import Console
    return Console(stderr=False, highlight=False)


def _expand(files) -> list[Path]:
    out = []
    for f in files:
        p = Path(f)
        if p.is_dir():
            out.extend(sorted(x for x in p.rglob("*") if x.is_file() and not x.name.startswith(".")))
        else:
            out.append(p)
    return out


def _read_all(paths, collect_shapes, skip_bad, console, on_profile):
    """Read every file with a progress bar; each profile is handed to ``on_profile`` and dropped, so
    importing thousands of files keeps one in memory at a time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from solbench.profiles.readers import read_profile

    bad = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=len(paths) < 2) as prog:
        task = prog.add_task("reading profiles", total=len(paths))
        for path in paths:
            prog.update(task, description=f"reading {path.name[:40]}")
            try:
                for prof in read_profile(path, collect_shapes=collect_shapes):
                    for w in prof.warnings:
                        print(f"solbench: warning: {prof.path}: {w}", file=sys.stderr)
                    on_profile(prof)
            except ProfileError as e:
                if not skip_bad:
                    raise
                bad.append(str(e))
            prog.advance(task)
    for b in bad:
        print(f"solbench: skipped {b}", file=sys.stderr)
    return bad


def _classifier(rules) -> Classifier:
    return Classifier(extra_rules=rules)


def _fail(msg: str) -> int:
    print(f"solbench profile: {msg}", file=sys.stderr)
    return 2


def cmd_import(args) -> int:
    from rich.table import Table

    from solbench.profiles.importance import combine, summarize

    console = _console()
    if args.explain or not args.files:
        if not args.explain:
            return _fail("give profiles to import, or --explain NAME")
        try:
            clf = _classifier(args.rules)
        except RulesError as e:
            return _fail(str(e))
        for name in args.explain:
            print(clf.explain(name))
        if not args.files:
            return 0
    try:
        clf = _classifier(args.rules)
        paths = _expand(args.files)
        summaries = []
        _read_all(paths, False, args.skip_bad, console, lambda p: summaries.append(summarize(p, clf)))
    except (ProfileError, RulesError) as e:
        return _fail(str(e))
    try:
        imp = combine(summaries)
    except ValueError as e:
        return _fail(str(e))
    weights = imp.to_weights(args.weighting, args.top)
    weights["per_profile"] = [
        {"path": s.path, "format": s.format, "total_us": round(s.total_us, 3), "graph_kernels": s.graph_kernels,
         "shares": {t: st.time_us / s.total_us for t, st in sorted(s.targets.items(), key=lambda kv: -kv[1].time_us)},
         **({"notes": s.notes} if s.notes else {})}
        for s in summaries if s.total_us > 0]
    if args.out:
        Path(args.out).write_text(json.dumps(weights, indent=1) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(weights, indent=1))
        return 0
    shares = imp.shares(args.weighting)
    other = imp.shares("time" if args.weighting == "mean" else "mean")
    weighting = "mean of per-profile shares" if args.weighting == "mean" else "time-weighted"
    t = Table(title=f"GPU kernel time by operator over {imp.profiles} profile(s), "
                    f"{imp.total_us / 1e3:.3f} ms of kernels ({weighting})",
              title_justify="left")
    num = {"justify": "right", "no_wrap": True, "min_width": 8}
    t.add_column("operator / class", no_wrap=True, min_width=12)
    t.add_column("kind", no_wrap=True, min_width=8)
    t.add_column("share", **num)
    t.add_column("time-wtd" if args.weighting == "mean" else "mean", **num)
    t.add_column("kernels", **num)
    t.add_column("launches", **num)
    t.add_column("catalog", **num)
    t.add_column("top kernels")
    from solbench.catalog import operator_entries

    # The catalog's importance (1,303 production profiles) beside yours, for operators.
    catalog = {n: e.get("importance") for n, e in operator_entries().items()}
    for name, sh in sorted(shares.items(), key=lambda kv: (kv[0] == UNCLASSIFIED, -kv[1])):
        st = imp.stats[name]
        kind = "class" if name in CLASSES else ("-" if name == UNCLASSIFIED else "operator")
        tops = _short("; ".join(n for n, _ in st.names.most_common(2)), 56)
        style = "yellow" if name == UNCLASSIFIED else None
        cat = catalog.get(name)
        t.add_row(name, kind, f"{sh:.2%}", f"{other.get(name, 0):.2%}", str(st.kernels), str(st.launches),
                  f"{cat:.2%}" if isinstance(cat, (int, float)) else "-", tops, style=style)
    console.print(t)
    # Warnings went to stderr as the files were read; the notes say what the tables say about themselves.
    notes = [f"{s.path}: {n}" for s in summaries for n in s.notes if not n.startswith("warning: ")]
    for n in notes[:10]:
        console.print(f"[dim]{n}[/]")
    if len(notes) > 10:
        console.print(f"[dim]... and {len(notes) - 10} more notes (see 'per_profile' in the weights file)[/]")
    unc = weights["top_unclassified"]
    if unc:
        console.print(f"[yellow]unclassified: {weights['unclassified']:.2%} of kernel time; top kernels to add "
                      f"rules for (--rules extra.yaml):[/]")
        for u in unc[:10]:
            console.print(f"  {u['share_of_all_time']:.2%}  {u['name']}")
    if args.out:
        console.print(f"weights written to {args.out}: `solbench run --weights {args.out}`")
    return 0


def _short(name: str, n: int = 48) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def cmd_shapes(args) -> int:
    from rich.table import Table

    from solbench.profiles.shapes import collect, to_suite

    console = _console()
    calls = []
    n_profiles = [0]

    def take(prof):
        n_profiles[0] += 1
        calls.extend(prof.shape_calls)

    try:
        clf = _classifier(args.rules)
        paths = _expand(args.files)
        _read_all(paths, True, args.skip_bad, console, take)
    except (ProfileError, RulesError) as e:
        return _fail(str(e))
    if not calls:
        return _fail("no recorded input shapes: shapes need a torch profiler Chrome trace recorded with "
                     "record_shapes=True (cpu_op events carrying 'Input Dims')")
    rep = collect(calls, clf)
    suite = to_suite(rep, top=args.top, min_calls=args.min_calls, sources=[str(p) for p in paths])
    t = Table(title=f"hot shapes from {rep.calls} recorded calls", title_justify="left")
    for col in ("operator", "id", "calls", "kernel µs", "kwargs"):
        t.add_column(col)
    for op in suite["operators"]:
        for s in op["shapes"]:
            t.add_row(op["name"], str(s["id"]), str(s["call_count"]), f"{s['total_duration_us']:.1f}",
                      json.dumps(s["input_kwargs"]))
    console.print(t)
    for reason, n in rep.unmapped.most_common(10):
        console.print(f"[dim]not mapped: {n} calls: {reason}[/]")
    if not suite["operators"]:
        return _fail("no recorded call mapped onto a catalog operator's shape parameters")
    if args.out:
        Path(args.out).write_text(json.dumps(suite, indent=1) + "\n", encoding="utf-8")
        console.print(f"suite written to {args.out}: `solbench run --suite {args.out}`")
    return 0
