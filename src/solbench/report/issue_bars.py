"""The bars of the kernel issues (#22 attention, #23 MoE and fp8 GEMM, #24 the rest of the
catalog), judged from committed results files: which bar items are met on a GPU folder, and by
which shapes and figures the others are missed. Nothing is measured here.

Rules that the issues leave to the judge, stated once:

* **Ours** is the fastest correct record of our kernels (``ours_triton``, ``ours_cuda``) for the
  shape; a reference (``ours_dense``, ``sdpa_dense``: K/V gathered before the timed call) is
  never ours and never a peer, only the yardstick a bar names.
* **Same run.** A comparison with a peer uses one file (one run). Where several files hold both,
  it uses the file where ours is fastest: that file holds our current kernel, and the peer was
  timed beside it.
* **Unmeasured** catalog shapes (no correct record of ours) count against every bar that covers
  them, named ``unmeasured``; a failed record of ours counts against correctness.
* A named peer with no record at all in the runs (never timed) is a miss (``no <peer> run``);
  one that was timed and skipped or failed everywhere does not run there, so the bar ("where it
  runs") asks nothing of that shape.
* S is the achievable S (calibrated SOL / time), as in docs/PERFORMANCE.md. A bar on a "rate of
  the calibrated bf16 / fp8 rate" divides the shape's tensor-core FLOPs by the record's calibrated
  peak of that path and by its time, whatever bounds the shape. "Decode" is at most 32 tokens for
  the MoE and routing operators, one token for the delta-rule update; the MoE's "large" shapes
  are those with T·k >= 16k, as for fused_moe's rate bar.
* Only records of the catalog shape count: smoke runs and records whose params differ (another
  suite) are left out, and every run must be of one GPU.

``python -m solbench.report.issue_bars benchmarks/results/h100`` prints the tables;
``benchmarks/performance_tables.py`` puts them in docs/PERFORMANCE.md.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

OURS = ("ours_triton", "ours_cuda")
REFERENCES = ("ours_dense", "sdpa_dense")


def _is_reference(rec) -> bool:
    return rec.get("role") == "reference" or rec["impl"] in REFERENCES


def _timed(rec) -> bool:
    """A correct record with a time."""
    return rec.get("status") == "ok" and bool(rec.get("time_us"))


@dataclass
class ShapeResults:
    """Everything measured for one (operator, shape): per file, per implementation, the record."""

    op: str
    sid: str
    params: dict
    by_file: dict = field(default_factory=lambda: defaultdict(dict))

    def records(self, impl: str) -> list[dict]:
        return [impls[impl] for impls in self.by_file.values() if impl in impls]

    def ours(self) -> dict | None:
        """Our fastest correct record, any backend, any file."""
        ok = [r for impls in self.by_file.values() for n, r in impls.items() if n in OURS and _timed(r)]
        return min(ok, key=lambda r: r["time_us"]) if ok else None

    def ours_failed(self) -> list[str]:
        return sorted({r["impl"] for impls in self.by_file.values() for n, r in impls.items()
                       if n in OURS and r.get("status") == "fail"})

    def versus(self, impl: str) -> tuple[float, str] | None:
        """(ours' time / impl's time, file) from one run: the file, among those with a correct
        record of both, where ours is fastest. None where no run has both."""
        best = None
        for name, impls in self.by_file.items():
            other = impls.get(impl)
            mine = [r for n, r in impls.items() if n in OURS and _timed(r)]
            if other is None or not _timed(other) or not mine:
                continue
            t = min(r["time_us"] for r in mine)
            if best is None or t < best[0]:
                best = (t, t / other["time_us"], name)
        return None if best is None else (best[1], best[2])

    def peers(self) -> list[str]:
        """Implementations other than ours and the references that ran correctly somewhere."""
        return sorted({n for impls in self.by_file.values() for n, r in impls.items()
                       if n not in OURS and not _is_reference(r) and _timed(r)})

    def ever_timed(self, impl: str) -> bool:
        """Whether any run has a record of ``impl`` for the shape (ok, skipped or failed)."""
        return any(impl in impls for impls in self.by_file.values())


def _megabytes(rec) -> float:
    c = rec["cost"]
    return (c["bytes_read"] + c["bytes_written"]) / 1e6


def _gflop(rec) -> float:
    return sum((rec["cost"].get("flops") or {}).values()) / 1e9


def collect(files: Iterable[tuple[str, list[dict]]], catalog: dict[str, dict]) -> dict:
    """{(op, shape id): ShapeResults} for every catalog shape of ``catalog`` ({op: {shape id:
    params}}), filled from ``files`` ((name, records) per run)."""
    table = {(op, str(i)): ShapeResults(op, str(i), dict(p)) for op, shapes in catalog.items()
             for i, p in shapes.items()}
    for name, recs in files:
        for r in recs:
            key = (r.get("op"), str(r.get("shape_id")))
            if key not in table or "impl" not in r or r.get("smoke"):
                continue
            if r.get("params") is not None and r["params"] != table[key].params:
                continue  # the same id in another suite
            table[key].by_file[name][r["impl"]] = r
    return table


@dataclass
class Bar:
    """One bar item: the shapes it covers (``select``) and the test of one shape (``check``: None
    when met, else a short text of the miss). ``share``: the bar asks for this fraction of the
    covered shapes, not all of them."""

    text: str
    ops: tuple[str, ...]
    check: Callable[[ShapeResults], str | None]
    select: Callable[[ShapeResults], bool | None] = lambda s: True
    share: float = 1.0


@dataclass
class Verdict:
    text: str
    shapes: int
    misses: list[str]
    met: bool | None  # None: no catalog shape falls under the bar


def judge(bar: Bar, table: dict) -> Verdict:
    """Apply one bar. A shape the selection cannot place (no record of any implementation to read
    its size from) is covered and missed as unmeasured, so a folder without records never meets
    a bar by having nothing to judge."""
    covered, misses = 0, []
    for (op, _), s in sorted(table.items(), key=lambda kv: (kv[0][0], _sid_key(kv[0][1]))):
        if op not in bar.ops:
            continue
        placed = bar.select(s)
        if placed is False:
            continue
        covered += 1
        why = "unmeasured" if placed is None else bar.check(s)
        if why:
            misses.append(f"{s.op} #{s.sid} {why}")
    met = covered - len(misses) >= bar.share * covered - 1e-9 if covered else None
    return Verdict(bar.text, covered, misses, met)


def _sid_key(sid: str):
    return (0, int(sid)) if sid.isdigit() else (1, 0)


# ---- the checks ------------------------------------------------------------------------------------

def correct(s: ShapeResults) -> str | None:
    failed = s.ours_failed()
    if failed:
        return "fails (" + ", ".join(failed) + ")"
    return None if s.ours() else "unmeasured"


def _fraction_at_least(label: str, value_of, limit: float):
    """A check that ours' ``value_of(record)`` (value, or None and why) reaches ``limit``; a miss
    prints with enough digits never to read as the limit itself (0.4996 against 0.50)."""
    def check(s: ShapeResults) -> str | None:
        o = s.ours()
        if o is None:
            return "unmeasured"
        v, why = value_of(o)
        if v is None:
            return why
        if v >= limit:
            return None
        return f"{label} {v:.3f}" if round(v, 3) < limit else f"{label} {v:.4f}"
    return check


def s_at_least(limit: float):
    return _fraction_at_least("S", lambda o: (o.get("s_achievable"), "no achievable S in the record"), limit)


def rate_at_least(path: str, limit: float):
    """The shape's ``path`` tensor-core FLOPs (e.g. ``bf16_tc``) over ours' time, as a fraction of
    the record's calibrated peak of that path: the issues' "of the calibrated bf16 / fp8 rate"."""
    def rate(o):
        flops = (o["cost"].get("flops") or {}).get(path)
        peak = (((o.get("peaks") or {}).get("achievable") or {}).get("peaks") or {}).get(path)
        if not flops or not peak:
            return None, f"no {path} FLOPs or calibrated peak in the record"
        return flops / (o["time_us"] * 1e-6) / peak, ""
    return _fraction_at_least("rate", rate, limit)


def near_floor(slack_us: float):
    def check(s: ShapeResults) -> str | None:
        o = s.ours()
        if o is None:
            return "unmeasured"
        floor = o.get("launch_floor_us")
        if floor is None:
            return "no launch floor in the record"
        over = o["time_us"] - floor
        return None if over <= slack_us else f"{o['time_us']:.1f} us ({over:.1f} over)"
    return check


def faster_than(peers: tuple[str, ...] | None = None, at_most: float = 1.0):
    """Ours' time <= ``at_most`` x each peer's (every runnable peer when ``peers`` is None), each
    comparison inside one run. A named peer that was timed but never ran correctly on the shape
    (skipped, failed) is no miss; one that was never timed is."""
    def check(s: ShapeResults) -> str | None:
        if s.ours() is None:
            return "unmeasured"
        slow = []
        for p in (peers if peers is not None else s.peers()):
            v = s.versus(p)
            if v is not None and v[0] > at_most:
                slow.append(f"{v[0]:.2f}x {p}")
            elif v is None and peers is not None and not s.ever_timed(p):
                slow.append(f"no {p} run")
        return ", ".join(slow) or None
    return check


def at_least_of_reference(ref: str, fraction: float):
    """Ours at >= ``fraction`` of the reference's speed (reference time / ours >= fraction)."""
    def check(s: ShapeResults) -> str | None:
        if s.ours() is None:
            return "unmeasured"
        v = s.versus(ref)
        if v is None:
            return None if s.ever_timed(ref) else f"no {ref} run"
        return None if 1.0 / v[0] >= fraction else f"{1.0 / v[0]:.2f}x {ref}"
    return check


