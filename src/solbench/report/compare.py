"""Run-to-run comparison: match records of two results files and call each change faster, slower
or the same within noise.

Records are matched by operator x shape x implementation x hardware (``hw``), plus the timer and
the smoke flag, because a graph-replay time and an eager time of the same kernel are different
quantities. The cold-L2 method is not part of the match (``graph`` and ``graph+flush``, from
``run --cold-l2 flush``, are one quantity measured two ways: comparing them is how the method's
effect is measured); the comparison says when the two files used different methods.

Noise comes from the records themselves, never from a fixed percentage: each timed record has a
median and its p20/p80. The relative width ``(p80 - p20) / median`` is how much one sample of
that measurement wanders. For a shape, the two widths are combined in quadrature (the log-ratio
of two independent measurements) into the band ``h``; a shape is slower when
``ln(t_new / t_base) > h`` and faster when it is below ``-h``. The band is wide compared with the
statistical error of a median of many samples on purpose: it has to absorb what varies between
two runs (clocks, placement), which within-run quantiles only hint at. Graph-replay medians can
have very tight quantiles, so the band also takes, in quadrature, the run-to-run scatter the
comparison itself shows: 1.4826 x the median absolute deviation of all matched log-ratios (from
8 matched records up). A median-based spread is barely moved by the minority of records that
really changed, so a regression does not hide itself.

Per operator and implementation the shapes' log-ratios are averaged (geometric-mean ratio). Its
band is the median of the shapes' bands plus twice the standard error of the log-ratios, so an
operator whose shapes disagree with one another needs a larger mean shift before it is called.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Iterable, Mapping, Sequence

FASTER, SLOWER, SAME = "faster", "slower", "same"
NOW_FAIL, FIXED, STILL_FAIL, NOT_TIMED = "now FAIL", "fixed", "still FAIL", "not timed"


def timer_mode(timer: str | None) -> str:
    """The timer without its cold-L2 qualifier: ``graph+flush`` -> ``graph``."""
    return (timer or "").split("+")[0]


def match_key(r: Mapping) -> tuple:
    return (r.get("op"), str(r.get("shape_id")), r.get("impl"), r.get("hw"), timer_mode(r.get("timer")),
            bool(r.get("smoke")))


def relative_spread(r: Mapping) -> float | None:
    """(p80 - p20) / median of a timed record, or None when the record has no quantiles."""
    t, lo, hi = r.get("time_us"), r.get("p20_us"), r.get("p80_us")
    if not t or t <= 0 or lo is None or hi is None or hi < lo:
        return None
    return (hi - lo) / t


@dataclass
class ShapeDelta:
    op: str
    shape_id: str
    impl: str
    hw: str
    base_us: float | None
    new_us: float | None
    ratio: float | None          # t_new / t_base (> 1: slower)
    band: float | None           # noise band on ln(ratio)
    verdict: str
    base_status: str = ""
    new_status: str = ""
    reason: str = ""


@dataclass
class OpVerdict:
    op: str
    impl: str
    hw: str
    shapes: int
    ratio: float | None          # geometric mean of t_new / t_base over timed shapes
    band: float | None           # noise band on ln(ratio)
    verdict: str
    faster: int = 0
    slower: int = 0
    same: int = 0
    now_fail: int = 0
    worst_ratio: float | None = None
    worst_shape: str | None = None


@dataclass
class Comparison:
    shapes: list[ShapeDelta] = field(default_factory=list)
    ops: list[OpVerdict] = field(default_factory=list)
    only_base: list[tuple] = field(default_factory=list)
    only_new: list[tuple] = field(default_factory=list)
    duplicates: int = 0
    timers: tuple[list, list] = ([], [])  # the timers (with cold-L2 qualifiers) of each file
    gpus: tuple[list, list] = ([], [])    # the GPU UUIDs each file's records name (env.gpu_uuid)
    scatter: float = 0.0                 # run-to-run scatter of ln(ratio) over all matched records
    median_ratio: float | None = None    # median t_new / t_base over all matched records

    def to_json(self) -> dict:
        return {"shapes": [asdict(s) for s in self.shapes], "ops": [asdict(o) for o in self.ops],
                "scatter": self.scatter, "median_ratio": self.median_ratio,
                "only_base": [list(k) for k in self.only_base], "only_new": [list(k) for k in self.only_new],
                "duplicates": self.duplicates, "timers": {"base": self.timers[0], "new": self.timers[1]},
                "gpus": {"base": self.gpus[0], "new": self.gpus[1]}}

    def regressions(self, pct: float) -> list[OpVerdict]:
        """Operator x implementation pairs that got slower by at least ``pct`` percent beyond noise,
        or that now FAIL where they were correct before."""
        out = []
        for o in self.ops:
            if o.now_fail:
                out.append(o)
            elif o.verdict == SLOWER and o.ratio is not None and o.ratio >= 1.0 + pct / 100.0:
                out.append(o)
        return out


def _index(records: Iterable[Mapping]) -> tuple[dict, int]:
    idx, dup = {}, 0
    for r in records:
        k = match_key(r)
        if k in idx:
            dup += 1  # a resumed file can repeat a key; the later record is the one a rerun wrote
        idx[k] = r
    return idx, dup


def _timed_log_ratio(b: Mapping, n: Mapping) -> float | None:
    tb, tn = b.get("time_us"), n.get("time_us")
    if b.get("status") == n.get("status") == "ok" and tb and tn and tb > 0 and tn > 0:
        return math.log(tn / tb)
    return None


def run_scatter(log_ratios: Sequence[float], min_n: int = 8) -> float:
    """Robust spread of the per-shape log-ratios across the whole comparison (1.4826 x MAD, a
    standard deviation for normal noise). It measures what varies from run to run beyond the
    within-run quantiles; a minority of records that really changed barely moves it."""
    if len(log_ratios) < min_n:
        return 0.0
    m = median(log_ratios)
    return 1.4826 * median(abs(x - m) for x in log_ratios)


def _shape_delta(b: Mapping, n: Mapping, scatter: float = 0.0) -> ShapeDelta:
    base = dict(op=b["op"], shape_id=str(b.get("shape_id")), impl=b["impl"], hw=b.get("hw") or "",
                base_us=b.get("time_us"), new_us=n.get("time_us"),
                base_status=b.get("status", ""), new_status=n.get("status", ""))
    bs, ns = b.get("status"), n.get("status")
    if bs == "ok" and ns == "fail":
        return ShapeDelta(**base, ratio=None, band=None, verdict=NOW_FAIL, reason=n.get("reason") or "")
    if bs == "fail" and ns == "ok":
        return ShapeDelta(**base, ratio=None, band=None, verdict=FIXED)
    if bs == "fail" and ns == "fail":
        return ShapeDelta(**base, ratio=None, band=None, verdict=STILL_FAIL, reason=n.get("reason") or "")
    tb, tn = b.get("time_us"), n.get("time_us")
    if bs != "ok" or ns != "ok" or not tb or not tn or tb <= 0 or tn <= 0:
        why = n.get("reason") if ns != "ok" else b.get("reason")
        return ShapeDelta(**base, ratio=None, band=None, verdict=NOT_TIMED, reason=why or "")
    ratio = tn / tb
    sb, sn = relative_spread(b), relative_spread(n)
    band = (math.sqrt((sb or 0.0) ** 2 + (sn or 0.0) ** 2 + scatter ** 2)
            if (sb is not None or sn is not None or scatter > 0) else None)
    d = math.log(ratio)
    if band is None:  # no quantiles on either side: cannot tell noise from change per shape
        verdict = SAME if d == 0 else (SLOWER if d > 0 else FASTER)
    else:
        verdict = SLOWER if d > band else FASTER if d < -band else SAME
    return ShapeDelta(**base, ratio=ratio, band=band, verdict=verdict)


def _op_verdict(op: str, impl: str, hw: str, deltas: Sequence[ShapeDelta]) -> OpVerdict:
    timed = [d for d in deltas if d.ratio is not None]
    counts = defaultdict(int)
    for d in deltas:
        counts[d.verdict] += 1
    v = OpVerdict(op=op, impl=impl, hw=hw, shapes=len(deltas), ratio=None, band=None, verdict=NOT_TIMED,
                  faster=counts[FASTER], slower=counts[SLOWER], same=counts[SAME], now_fail=counts[NOW_FAIL])
    if timed:
        logs = [math.log(d.ratio) for d in timed]
        mean = sum(logs) / len(logs)
        bands = [d.band for d in timed if d.band is not None]
        band = median(bands) if bands else 0.0
        if len(logs) >= 3:
            sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
            band += 2.0 * sd / math.sqrt(len(logs))
        v.ratio, v.band = math.exp(mean), band
        v.verdict = SLOWER if mean > band else FASTER if mean < -band else SAME
        worst = max(timed, key=lambda d: d.ratio)
        v.worst_ratio, v.worst_shape = worst.ratio, worst.shape_id
    if counts[NOW_FAIL]:
        v.verdict = NOW_FAIL
    elif not timed and counts[FIXED]:
        v.verdict = FIXED
    elif not timed and counts[STILL_FAIL]:
        v.verdict = STILL_FAIL
    return v


def _gpu_uuids(records: Sequence[Mapping]) -> list[str]:
    return sorted({str(u) for r in records if (u := (r.get("env") or {}).get("gpu_uuid"))})


def different_gpus(cmp: "Comparison") -> bool:
    """Both files name their GPUs and no GPU is in both: a shift shared by every implementation,
    baselines included, is then the machines' as likely as the code's."""
    return bool(cmp.gpus[0] and cmp.gpus[1] and not set(cmp.gpus[0]) & set(cmp.gpus[1]))


def compare_records(base: Sequence[Mapping], new: Sequence[Mapping]) -> Comparison:
    bi, bd = _index(base)
    ni, nd = _index(new)
    cmp = Comparison(duplicates=bd + nd, timers=(sorted({str(r.get("timer")) for r in base}),
                                                 sorted({str(r.get("timer")) for r in new})),
                     gpus=(_gpu_uuids(base), _gpu_uuids(new)))
    logs = [x for x in (_timed_log_ratio(b, ni[k]) for k, b in bi.items() if k in ni) if x is not None]
    cmp.scatter = run_scatter(logs)
    cmp.median_ratio = math.exp(median(logs)) if logs else None
    groups: dict[tuple, list[ShapeDelta]] = defaultdict(list)
    for k, b in bi.items():
        n = ni.get(k)
        if n is None:
            if b.get("status") != "skip":
                cmp.only_base.append(k[:4])
            continue
        if b.get("status") == "skip" and n.get("status") == "skip":
            continue
        d = _shape_delta(b, n, cmp.scatter)
        cmp.shapes.append(d)
        groups[(d.op, d.impl, d.hw)].append(d)
    cmp.only_new = [k[:4] for k, n in ni.items() if k not in bi and n.get("status") != "skip"]
    cmp.ops = [_op_verdict(op, impl, hw, ds) for (op, impl, hw), ds in groups.items()]
    return cmp


# ---- terminal output --------------------------------------------------------------------------

_STYLE = {FASTER: "green", SLOWER: "bold red", SAME: "none", NOW_FAIL: "bold red", FIXED: "green",
          STILL_FAIL: "yellow", NOT_TIMED: "dim"}


def _pct(band: float | None) -> str:
    return "-" if band is None else f"±{(math.exp(band) - 1) * 100:.1f}%"


def print_comparison(console, cmp: Comparison, base_name: str, new_name: str, changed_only: bool = False) -> None:
    from rich.table import Table
    from rich.text import Text

    from solbench.report.terminal import fmt, fmt_us

    rows = [d for d in cmp.shapes if not changed_only or d.verdict != SAME]
    if rows:
        t = Table(title=f"per shape: {new_name} vs {base_name} (ratio = t_new / t_base; > 1 is slower)",
                  title_justify="left")
        for c in ("op", "shape", "impl", "hw", "base µs", "new µs", "ratio", "noise", "verdict"):
            t.add_column(c, justify="right" if c in ("base µs", "new µs", "ratio", "noise") else "left")
        for d in sorted(rows, key=lambda d: (d.op, d.impl, _sid_key(d.shape_id))):
            verdict = Text(d.verdict, style=_STYLE.get(d.verdict, ""))
            if d.reason:
                verdict.append(" " + d.reason[:60], style="dim")
            t.add_row(d.op, d.shape_id, d.impl, d.hw, fmt_us(d.base_us), fmt_us(d.new_us), fmt(d.ratio, ".3f"),
                      _pct(d.band), verdict)
        console.print(t)
    t = Table(title="per operator and implementation (geometric-mean ratio over matched shapes)", title_justify="left")
    for c in ("op", "impl", "hw", "shapes", "ratio", "noise", "faster/same/slower", "worst", "verdict"):
        t.add_column(c, justify="right" if c in ("shapes", "ratio", "noise", "worst") else "left")
    for o in sorted(cmp.ops, key=lambda o: (o.op, o.impl)):
        worst = f"{o.worst_ratio:.3f} (#{o.worst_shape})" if o.worst_ratio is not None else "-"
        t.add_row(o.op, o.impl, o.hw, str(o.shapes), fmt(o.ratio, ".3f"), _pct(o.band),
                  f"{o.faster}/{o.same}/{o.slower}" + (f" +{o.now_fail} FAIL" if o.now_fail else ""), worst,
                  Text(o.verdict, style=_STYLE.get(o.verdict, "")))
    console.print(t)
    tally = defaultdict(int)
    for o in cmp.ops:
        tally[o.verdict] += 1
    extra = []
    if cmp.only_base:
        extra.append(f"{len(cmp.only_base)} records only in {base_name}")
    if cmp.only_new:
        extra.append(f"{len(cmp.only_new)} only in {new_name}")
    if cmp.duplicates:
        extra.append(f"{cmp.duplicates} repeated keys (last record kept)")
    if cmp.timers[0] != cmp.timers[1]:
        extra.append(f"timers differ ({base_name}: {', '.join(cmp.timers[0])}; "
                     f"{new_name}: {', '.join(cmp.timers[1])}): a ratio there is what the timing method changes")
    if different_gpus(cmp):
        extra.append(f"different GPUs ({base_name}: {', '.join(u[:12] for u in cmp.gpus[0])}; {new_name}: "
                     f"{', '.join(u[:12] for u in cmp.gpus[1])}): a ratio shared by every implementation, "
                     "baselines included, may be the machines'")
    if cmp.median_ratio is not None:
        extra.append(f"run-wide median ratio {cmp.median_ratio:.3f}, run-to-run scatter "
                     f"±{(math.exp(cmp.scatter) - 1) * 100:.1f}% (in every noise band)")
    console.print(f"{len(cmp.shapes)} matched records, {len(cmp.ops)} operator x implementation pairs: " +
                  ", ".join(f"{n} {k}" for k, n in sorted(tally.items())) + ("; " + "; ".join(extra) if extra else ""))


def _sid_key(sid: str):
    return (0, int(sid), "") if sid.isdigit() else (1, 0, sid)
