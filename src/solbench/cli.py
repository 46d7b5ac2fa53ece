"""solbench command line: list | calibrate | run | roofline, plus the tools' subcommands
(report, plot, compare, eval, task, profile, sass), which live beside the code they drive."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path

# Subcommand providers: each module has ``register(subparsers)``.
PLUGINS = ("solbench.report.cli", "solbench.eval.cli", "solbench.profiles.cli", "solbench.sass", "solbench.breakdown")


def split_csv(values):
    """Repeatable comma-separated options (``--ops a,b --ops c``) as one list; None when absent.
    The subcommand plugins use it too."""
    if not values:
        return None
    out = []
    for v in values:
        out += [x for x in v.split(",") if x]
    return out


def _prepare_triton_env() -> None:
    """Without a GPU, our Triton kernels can still run in Triton's interpreter. The switch must be
    set before any kernel module is imported, because ``triton.jit`` reads it at decoration."""
    if "TRITON_INTERPRET" in os.environ:
        return
    try:
        import torch

        if not torch.cuda.is_available():
            os.environ["TRITON_INTERPRET"] = "1"
    except ImportError:
        pass


def _console():
    from rich.console import Console

    # Piped output (CI logs, files) gets a wide fixed width instead of rich's 80 columns.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


# ---- list ---------------------------------------------------------------------------------------

def cmd_list(args) -> int:
    from solbench.catalog import catalog_summary
    from solbench.core.spec import all_specs, impls_for

    specs = all_specs(include_variants=args.variants)
    data = {}
    for s in specs:
        impls = impls_for(s.name)
        avail = [n for n, i in sorted(impls.items()) if i.available()]
        data[s.name] = {"shapes": len(s.shapes), "importance": s.importance, "impls": avail,
                        "registered": sorted(impls), "dtype": s.dtype, "catalog": s.catalog,
                        "phase": s.entry.get("phase"), "origin": s.entry.get("origin")}
    if args.json:
        print(json.dumps({k: {kk: v[kk] for kk in ("shapes", "importance", "impls")} for k, v in data.items()},
                         indent=1))
        return 0
    from rich.table import Table

    console = _console()
    summ = catalog_summary()
    catalog_ops = [n for n, v in data.items() if v["catalog"]]
    t = Table(title=f"solbench catalog: {len(catalog_ops)} operators, "
                    f"{sum(data[n]['shapes'] for n in catalog_ops)} shapes "
                    f"(importance from {summ['num_profiles']} production profiles)", title_justify="left")
    for c in ("operator", "dtype", "phase", "shapes", "importance", "origin", "implementations here"):
        t.add_column(c, justify="right" if c in ("shapes", "importance") else "left")
    for name in sorted(data, key=lambda n: (not data[n]["catalog"], -data[n]["importance"])):
        v = data[name]
        origin = v["origin"] or {}
        unavailable = [i for i in v["registered"] if i not in v["impls"]]
        impl_txt = ", ".join(v["impls"]) + (f" [dim](unavailable: {', '.join(unavailable)})[/]" if unavailable else "")
        t.add_row(name + ("" if v["catalog"] else " [dim](variant)[/]"), v["dtype"], v["phase"] or "",
                  str(v["shapes"]), f"{v['importance']:.4f}",
                  f"{origin.get('framework', '')}: {origin.get('symbol', '')}"[:48], impl_txt)
    console.print(t)
    return 0


# ---- calibrate ----------------------------------------------------------------------------------

def cmd_calibrate(args) -> int:
    from solbench.core import hardware

    console = _console()
    if args.use:
        # Reuse a committed calibration so a rerun's roofline fractions match the earlier run's,
        # but only on the device it was measured on.
        try:
            data = json.loads(Path(args.use).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"solbench calibrate: cannot read {args.use}: {e}") from None
        here = hardware.device_name()
        if data.get("device") != here:
            raise SystemExit(f"solbench calibrate: {args.use} was measured on {data.get('device')!r}, "
                             f"this device is {here!r}; run `solbench calibrate` instead")
        hardware.save_calibration(hardware.device_key(), data)
    else:
        with console.status("calibrating...") as status:
            data = hardware.calibrate(force=args.force, quick=args.quick,
                                      progress=lambda m: status.update(f"calibrating: {m}"))
    if args.by_size:
        if hardware.current_device().type != "cuda":
            raise SystemExit("solbench calibrate --by-size: needs a CUDA device (it times copies against the L2)")
        with console.status("copy bandwidth by size...") as status:
            data = hardware.calibrate_by_size(progress=lambda m: status.update(f"calibrating: {m}"))
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    console.print(f"[b]{data.get('device')}[/] calibrated {data.get('date')} "
                  f"(cache: {hardware.cache_dir() / (hardware.device_key() + '.json')})")
    console.print(f"  copy bandwidth   {data['bandwidth'] / 1e12:.3f} TB/s "
                  f"(read + write, {data.get('bandwidth_kernel', '')})")
    for path, v in sorted(data.get("peaks", {}).items()):
        console.print(f"  matmul {path:<10} {v / 1e12:.1f} TFLOP/s")
    if data.get("launch_floor_us") is not None:
        console.print(f"  launch floor     {data['launch_floor_us']:.2f} µs per kernel under graph replay")
    for row in data.get("copy_by_size") or ():
        console.print(f"  copy of {row['bytes'] / 2**20:7.0f} MiB  {row['us']:8.2f} µs  "
                      f"{row['bandwidth'] / 1e12:.3f} TB/s = {row['bandwidth'] / data['bandwidth']:.3f} "
                      f"of the calibrated bandwidth ({row['cold_l2']})")
    return 0


# ---- roofline -----------------------------------------------------------------------------------

def cmd_roofline(args) -> int:
    from solbench.core import hardware
    from solbench.core.spec import all_specs, get_spec

    hw = hardware.get_sku(args.hw) if args.hw else hardware.SKUS["H100"]
    specs = [get_spec(o) for o in split_csv(args.ops)] if args.ops else all_specs(include_variants=args.variants)
    if args.compat == "atrex":
        rows = _atrex_rows(specs, hw)
    else:
        rows = _native_rows(specs, hw)
    if args.json:
        print(json.dumps(rows, indent=None if len(rows) > 50 else 1))
        return 0
    from rich.table import Table

    mode = "Atrex-Bench conventions" if args.compat == "atrex" else "datasheet"
    t = Table(title=f"roofline on {hw.name} ({mode})", title_justify="left")
    for c in ("op", "shape", "GFLOP", "MB moved", "AI", "regime", "SOL µs"):
        t.add_column(c, justify="left" if c in ("op", "regime") else "right")
    for r in rows:
        t.add_row(r["op"], str(r["shape_id"]), f"{sum(r['flops'].values()) / 1e9:.3g}",
                  f"{(r['bytes_read'] + r['bytes_written']) / 1e6:.3g}",
                  "-" if r["ai"] is None else f"{r['ai']:.3g}", r["regime"], f"{r['sol_us']:.3g}")
    _console().print(t)
    return 0


def _atrex_rows(specs, hw) -> list[dict]:
    from solbench.core.atrex_compat import atrex_cost, atrex_sol_us

    rows = []
    for spec in specs:
        if not spec.catalog:
            continue  # Atrex publishes catalog operators only
        for shape in spec.shapes:
            c = atrex_cost(spec, shape)
            flops = {c.w_dtype: c.w_flops} if c.w_dtype and c.w_flops else {}
            ai = c.w_flops / c.q_total if c.q_total else None
            rows.append({"op": spec.name, "shape_id": shape.id, "flops": flops, "bytes_read": c.q_read,
                         "bytes_written": c.q_write, "ai": ai,
                         "regime": "I" if not flops else ("C" if ai and ai > 10 else "M"),
                         "sol_us": atrex_sol_us(c, hw), "hw": hw.name, "compat": "atrex", "rule": c.rule})
    return rows


def _native_rows(specs, hw) -> list[dict]:
    from solbench.core import roofline

    rows = []
    for spec in specs:
        for shape in spec.shapes:
            cost = spec.cost(shape)
            rl = roofline.roofline(cost, hw)
            rows.append({"op": spec.name, "shape_id": shape.id, "flops": dict(cost.to_record()["flops"]),
                         "bytes_read": cost.bytes_read, "bytes_written": cost.bytes_written, "ai": rl.ai,
                         "regime": rl.regime, "sol_us": rl.sol_us, "compute_us": rl.compute_us,
                         "memory_us": rl.memory_us, "hw": hw.name})
    return rows


# ---- run ----------------------------------------------------------------------------------------

def _load_weights(path: str | None) -> dict | None:
    if not path:
        return None
    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(f"solbench: cannot read weights file {path}: {e}") from None
    shares = data.get("shares") if isinstance(data, dict) else None
    if not isinstance(shares, dict):
        raise SystemExit(f"solbench: weights file {path} has no 'shares' object "
                         "(expected the output of `solbench profile import`)")
    return {str(k): float(v) for k, v in shares.items()}


def cmd_run(args) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from solbench.core import hardware
    from solbench.core.spec import all_specs
    from solbench.report.terminal import print_run
    from solbench.runner import RunConfig, run

    weights = _load_weights(args.weights)
    if args.max_shapes is not None and args.max_shapes < 1:
        raise SystemExit("solbench: --max-shapes must be at least 1")
    if args.report and not args.out:
        raise SystemExit("solbench: --report needs --out (the report is made from the results file)")
    cfg = RunConfig(ops=split_csv(args.ops), impls=split_csv(args.impls), shapes=split_csv(args.shapes), hw=args.hw,
                    max_shapes=args.max_shapes,
                    timer=args.timer, out=args.out, suite=args.suite, weights=weights,
                    smoke=True if args.smoke else (False if args.full else None),
                    include_variants=args.variants, retry_failed=args.retry_failed,
                    remeasure_ops=split_csv(args.remeasure_ops) or (),
                    time_budget_s=args.time_budget, cold_l2=args.cold_l2)
    if args.time_budget is not None and args.time_budget <= 0:
        raise SystemExit("solbench: --time-budget must be a positive number of seconds")
    console = _console()
    device = hardware.current_device()
    smoke = cfg.smoke if cfg.smoke is not None else device.type != "cuda"
    # With --cluster, each worker decides smoke or full, and calibrates, on its own device.
    if smoke and not args.cluster:
        console.print("[yellow]No GPU here: running the CPU smoke subset (each operator's smallest shapes, "
                      "Triton kernels in the interpreter). Timings are CPU timings and say nothing about "
                      "GPU speed.[/]" if device.type != "cuda" else "[yellow]--smoke: running the smoke subset[/]")
    if not args.cluster and not hardware.load_calibration(hardware.device_key()):
        with console.status("calibrating this device (once; cached)..."):
            hardware.calibrate(quick=device.type != "cuda")
    try:
        if args.cluster:
            from solbench.cluster import run_cli

            result = run_cli(cfg, args.cluster, console, attempts=args.cluster_attempts)
        elif console.is_terminal:
            with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=True) as prog:
                task = prog.add_task("running", total=None)

                def progress(done, total, desc):
                    prog.update(task, completed=done, total=total, description=desc[:60])

                result = run(cfg, progress=progress)
        else:
            lines = _OpLines(console)
            result = run(cfg, progress=lines.progress, on_shape_done=lines.shape_done)
            lines.flush()
    except KeyboardInterrupt:
        if args.out and Path(args.out).exists():
            from solbench.runner import read_records

            n = len(read_records(args.out))
            print(f"\ninterrupted: {n} records in {args.out}; rerun with the same --out to resume", file=sys.stderr)
        else:
            print("\ninterrupted: nothing was saved (pass --out FILE to keep records and resume)", file=sys.stderr)
        return 130
    importance = weights or {s.name: s.importance for s in all_specs(include_variants=True)}
    print_run(console, result.records, result.hw, importance)
    n = len(result.records)
    ceilings = result.achievable.source if result.achievable else "each worker's own calibrated"
    counts = {k: sum(1 for r in result.records if r["status"] == k) for k in ("ok", "fail", "skip")}
    console.print(f"{n} records on {result.device} ({'smoke subset' if result.smoke else 'full shapes'}; "
                  f"datasheet {result.hw}, achievable from {ceilings} ceilings): "
                  f"{counts['ok']} ok, {counts['fail']} fail, {counts['skip']} skip"
                  + (f"; {result.skipped_existing} reused from {args.out}" if result.skipped_existing else "")
                  + (f"; written to {args.out}" if args.out else "")
                  + f"; {result.wall_s:.0f} s")
    if args.report:
        from solbench.report.html import write_report

        write_report([args.out], args.report)
    if result.unfinished:
        console.print(f"[yellow]--time-budget {args.time_budget:g} s reached: {result.unfinished} records not "
                      "measured yet" + (f"; run the same command again to resume from {args.out}[/]" if args.out
                                        else " (pass --out FILE to make the run resumable)[/]"))
    if args.out:
        console.print(f"results: {args.out}")
    if args.report:
        console.print(f"report:  {args.report}")
    return 1 if args.strict and counts["fail"] else 0


class _OpLines:
    """Progress for a log or a pipe (no live bar there): one line per operator once its shapes
    are done, with its record counts, its time and the run's progress in records."""

    def __init__(self, console):
        import time

        self.console, self.clock = console, time.perf_counter
        self.op, self.counts, self.t0, self.done, self.total = None, {}, self.clock(), 0, 0

    def progress(self, done, total, desc):
        self.done, self.total = done, total
        op = desc.split(" #")[0]  # "<op> #<shape id> <stage>" while a shape is measured
        if self.op is not None and op != self.op and " #" in desc:
            self.flush()

    def shape_done(self, spec, shape, records):
        if spec.name != self.op:
            self.flush()
            self.op, self.counts = spec.name, {}
        for r in records:
            self.counts[r["status"]] = self.counts.get(r["status"], 0) + 1

    def flush(self):
        if self.op is None:
            return
        parts = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items()))
        now = self.clock()
        self.console.print(f"{self.op}: {parts} in {now - self.t0:.1f} s (records {self.done}/{self.total})")
        sys.stdout.flush()
        self.op, self.t0 = None, now