def _by_op(checks: dict, default):
    """A check per operator (``default`` for the others): e.g. fla's kernels differ by operator."""
    return lambda s: checks.get(s.op, default)(s)


# ---- shape classes ---------------------------------------------------------------------------------

def _any_record(s: ShapeResults) -> dict | None:
    return s.ours() or next((r for impls in s.by_file.values() for r in impls.values()), None)


def _mb(s: ShapeResults) -> float | None:
    o = _any_record(s)
    return None if o is None else _megabytes(o)


# Selections by size are None (cannot place) where no record gives the shape's cost.
def moving_at_least(mb: float):
    return lambda s: None if _mb(s) is None else _mb(s) >= mb


def moving_less(mb: float):
    return lambda s: None if _mb(s) is None else _mb(s) < mb


def gflop_at_least(g: float):
    return lambda s: None if _any_record(s) is None else _gflop(_any_record(s)) >= g


def _tokens(s: ShapeResults) -> int:
    return int(s.params.get("token_count", s.params.get("num_tokens", 0)) or 0)


def decode_tokens(s: ShapeResults) -> bool:
    return _tokens(s) <= 32


def large_moe(s: ShapeResults) -> bool:
    return _tokens(s) * int(s.params.get("top_k", 1)) >= 16384


def gemm_rows(lo: int = 0, hi: int = 1 << 62):
    return lambda s: lo <= int(s.params.get("m", 0)) <= hi


