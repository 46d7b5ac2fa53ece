"""Read the timing-method experiments of one device run and print what they say (nothing is
measured here; every figure comes from the records).

    python benchmarks/timer_experiments.py DIR [--sweep benchmarks/results/h200/sweep.jsonl]

DIR holds what `benchmarks/device.sh` steps wrote (any of them may be missing). The probe steps
(flushcheck, decodeprobe, noiseprobe) are retired, their answers in docs/DECISIONS.md; commit
92c66b3 has them and their files, to run again if the timer changes:

* ``flush_check_1.jsonl`` / ``flush_check_2.jsonl`` (step ``flushcheck``): ours_triton behind a
  flush of one buffer / two alternating buffers. Against the sweep's ours_triton, which rotated
  ``out=`` buffers on the large shapes: the ratio flush / rotation by size, the question being
  which flush agrees with rotation.
* ``decode_default.jsonl``, ``decode_flush2.jsonl``, ``decode_warm.jsonl`` (step ``decodeprobe``):
  ours / best peer per shape under each method. If ours trails only when flushed, the gap is in
  how a cold call starts, not in the kernel.
* ``calibration.json`` with ``copy_by_size`` (step ``copycurve``): what a copy reaches per size,
  the ceiling of the S bar at that size.
* ``eval_silu_and_mul.jsonl`` (step ``eval``): the exported kernel against ours_triton
  (``speedup.vs_ours_triton``), issue #6's reproduction.
* every ``*.jsonl``: the work a graph replay held (``calls_per_sample`` x the call's time), by
  cold-L2 method. Replays of under ~50 us wait for the host to submit them; since replays are
  sized by device time they should hold about 1 ms.
* ``noise_1..3.jsonl`` (step ``noiseprobe``): the same records from three processes, max/min per
  record: the run-to-run scatter, against the within-run p20-p80 spread.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from solbench.runner import read_records  # noqa: E402

MB = 1e6
SIZE_BUCKETS = ((0, 1), (1, 8), (8, 20), (20, 64), (64, 256), (256, 1e9))


def _ok(path: Path) -> list[dict]:
    return [r for r in read_records(path) if r.get("status") == "ok" and r.get("time_us")] if path.exists() else []


def _moved_mb(r) -> float:
    c = r.get("cost") or {}
    return (c.get("bytes_read", 0) + c.get("bytes_written", 0)) / MB


def _bucket(mb: float) -> tuple[float, str]:
    """(lower edge, label) of the size bucket of ``mb``: sortable by the edge."""
    for lo, hi in SIZE_BUCKETS:
        if lo <= mb < hi:
            return lo, (f"{lo:g}-{hi:g} MB" if hi < 1e9 else f">= {lo:g} MB")
    return math.inf, "?"


def _geo(xs) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def flush_vs_rotation(d: Path, sweep: Path) -> None:
    base = {(r["op"], str(r["shape_id"])): r for r in _ok(sweep) if r["impl"] == "ours_triton"}
    for nb in (1, 2):
        recs = [r for r in _ok(d / f"flush_check_{nb}.jsonl") if r["impl"] == "ours_triton"]
        if not recs or not base:
            continue
        by = defaultdict(list)
        for r in recs:
            b = base.get((r["op"], str(r["shape_id"])))
            if b and (b.get("timing") or {}).get("cold_l2") == "rotate":
                by[(r["op"], _bucket(_moved_mb(r)))].append(r["time_us"] / b["time_us"])
        print(f"\nours_triton flushed with {nb} buffer(s) / rotated in the sweep (geomean; shapes):")
        for (op, (_, label)), xs in sorted(by.items()):
            print(f"  {op:<14} {label:<12} {_geo(xs):.3f}  ({len(xs)})")


def decode_gaps(d: Path) -> None:
    runs = {name: _ok(d / f"decode_{name}.jsonl") for name in ("default", "flush2", "warm")}
    runs = {k: v for k, v in runs.items() if v}
    if not runs:
        return
    print("\nours / best peer per shape (> 1: ours slower), by timing method:")
    table = defaultdict(dict)
    for name, recs in runs.items():
        by = defaultdict(dict)
        for r in recs:
            by[(r["op"], str(r["shape_id"]))][r["impl"]] = r["time_us"]
        for key, t in by.items():
            peers = {k: v for k, v in t.items() if k != "ours_triton"}
            if "ours_triton" in t and peers:
                best = min(peers, key=peers.get)
                table[key][name] = (t["ours_triton"] / peers[best], best, t["ours_triton"])
    names = list(runs)
    for name in names:  # how much one sample wanders under each method: the noise the gaps sit in
        spreads = [(r["p80_us"] - r["p20_us"]) / r["time_us"] for r in runs[name]
                   if r.get("p20_us") is not None and r.get("p80_us") is not None]
        if spreads:
            print(f"  {name}: median p20-p80 spread {median(spreads):.1%} of the median over {len(spreads)} records")
    print(f"  {'op':<14} {'shape':>5}  " + "  ".join(f"{n:>22}" for n in names))
    for key in sorted(table, key=lambda k: (k[0], int(k[1]) if k[1].isdigit() else 0)):
        cells = []
        for n in names:
            v = table[key].get(n)
            cells.append(f"{v[0]:.2f} vs {v[1][:10]:<10} {v[2]:4.1f}us" if v else f"{'-':>22}")
        print(f"  {key[0]:<14} {key[1]:>5}  " + "  ".join(f"{c:>22}" for c in cells))


def copy_curve(d: Path) -> None:
    p = d / "calibration.json"
    if not p.exists():
        return
    cal = json.loads(p.read_text())
    rows = cal.get("copy_by_size") or []
    if rows:
        print(f"\ncopy by size (calibrated bandwidth {cal['bandwidth'] / 1e12:.2f} TB/s):")
        for row in rows:
            share = row["bandwidth"] / cal["bandwidth"]
            print(f"  {row['bytes'] / 2**20:7.0f} MiB  {row['us']:8.2f} us  S of the copy {share:.3f}"
                  f"  ({row['cold_l2']})")


def eval_reproduction(d: Path) -> None:
    recs = [r for r in _ok(d / "eval_silu_and_mul.jsonl") if r.get("verdict")]
    ratios = [(r, (r.get("speedup") or {}).get("vs_ours_triton")) for r in recs]
    ratios = [(r, x) for r, x in ratios if x]
    if not ratios:
        return
    xs = [x for _, x in ratios]
    print(f"\neval: ours_triton time / exported candidate time over {len(xs)} shapes: median {median(xs):.3f}, "
          f"range {min(xs):.3f}-{max(xs):.3f}")
    worst = sorted(ratios, key=lambda rx: abs(math.log(rx[1])), reverse=True)[:5]
    for r, x in worst:
        print(f"  shape {r['shape_id']}: {x:.3f} ({_moved_mb(r):.1f} MB)")


def replay_sizes(d: Path) -> None:
    work = defaultdict(list)
    for path in sorted(d.glob("*.jsonl")):
        if path.name.startswith("tune_log"):  # a tune's log, not run records
            continue
        for r in _ok(path):
            t = r.get("timing") or {}
            if t.get("mode") == "graph" and t.get("calls_per_sample"):
                work[t.get("cold_l2", "?")].append(t["calls_per_sample"] * r["time_us"])
    if work:
        print("\nwork per graph replay (calls_per_sample x call time; flushes not counted):")
    for mode, xs in sorted(work.items()):
        xs.sort()
        print(f"  {mode:<7} {len(xs):5d} records  p10 {xs[len(xs) // 10]:8.0f} us  median {median(xs):8.0f} us  "
              f"under 50 us: {sum(x < 50 for x in xs)}")


def noise_probe(d: Path) -> None:
    runs = [{(r["op"], r["shape_id"], r["impl"]): r for r in _ok(d / f"noise_{i}.jsonl")} for i in (1, 2, 3)]
    keys = set.intersection(*(set(r) for r in runs)) if all(runs) else set()
    if not keys:
        return
    print("\nnoise probe: the same flushed record in three processes (max/min), and its within-run p20-p80:")
    for key in sorted(keys):
        ts = [run[key]["time_us"] for run in runs]
        spread = median((run[key]["p80_us"] - run[key]["p20_us"]) / run[key]["time_us"] for run in runs)
        times = " ".join(f"{t:6.2f}" for t in ts)
        print(f"  {key[0]:<14} {key[1]:>3} {key[2]:<14} {times}  max/min {max(ts) / min(ts):.3f}  p20-p80 {spread:.1%}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dir", type=Path)
    p.add_argument("--sweep", type=Path, default=Path("benchmarks/results/h200/sweep.jsonl"))
    a = p.parse_args(argv)
    copy_curve(a.dir)
    flush_vs_rotation(a.dir, a.sweep)
    decode_gaps(a.dir)
    eval_reproduction(a.dir)
    replay_sizes(a.dir)
    noise_probe(a.dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
