"""``solbench plot``: static figures for papers and pull requests (matplotlib).

With ``--op``: the operator's roofline (arithmetic intensity vs attained FLOP/s with the
bandwidth and compute ceilings; attained bandwidth vs bytes moved for operators without
arithmetic) beside S per shape for each implementation. Without ``--op``: the whole suite's
roofline beside the weighted-median S per operator. S is recomputed from the records' cost fields
against the selected ceilings, as in the HTML report.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Mapping, Sequence

from solbench.core import hardware, record, roofline
from solbench.core.score import weighted_median
from solbench.core.spec import Cost

_COLORS = ["#3b6fd8", "#e8710a", "#1a7f37", "#c62828", "#8e44ad", "#00838f", "#6d4c41", "#d81b60", "#5f6b7a"]


def ceilings(records: Sequence[Mapping], hw: str = "achievable") -> hardware.Hardware:
    """The roofline to draw and score against: the run's calibrated ceilings, its datasheet SKU,
    or any datasheet SKU by name."""
    if hw in ("achievable", "datasheet"):
        which = "achievable" if hw == "achievable" else "datasheet"
        for r in records:
            p = (r.get("peaks") or {}).get(which)
            if p and p.get("bandwidth"):
                name = (f"{r.get('device')} ({p.get('source') or 'calibrated'})" if which == "achievable"
                        else f"{r.get('hw')} datasheet")
                return hardware.Hardware(name=name, peaks=dict(p.get("peaks") or {}), bandwidth=float(p["bandwidth"]),
                                         source=p.get("source") or which)
        raise ValueError(f"the records carry no {which} ceilings; pass --hw with a SKU ({', '.join(hardware.SKUS)})")
    sku = hardware.get_sku(hw)
    return hardware.Hardware(name=f"{sku.name} datasheet", peaks=sku.peaks, bandwidth=sku.bandwidth)


def record_cost(r: Mapping) -> Cost:
    c = r.get("cost") or {}
    return Cost(flops=dict(c.get("flops") or {}), bytes_read=float(c.get("bytes_read") or 0),
                bytes_written=float(c.get("bytes_written") or 0), serial=tuple(c.get("serial") or ()))


def s_against(r: Mapping, hw: hardware.Hardware) -> float | None:
    if r.get("status") != "ok" or not r.get("time_us"):
        return None
    try:
        sol = roofline.roofline(record_cost(r), hw).sol_us
    except KeyError:  # a FLOP path the SKU has no peak for, even after fallback
        return None
    return sol / r["time_us"]


def _sid_key(r):
    s = str(r.get("shape_id"))
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def _impl_order(records, impls=None):
    seen = record.display_order(records)
    if impls:
        missing = [i for i in impls if i not in seen]
        if missing:
            raise ValueError(f"no records for implementation(s) {', '.join(missing)}; present: {', '.join(seen)}")
        seen = [i for i in seen if i in impls]
    return seen


def _roofline_axes(ax, records, impls, hw, colors, title):
    flop_pts, bw_pts = defaultdict(list), defaultdict(list)
    paths = set()
    for r in records:
        if r["impl"] not in impls or r.get("status") != "ok" or not r.get("time_us"):
            continue
        c = record_cost(r)
        t = r["time_us"] * 1e-6
        if c.total_flops > 0 and c.total_bytes > 0:
            flop_pts[r["impl"]].append((c.total_flops / c.total_bytes, c.total_flops / t))
            paths.add(max(c.flops, key=lambda p: c.flops[p]))
        elif c.total_bytes > 0:
            bw_pts[r["impl"]].append((c.total_bytes, c.total_bytes / t))
    ax.set_title(title, fontsize=10)
    if flop_pts:
        xs = [x for v in flop_pts.values() for x, _ in v]
        peaks = sorted({hw.peak(p) for p in paths}, reverse=True)
        lo, hi = min(xs + [p / hw.bandwidth for p in peaks]) / 3, max(xs + [p / hw.bandwidth for p in peaks]) * 3
        for i, pk in enumerate(peaks):
            ridge = pk / hw.bandwidth
            ax.plot([lo, ridge, hi], [hw.bandwidth * lo, pk, pk], color="#222" if i == 0 else "#888",
                    lw=1.5 if i == 0 else 1.0, ls="-" if i == 0 else "--", zorder=1)
            ax.annotate(f"{pk / 1e12:.4g} TFLOP/s", (hi, pk), ha="right", va="bottom", fontsize=8)
        ax.annotate(f"{hw.bandwidth / 1e12:.3g} TB/s", (lo * 1.2, hw.bandwidth * lo * 1.5), fontsize=8, rotation=0)
        for impl in impls:
            if flop_pts.get(impl):
                x, y = zip(*flop_pts[impl])
                ax.scatter(x, y, s=14, color=colors[impl], label=impl, alpha=0.8, zorder=2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP/byte)")
        ax.set_ylabel("attained FLOP/s")
    elif bw_pts:
        for impl in impls:
            if bw_pts.get(impl):
                x, y = zip(*bw_pts[impl])
                ax.scatter(x, [v / 1e12 for v in y], s=14, color=colors[impl], label=impl, alpha=0.8, zorder=2)
        ax.axhline(hw.bandwidth / 1e12, color="#222", lw=1.5, zorder=1)
        ax.annotate(f"bandwidth {hw.bandwidth / 1e12:.3g} TB/s", (0.99, hw.bandwidth / 1e12),
                    xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("bytes moved per call")
        ax.set_ylabel("attained bandwidth (TB/s)")
    else:
        ax.text(0.5, 0.5, "no correct timed records", ha="center", va="center", transform=ax.transAxes)
    ax.grid(True, which="major", color="#e6e6e6", lw=0.6)
    if flop_pts or bw_pts:
        ax.legend(fontsize=8, loc="lower right")
    return bool(flop_pts) and bool(bw_pts)


def plot(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, op: str | None = None,
         hw: str = "achievable", impls: Sequence[str] | None = None) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("solbench plot needs matplotlib: pip install 'solbench[plot]'") from None
    from solbench.runner import read_records

    out = Path(out)
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"output {out} must end in .png, .svg or .pdf")
    records = [r for p in paths for r in read_records(p)]
    if not records:
        raise ValueError(f"{', '.join(map(str, paths))}: no records to plot (an empty results file)")
    devices = sorted({(r.get("device"), r.get("hw"), r.get("timer")) for r in records}, key=str)
    if len(devices) > 1:
        raise ValueError("the records come from several devices/timers (" +
                         "; ".join(f"{d} {h} {t}" for d, h, t in devices) + "): plot one run at a time")
    if op:
        records = [r for r in records if r["op"] == op]
        if not records:
            raise ValueError(f"no records for operator {op!r}")
    order = _impl_order(records, impls)
    colors = {impl: _COLORS[i % len(_COLORS)] for i, impl in enumerate(order)}
    ceil = ceilings(records, hw)
    device = records[0].get("device")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [1, 1.25]})
    _roofline_axes(ax1, records, order, ceil, colors,
                   f"{op or 'suite'} on {device}: roofline, ceilings of {ceil.name}")
    if op:
        _s_per_shape(ax2, records, order, ceil, colors, op)
    else:
        _s_per_op(ax2, records, order, ceil, colors)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out


def _log_if_wide(ax, values):
    vals = [v for v in values if v and v > 0]
    if vals and max(vals) / min(vals) > 50:
        ax.set_yscale("log")


def _s_per_shape(ax, records, impls, hw, colors, op):
    shapes = sorted({str(r["shape_id"]) for r in records}, key=lambda s: _sid_key({"shape_id": s}))
    by = {(str(r["shape_id"]), r["impl"]): r for r in records}
    # Implementations skipped on every shape get no bar slot, but are named with their reason.
    skipped = [i for i in impls if all(r.get("status") == "skip" for r in records if r["impl"] == i)]
    impls = [i for i in impls if i not in skipped]
    if skipped:
        why = {i: next((r.get("reason") for r in records if r["impl"] == i and r.get("reason")), "") for i in skipped}
        ax.text(0.0, -0.24 if len(shapes) > 20 else -0.16,
                "skipped: " + "; ".join(f"{i} ({why[i][:70]})" for i in skipped), fontsize=7,
                transform=ax.transAxes, va="top", color="#9a6700")
    width = 0.8 / max(1, len(impls))
    all_s = []
    for j, impl in enumerate(impls):
        xs, ys, fails = [], [], []
        for i, sid in enumerate(shapes):
            r = by.get((sid, impl))
            if r is None:
                continue
            s = s_against(r, hw)
            x = i + (j - (len(impls) - 1) / 2) * width
            if s is not None:
                xs.append(x)
                ys.append(s)
            elif r.get("status") == "fail":
                fails.append(x)
        all_s += ys
        ax.bar(xs, ys, width=width, color=colors[impl], label=impl)
        if fails:  # FAILs are shown, never dropped: a red cross on the axis
            ax.scatter(fails, [0] * len(fails), marker="x", color="#c62828", s=30, zorder=3,
                       label=f"{impl} FAIL", clip_on=False)
    ax.axhline(1.0, color="#222", lw=0.8, ls="--")
    _log_if_wide(ax, all_s)
    ax.set_xticks(range(len(shapes)))
    ax.set_xticklabels(shapes, fontsize=7, rotation=90 if len(shapes) > 20 else 0)
    ax.set_xlabel("shape id")
    ax.set_ylabel(f"S = SOL / time ({hw.name})")
    ax.set_title(f"{op}: S per shape", fontsize=10)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, axis="y", color="#e6e6e6", lw=0.6)


def _s_per_op(ax, records, impls, hw, colors):
    groups = defaultdict(list)
    importance = {}
    for r in records:
        importance.setdefault(r["op"], float(r.get("importance") or 0))
        s = s_against(r, hw)
        if s is not None:
            groups[(r["op"], r["impl"])].append((s, float(r.get("weight") or 1.0)))
    ops = sorted(importance, key=lambda o: -importance[o])
    height = 0.8 / max(1, len(impls))
    all_s = []
    for j, impl in enumerate(impls):
        ys, xs = [], []
        for i, op in enumerate(ops):
            vals = groups.get((op, impl))
            if vals:
                med = weighted_median([v for v, _ in vals], [w for _, w in vals])
                ys.append(i + (j - (len(impls) - 1) / 2) * height)
                xs.append(med)
        all_s += xs
        ax.barh(ys, xs, height=height, color=colors[impl], label=impl)
    vals = [v for v in all_s if v and v > 0]
    if vals and max(vals) / min(vals) > 50:
        ax.set_xscale("log")
    ax.axvline(1.0, color="#222", lw=0.8, ls="--")
    ax.set_yticks(range(len(ops)))
    ax.set_yticklabels([f"{o} ({importance[o] * 100:.1f}%)" for o in ops], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"weighted-median S ({hw.name})")
    ax.set_title("S per operator (importance in parentheses)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(True, axis="x", color="#e6e6e6", lw=0.6)