def unified_decode(s: ShapeResults) -> bool:
    """unified_attention's decode shapes: every sequence one query (the catalog has none: its
    shapes are prefills, L_q = L_k)."""
    q = s.params.get("query_lens")
    return bool(q) and all(int(n) == 1 for n in q)


def delta_update(tokens_one: bool):
    """The delta-rule update's shapes of one token a sequence (decode, ``tokens_one``) or of more;
    every other operator's shapes pass."""
    return lambda s: s.op != "gated_delta_rule_update" or ((_tokens(s) == 1) == tokens_one)


def shape_ids(*ids: int):
    return lambda s: s.sid in {str(i) for i in ids}


def _both(*sels):
    """All of the selections: False if one is False, else None if one cannot place the shape."""
    def sel(s):
        got = [f(s) for f in sels]
        return False if False in got else (None if None in got else True)
    return sel


# ---- the issues ------------------------------------------------------------------------------------

ATTENTION = ("unified_attention", "paged_attention_decode", "mla_decode_attention", "attention_forward")
DECODE_ATTENTION = ("paged_attention_decode", "mla_decode_attention", "unified_attention")
MOE = ("fused_moe", "block_scaled_mm", "fp8_blockscale_fused_moe", "moe_topk_gating_softmax",
       "moe_align_block_size", "moe_count_and_sort", "moe_sum_reduce")
ROUTING = ("moe_topk_gating_softmax", "moe_align_block_size", "moe_count_and_sort", "moe_sum_reduce")
REST = ("reshape_and_cache", "topk_filter", "gated_delta_rule_update", "fused_qkv_rope", "causal_conv1d",
        "chunk_gated_delta_rule_state", "mrope", "chunk_delta_rule_output", "linear_sigmoid_mul")