def cmd_tune(args) -> int:
    from rich.table import Table

    from solbench import tune as tuner
    from solbench.core import hardware
    from solbench.runtime import tuning

    console = _console()
    if args.backends_from:
        return _tune_backends(args, console)
    if hardware.current_device().type != "cuda":
        console.print("[red]solbench tune needs a CUDA device: it measures launch configurations of GPU kernels "
                      "(CPU and interpreter timings say nothing about them). Nothing was written.[/]")
        return 2
    with console.status("tuning...") as status:
        skip = tuner.measured_keys(args.skip_measured_in) if args.skip_measured_in else set()
        table, results = tuner.tune(split_csv(args.ops), time_budget_s=args.time_budget,
                                    progress=lambda m: status.update(f"tuning {m}"), skip=skip,
                                    select=split_csv(args.keys))
    key = hardware.device_key()
    paths = [tuner.write_table(table, tuning.user_table_path(key))]
    if args.out:
        paths.append(tuner.write_table(table, args.out))
    if args.log:
        tuner.write_log(results, args.log)
    tuning.reload()
    t = Table(title=f"launch configurations on {table['device']}")
    for col in ("kernel", "n", "shapes", "tuned config", "speedup", "adopted / note"):
        t.add_column(col)
    for r in results:
        cfg = ", ".join(f"{k}={v}" for k, v in (r.best or {}).items())
        t.add_row(r.kernel, str(r.n), " ".join(r.shapes), cfg or "-", f"{r.speedup:.3f}x" if r.best else "-",
                  "adopted" if r.adopted else r.note)
    console.print(t)
    n_adopted = sum(r.adopted for r in results)
    console.print(f"{n_adopted} of {len(results)} kernel keys tuned; table written to "
                  + ", ".join(str(p) for p in paths) + ". `solbench run` uses it on this device.")
    return 0


