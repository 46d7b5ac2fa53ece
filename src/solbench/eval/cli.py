"""``solbench eval`` and ``solbench task`` (registered by solbench.cli)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from solbench.cli import split_csv


def _timeouts(text: str | None) -> dict:
    """``import=60,check=120,perf=300`` or one number for every stage."""
    if not text:
        return {}
    if "=" not in text:
        return {k: float(text) for k in ("import", "check", "perf")}
    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        if k.strip() not in ("import", "check", "perf"):
            raise ValueError(f"--timeout: unknown stage {k!r} (stages: import, check, perf)")
        out[k.strip()] = float(v)
    return out


def _console():
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _config(args, candidate: str, op: str):
    from solbench.eval.evaluate import EvalConfig

    return EvalConfig(candidate=candidate, op=op, shapes=split_csv(args.shapes), out=args.out, name=args.name,
                      timeouts=_timeouts(args.timeout), mem_cap_gb=args.mem_gb,
                      gpu_mem_fraction=args.gpu_mem_fraction,
                      baselines=split_csv(args.baselines) if args.baselines is not None else None,
                      baselines_from=args.baselines_from, baselines_cold_l2=args.baselines_cold_l2,
                      timer=args.timer, edge=not args.no_edge, hw=args.hw,
                      smoke=True if args.smoke else None, audit_seed=args.audit_seed)


def _op_for(path: Path) -> str | None:
    from solbench.core.spec import all_specs
    from solbench.eval.candidate import declared_op

    op = declared_op(path)
    if op:
        return op
    names = {s.name for s in all_specs(include_variants=True)}
    return path.stem if path.stem in names else None


def cmd_eval(args) -> int:
    from solbench.eval.evaluate import evaluate
    from solbench.eval.report import print_eval, print_leaderboard
    from solbench.eval.score import leaderboard, task_scores

    console = _console()
    if args.batch:
        folder = Path(args.batch)
        files = sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
        if not files:
            raise FileNotFoundError(f"--batch {folder}: no candidate files (*.py)")
        per = []
        any_failed = False
        todo = []
        for p in files:
            op = _op_for(p)
            if op is None:
                console.print(f"[yellow]skip {p.name}: no operator (name the file <op>.py or set OP = \"<op>\")[/]")
                continue
            todo.append((p, op))
        spread = _on_cluster(args, todo) if args.cluster else None
        for i, (p, op) in enumerate(todo):
            console.print(f"[b]{p.name}[/] -> {op}")
            if spread is not None:
                res = spread[i]
                if isinstance(res, str):  # no worker could evaluate it
                    console.print(f"[red]{p.name}: FAIL: {res}[/]")
                    per.append((str(p), []))
                    any_failed = True
                    continue
            else:
                with console.status(f"evaluating {p.name}...") as st:
                    res = evaluate(_config(args, str(p), op), progress=lambda m, p=p: st.update(f"{p.name}: {m}"))
            print_eval(console, res, brief=True)
            per.append((str(p), res.records))
            any_failed = any_failed or _failed_any(res.records)
        from solbench.core.spec import all_specs

        importance = {s.name: s.importance for s in all_specs(include_variants=True)}
        board = leaderboard(per, importance, name=args.name)
        print_leaderboard(console, board)
        summary = args.summary or str(folder / "leaderboard.json")
        Path(summary).write_text(json.dumps(board, indent=1))
        console.print(f"leaderboard written to {summary}")
        return _exit_code(args, any_failed)
    if args.cluster:
        raise ValueError("eval --cluster spreads a batch: it needs --batch DIR")
    if not args.candidate or not args.op:
        raise ValueError("eval needs CANDIDATE.py and --op OP (or --batch DIR)")
    with console.status("evaluating...") as st:
        res = evaluate(_config(args, args.candidate, args.op), progress=lambda m: st.update(m))
    print_eval(console, res)
    scores = task_scores(res.records)
    if args.json:
        print(json.dumps(scores, indent=1))
    if args.out:
        console.print(f"{len(res.records) + len(res.baseline_records)} records written to {args.out}")
    return _exit_code(args, _failed_any(res.records))


def _on_cluster(args, todo) -> list:
    """``--batch DIR --cluster ADDRESS``: the candidates spread over a Ray cluster (docs/CLUSTER.md)."""
    from solbench.cluster import eval_batch, log_events
    from solbench.runner import RunConfig

    run_cfg = RunConfig(timer=args.timer, hw=args.hw, smoke=True if args.smoke else None)
    return eval_batch([(str(p), op, _config(args, str(p), op)) for p, op in todo], args.cluster, out=args.out,
                      attempts=args.cluster_attempts, run_cfg=run_cfg, on_event=log_events)


def _failed_any(records) -> bool:
    """A candidate fails unless it passed every shape (no records at all is a failure too)."""
    return not records or any(r.get("verdict") != "pass" for r in records)


def _exit_code(args, failed: bool) -> int:
    if failed and not args.report_only:
        print("solbench eval: the candidate did not pass every shape (exit 1; --report-only exits 0)",
              file=sys.stderr)
        return 1
    return 0


def cmd_task_export(args) -> int:
    from solbench.eval.task import export_task

    info = export_task(args.op, args.dir, shapes=split_csv(args.shapes), with_hints=args.with_hints,
                       edge=not args.no_edge, force=args.force)
    print(f"task {args.op} exported to {info['dir']}: {info['shapes']} shapes "
          f"({info['edge_shapes']} edge cases){' with the cost model' if args.with_hints else ''}")
    print(f"  local check: cd {info['dir']} && python reference.py check candidate.py")
    return 0


def register(sub) -> None:
    q = sub.add_parser("eval", help="evaluate a candidate kernel file: isolated, checked, audited, timed on a GPU")
    q.add_argument("candidate", nargs="?", help="the candidate .py file")
    q.add_argument("--op", help="operator the candidate implements")
    q.add_argument("--batch", help="a folder of candidates, one per operator (<op>.py or OP = \"<op>\")")
    q.add_argument("--summary", help="with --batch: leaderboard JSON path (default DIR/leaderboard.json)")
    q.add_argument("--shapes", action="append", help="shape ids (catalog ids, or edge-N)")
    q.add_argument("--out", help="JSONL records in the `run` schema (appended; baselines included)")
    q.add_argument("--name", default="candidate", help="the records' impl name (default: candidate)")
    q.add_argument("--timeout", help="per-stage wall-clock limits in seconds: N, or import=N,check=N,perf=N")
    q.add_argument("--mem-gb", type=float, help="host memory the candidate may use (default: half the RAM, <= 32)")
    q.add_argument("--gpu-mem-fraction", type=float, default=0.8, help="GPU memory fraction for the candidate")
    q.add_argument("--baselines", action="append",
                   help="implementations timed beside it (default: every available one; '' for none)")
    q.add_argument("--baselines-from", help="a `run` JSONL whose baseline records are reused (and extended)")
    q.add_argument("--baselines-cold-l2", choices=("auto", "flush"), default="auto",
                   help="auto: `run`'s rule, the one the candidate is timed with (outputs rotate with the "
                        "inputs where the sets fit, else a flush); flush: every baseline behind an L2 flush")
    q.add_argument("--timer", choices=("graph", "eager"), default="graph")
    q.add_argument("--hw", help="datasheet SKU for SOL (default: the detected device)")
    q.add_argument("--smoke", action="store_true", help="only the smoke shapes, even on a GPU")
    q.add_argument("--no-edge", action="store_true", help="leave out the edge-case shapes")
    q.add_argument("--audit-seed", type=int,
                   help="ignored (kept for old scripts): the judge draws its audits with `secrets`")
    q.add_argument("--json", action="store_true", help="also print the task scores as JSON")
    q.add_argument("--cluster", metavar="ADDRESS",
                   help="with --batch: spread the candidates over a Ray cluster, one worker per GPU (HOST:PORT, "
                        "auto or local:N; docs/CLUSTER.md); the driver writes --out and the leaderboard")
    q.add_argument("--cluster-attempts", type=int, default=3, metavar="N",
                   help="with --cluster: tries of a candidate whose worker dies (default 3)")
    q.add_argument("--report-only", action="store_true",
                   help="exit 0 whatever the verdicts (by default eval exits 1 unless every shape passes)")
    q.add_argument("--strict", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    q.set_defaults(func=cmd_eval)

    t = sub.add_parser("task", help="export an operator as a self-contained task for a person or an agent")
    tsub = t.add_subparsers(dest="task_cmd", required=True)
    e = tsub.add_parser("export", help="write reference, input generator, shapes and TASK.md to DIR")
    e.add_argument("op")
    e.add_argument("dir")
    e.add_argument("--shapes", action="append", help="shape ids to include (default: all catalog shapes)")
    e.add_argument("--with-hints", action="store_true", help="also include the cost model (FLOPs and bytes per shape)")
    e.add_argument("--no-edge", action="store_true", help="leave out the edge-case shapes")
    e.add_argument("--force", action="store_true", help="write into a non-empty DIR")
    e.set_defaults(func=cmd_task_export)