REST_MEMORY = ("reshape_and_cache", "fused_qkv_rope", "mrope", "causal_conv1d", "gated_delta_rule_update",
               "linear_sigmoid_mul")
CHUNKED = ("gated_delta_rule_update", "chunk_gated_delta_rule_state", "chunk_delta_rule_output")

_decode_attention = lambda s: s.op != "unified_attention" or unified_decode(s)  # noqa: E731
_prefill = lambda s: not unified_decode(s)  # noqa: E731

ISSUES: dict[str, list[Bar]] = {
    "#22 attention": [
        Bar("correct on every catalog shape", ATTENTION, correct),
        Bar("unified_attention #20 and #21: S >= 0.60", ("unified_attention",), s_at_least(0.60), shape_ids(20, 21)),
        Bar("prefills of >= 10 GFLOP: faster than FlexAttention and SDPA's flash backend",
            ("unified_attention", "attention_forward"), faster_than(("flex_attention", "sdpa_flash")),
            _both(_prefill, gflop_at_least(10))),
        Bar("prefills of >= 10 GFLOP: >= 0.85x sdpa_dense (cuDNN)", ("unified_attention", "attention_forward"),
            at_least_of_reference("sdpa_dense", 0.85), _both(_prefill, gflop_at_least(10))),
        Bar("decode moving >= 16 MB: S >= 0.70", DECODE_ATTENTION, s_at_least(0.70),
            _both(_decode_attention, moving_at_least(16))),
        Bar("decode moving < 16 MB: within 3 us of the launch floor", DECODE_ATTENTION, near_floor(3.0),
            _both(_decode_attention, moving_less(16))),
        Bar("decode: faster than every runnable peer on >= 90% of shapes", DECODE_ATTENTION, faster_than(),
            _decode_attention, share=0.9),
    ],
    "#23 MoE and fp8 GEMM": [
        Bar("correct on every catalog shape", MOE, correct),
        Bar("block_scaled_mm M >= 4096: >= 0.50 of the calibrated fp8 rate", ("block_scaled_mm",),
            rate_at_least("fp8_e4m3_tc", 0.50), gemm_rows(lo=4096)),
        Bar("block_scaled_mm M >= 4096: faster than torch._scaled_mm blockwise where it runs", ("block_scaled_mm",),
            faster_than(("torch_native",)), gemm_rows(lo=4096)),
        Bar("block_scaled_mm M <= 512: S >= 0.60 (weights streamed)", ("block_scaled_mm",), s_at_least(0.60),
            gemm_rows(hi=512)),
        Bar("fused_moe T·k >= 16k: >= 0.45 of the calibrated bf16 rate", ("fused_moe",), rate_at_least("bf16_tc", 0.45),
            large_moe),
        Bar("fused_moe: faster than the torch._grouped_mm baseline (torch_eager) and torch.compile", ("fused_moe",),
            faster_than(("torch_eager", "torch_compile"))),
        Bar("fused_moe decode (T <= 32): S >= 0.50", ("fused_moe",), s_at_least(0.50), decode_tokens),
        Bar("fp8_blockscale_fused_moe T·k >= 16k: >= 0.40 of the calibrated fp8 rate", ("fp8_blockscale_fused_moe",),
            rate_at_least("fp8_e4m3_tc", 0.40), large_moe),
        Bar("fp8_blockscale_fused_moe decode (T <= 32): S >= 0.50", ("fp8_blockscale_fused_moe",), s_at_least(0.50),
            decode_tokens),
        Bar("routing at decode sizes (T <= 32): within 3 us of the launch floor", ROUTING, near_floor(3.0),
            decode_tokens),
        Bar("routing moving >= 16 MB: S >= 0.70", ROUTING, s_at_least(0.70), moving_at_least(16)),
    ],
    "#24 cache, rope, top-k, linear attention": [
        Bar("correct on every catalog shape", REST, correct),
        Bar("memory-bound operators moving >= 32 MB: S >= 0.80", REST_MEMORY, s_at_least(0.80),
            _both(delta_update(True), moving_at_least(32))),
        Bar("memory-bound operators moving < 1 MB: within 2 us of the launch floor", REST_MEMORY, near_floor(2.0),
            _both(delta_update(True), moving_less(1))),
        Bar("memory-bound operators: faster than every runnable peer on >= 90% of shapes", REST_MEMORY,
            faster_than(), delta_update(True), share=0.9),
        Bar("delta-rule update T > 1 and the chunk operators: faster than fla on >= 90% of shapes", CHUNKED,
            _by_op({"gated_delta_rule_update": faster_than(("fla", "fla_chunk"))}, faster_than(("fla",))),
            delta_update(False), share=0.9),
        Bar("topk_filter moving >= 32 MB: S >= 0.50", ("topk_filter",), s_at_least(0.50), moving_at_least(32)),
        Bar("topk_filter: faster than every peer on every shape", ("topk_filter",), faster_than()),
    ],
}