def _tune_backends(args, console) -> int:
    """``tune --backends-from RUN.jsonl``: the backend choice per shape bucket, from a measured run of
    both backends (no GPU needed), merged into that device's tuned table."""
    from rich.table import Table

    from solbench import tune as tuner
    from solbench.core import hardware
    from solbench.runner import read_records
    from solbench.runtime import key_of_name, tuning

    path = Path(args.backends_from)
    if not path.is_file():
        console.print(f"[red]{path}: no such results file[/]")
        return 2
    records = [r for r in read_records(path) if r.get("impl") in tuner.BACKEND_IMPLS.values()]
    devices = sorted({r.get("device") for r in records})
    if len(devices) != 1:
        console.print(f"[red]{path}: need the records of one device with both of "
                      f"{', '.join(tuner.BACKEND_IMPLS.values())}; found devices {devices or 'none'}[/]")
        return 2
    device = devices[0]
    sms = args.sms or (tuning.sm_count() if hardware.device_name() == device else None)
    if not sms:
        console.print(f"[red]the row-count tiers need {device}'s SM count: pass --sms (132 on an H100 SXM or H200)[/]")
        return 2
    buckets = tuner.backend_buckets(records, sms)
    if not buckets:
        console.print(f"[red]{path}: no shape has both backends measured (status ok) for an operator that "
                      "chooses a backend; nothing was written[/]")
        return 2
    out = Path(args.out) if args.out else tuning.user_table_path(key_of_name(device))
    base = out if out.exists() else tuning.packaged_table_path(key_of_name(device))
    table = tuning.read_table(base) if base.exists() else None
    table = tuner.merge_backend_entries(table, buckets, device, path.name)
    tuner.write_table(table, out)
    tuning.reload()
    t = Table(title=f"backend per shape bucket on {device} ({path.name})")
    for col in ("key", "n", "shapes", "CUDA speedup", "backend / note"):
        t.add_column(col)
    for b in buckets:
        t.add_row(b.kernel, str(b.n), str(len(b.shapes)), f"{b.speedup:.3f}x",
                  "cuda" if b.adopted else f"triton: {b.note}")
    console.print(t)
    console.print(f"{sum(b.adopted for b in buckets)} of {len(buckets)} buckets go to CUDA; table written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="solbench", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    q = sub.add_parser("list", help="operators, shapes, importance and the implementations available here")
    q.add_argument("--json", action="store_true")
    q.add_argument("--variants", action="store_true", help="also list non-catalog variants (gelu_and_mul, ...)")
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("calibrate", help="measure this device's copy bandwidth, matmul rates and launch floor")
    q.add_argument("--force", action="store_true", help="measure again even if cached")
    q.add_argument("--use", metavar="FILE", help="adopt a saved calibration (e.g. benchmarks/results/h100/"
                   "calibration.json) if it was measured on this device model")
    q.add_argument("--quick", action="store_true")
    q.add_argument("--by-size", action="store_true",
                   help="also time the copy at 8 MiB-1 GiB with the run's cold-L2 rule (the most a memory-bound "
                        "kernel of that size can reach); kept in the calibration, which is otherwise unchanged")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_calibrate)

    q = sub.add_parser("roofline", help="cost model and SOL of every shape on a datasheet SKU (runs nothing)")
    q.add_argument("--ops", action="append")
    q.add_argument("--hw", help="SKU: H20, XPU-A, H100, H200, A100, B200 (default H100)")
    q.add_argument("--json", action="store_true")
    q.add_argument("--variants", action="store_true")
    q.add_argument("--compat", choices=("native", "atrex"), default="native",
                   help="atrex: Atrex-Bench's counting (whole tensors, one FLOP path at the metadata dtype's "
                        "peak); see docs/ROOFLINE.md")
    q.set_defaults(func=cmd_roofline)

    q = sub.add_parser("run", help="check and time implementations against the speed of light")
    q.add_argument("--ops", action="append", help="operators (comma-separated or repeated); default: all")
    q.add_argument("--impls", action="append", help="implementations, e.g. ours_triton,torch_compile")
    q.add_argument("--shapes", action="append", help="shape ids to run")
    q.add_argument("--hw", help="datasheet SKU for `sol_us`/`s` (default: the detected device)")
    q.add_argument("--timer", choices=("graph", "eager"), default="graph")
    q.add_argument("--cold-l2", choices=("auto", "flush", "warm"), default="auto",
                   help="auto: rotate input sets larger than the L2, else flush it; flush: flush before every "
                        "call for every implementation (records say timer 'graph+flush'); warm: one input set, "
                        "no flush, L2 left warm (a diagnostic; records say 'graph+warm')")
    q.add_argument("--out", help="JSONL results file; appended to, and records already in it are skipped "
                   "(locked against a second run; a line cut off by a crash is moved to OUT.partial)")
    q.add_argument("--report", metavar="HTML", help="with --out: also write the HTML report of OUT here")
    q.add_argument("--max-shapes", type=int, metavar="N", help="at most N shapes per operator (the first ones)")
    q.add_argument("--suite", help="a suite file (catalog schema), e.g. from `solbench profile shapes`")
    q.add_argument("--weights", help="operator weights from `solbench profile import`")
    g = q.add_mutually_exclusive_group()
    g.add_argument("--smoke", action="store_true", help="run the small smoke subset even on a GPU")
    g.add_argument("--full", action="store_true", help="run the full shapes even without a GPU")
    q.add_argument("--variants", action="store_true", help="with no --ops: include non-catalog variants")
    q.add_argument("--strict", action="store_true", help="exit 1 if any implementation FAILs")
    q.add_argument("--retry-failed", action="store_true",
                   help="with --out: measure the FAIL records already in the file again, replacing them")
    q.add_argument("--remeasure-ops", action="append", metavar="OPS",
                   help="with --out: measure these operators again, replacing their records (with --shapes, "
                        "only those shapes' records; the old ones are appended to OUT.replaced.jsonl); the "
                        "file's other records are reused. Resume a budget-cut run without it")
    q.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="start no new shape after this many seconds (the run stops cleanly; with --out a "
                        "rerun resumes)")
    q.add_argument("--cluster", metavar="ADDRESS",
                   help="spread (operator, shape) units over a Ray cluster, one worker per GPU: HOST:PORT, "
                        "ray://HOST:PORT, auto (the cluster this machine is part of) or local:N (start Ray here "
                        "with N workers); needs pip install 'solbench[cluster]' (docs/CLUSTER.md)")
    q.add_argument("--cluster-attempts", type=int, default=3, metavar="N",
                   help="with --cluster: a unit whose worker dies is tried on another worker, N tries in all, "
                        "then recorded as FAIL with the reason (default 3)")
    q.set_defaults(func=cmd_run)

    q = sub.add_parser("tune", help="measure launch configurations of our memory-bound kernels on this GPU "
                                     "and write the tuned table `run` uses")
    q.add_argument("--ops", action="append", help="operators to tune (default: all with ours_triton)")
    q.add_argument("--out", help="also write the table here (e.g. src/solbench/runtime/tuned/<device>.json)")
    q.add_argument("--log", help="every candidate's measurements as JSONL")
    q.add_argument("--time-budget", type=float, metavar="SECONDS", help="stop tuning new keys after this long")
    q.add_argument("--skip-measured-in", metavar="LOG.jsonl",
                   help="continue a budgeted tune: skip the keys this earlier --log measured (they keep their entries)")
    q.add_argument("--keys", action="append", metavar="PATTERN",
                   help="tune only the kernel keys matching these shell patterns, tried against KERNEL and "
                        "KERNEL:N (e.g. '*@few_rows', 'rms_norm:1280'); the others keep their entries")
    q.add_argument("--backends-from", metavar="RUN.jsonl",
                   help="no measuring: choose each shape bucket's backend (Triton or CUDA) from this run of both "
                        "and merge the choices into that device's table (--out, else the user's table)")
    q.add_argument("--sms", type=int, help="with --backends-from away from that GPU: its SM count (row-count tiers)")
    q.set_defaults(func=cmd_tune)

    for name in PLUGINS:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # the parent package is absent in this install
            found = False
        if found:
            importlib.import_module(name).register(sub)
    return p


def _warn_broken_ops() -> None:
    from solbench.core.spec import load_errors

    for name, err in load_errors().items():
        print(f"solbench: warning: operator package {name!r} failed to import and is left out: {err}",
              file=sys.stderr)


def main(argv=None) -> int:
    from solbench.resultsfile import ResultsLocked

    _prepare_triton_env()
    args = build_parser().parse_args(argv)
    if args.cmd in ("list", "run", "roofline"):
        _warn_broken_ops()
    try:
        return int(args.func(args) or 0)
    except (KeyError, ValueError, FileNotFoundError, ResultsLocked) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"solbench: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