def catalog_params(ops: Iterable[str]) -> dict[str, dict]:
    """{op: {shape id: params}} of the packaged catalog (its ids are not always 0..n-1)."""
    from solbench.catalog import make_shapes, operator_entries

    entries = operator_entries()
    return {op: {s.id: s.params for s in make_shapes(entries[op])} for op in ops if op in entries}


def verdicts(files: Iterable[tuple[str, list[dict]]]) -> dict[str, list[Verdict]]:
    """{issue: [Verdict per bar]} for the runs ``files`` ((name, records) each)."""
    files = list(files)
    devices = {r["device"] for _, recs in files for r in recs if r.get("device") and r.get("impl")}
    if len(devices) > 1:
        raise ValueError(f"bars judges one GPU at a time; these runs hold {', '.join(sorted(devices))}")
    ops = sorted({op for bars in ISSUES.values() for bar in bars for op in bar.ops})
    table = collect(files, catalog_params(ops))
    return {issue: [judge(b, table) for b in bars] for issue, bars in ISSUES.items()}


def markdown(results: dict[str, list[Verdict]], max_misses: int = 12) -> str:
    lines = []
    for issue, vs in results.items():
        met = sum(v.met is True for v in vs)
        judged = sum(v.met is not None for v in vs)
        if all(m.endswith(" unmeasured") for v in vs for m in v.misses) and all(
                len(v.misses) == v.shapes for v in vs):
            lines += ["", f"**Issue {issue}**: no record of our kernels for its operators here."]
            continue
        lines += ["", f"**Issue {issue}**: {met} of {judged} bar items met.", "",
                  "| bar | shapes | met | misses |", "|---|---|---|---|"]
        for v in vs:
            shown = v.misses[:max_misses]
            more = f" and {len(v.misses) - len(shown)} more" if len(v.misses) > len(shown) else ""
            mark = {True: "yes", False: "**no**", None: "n/a"}[v.met]
            cell = ("; ".join(shown) + more) if shown else ("-" if v.shapes else "no catalog shape")
            lines.append(f"| {v.text} | {v.shapes} | {mark} | {cell} |")
    return "\n".join(lines) + "\n"


#: A GPU folder's second run (docs/PERFORMANCE.md compares it apart), and the prefixes of its JSONL
#: files that are not runs of the catalog: candidate evaluations, tuner logs, A/B tables, the PDL
#: chain, JIT compile times, breakdowns.
SECOND_RUN = "repeat.jsonl"
NOT_RUNS = ("eval_", "tune_log", "table_", "pdl_chain", "jit_", "kprof")


def run_files(folder: Path) -> list[Path]:
    """The runs of a GPU folder (one JSONL file each), as docs/PERFORMANCE.md reads them: not the
    second run, the files of :data:`NOT_RUNS` or the records a re-measure replaced."""
    return sorted(p for p in Path(folder).glob("*.jsonl")
                  if p.name != SECOND_RUN and not p.name.startswith(NOT_RUNS)
                  and not p.name.endswith(".replaced.jsonl"))


def folder_runs(folder: Path) -> list[tuple[str, list[dict]]]:
    """``(path, records)`` of each of :func:`run_files`: named by path, so two folders' files never
    merge into one run."""
    from solbench.runner import read_records

    return [(str(p), read_records(p)) for p in run_files(folder)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python -m solbench.report.issue_bars benchmarks/results/<gpu>", file=sys.stderr)
        return 2
    sys.stdout.write(markdown(verdicts(folder_runs(Path(argv[0]))), max_misses=1000))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
