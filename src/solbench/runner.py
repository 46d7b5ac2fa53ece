"""The benchmark runner: for each operator x shape x implementation, check then time, and write
one JSONL record (see README, "Results records").

Records are appended as soon as a shape is done, so an interrupted run loses at most one shape,
and a rerun with the same ``--out`` skips what is already measured (same op, shape, impl,
hardware, device, timer). The file is locked against a second run and repaired after a crash
(:mod:`solbench.resultsfile`).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable, Mapping, Sequence

from solbench.core import check as checker
from solbench.core import hardware, record, timing
from solbench.core.env import environment, running_clocks
from solbench.core.record import record_key
from solbench.core.spec import Cost, Impl, OpSpec, Shape, all_specs, get_spec, impls_for
from solbench.resultsfile import ResultsFile, json_safe

COLD_L2_MODES = ("auto", "flush", "warm")


@dataclass
class RunConfig:
    ops: Sequence[str] | None = None
    impls: Sequence[str] | None = None
    shapes: Sequence[str] | None = None       # shape ids to keep
    max_shapes: int | None = None              # at most this many shapes per operator (the first ones)
    hw: str | None = None                      # datasheet SKU; default: the detected device
    timer: str = "graph"                       # graph | eager (GPU); CPU always perf_counter
    out: str | None = None
    suite: str | None = None
    weights: Mapping[str, float] | None = None
    smoke: bool | None = None                  # None: smoke subset exactly when there is no GPU
    seeds: Sequence[int] = checker.DEFAULT_SEEDS
    include_variants: bool = False
    retry_failed: bool = False                 # measure FAIL records in ``out`` again (replacing them)
    # Operators whose records in ``out`` are measured again (replacing them; the replaced records are
    # appended to ``<out>.replaced.jsonl``), e.g. after a kernel change, while the rest of the file is
    # reused. A run cut by its time budget is resumed without it (with it, the part already
    # re-measured would be measured once more).
    remeasure_ops: Sequence[str] = ()
    # Stop starting new shapes once this many seconds have passed (the shape under way finishes
    # and is written). With ``out``, a rerun resumes where it stopped.
    time_budget_s: float | None = None
    # How calls start with a cold L2 on the GPU: "auto" (rotating input sets when they fit, else a
    # flush; see timing.plan_sets) or "flush" (always two sets and a flush before every call: every
    # implementation timed the same way, to measure what the choice itself does to a figure) or
    # "warm" (one input set, no flush: the data a decode-sized call reads is usually still in L2
    # from the kernel that wrote it; a diagnostic, since S against an HBM roofline means little
    # when the bytes come from L2).
    cold_l2: str = "auto"


@dataclass
class RunResult:
    records: list[dict] = field(default_factory=list)
    skipped_existing: int = 0
    smoke: bool = False
    device: str = ""
    hw: str = ""
    achievable: hardware.Hardware | None = None
    datasheet: hardware.Hardware | None = None
    unfinished: int = 0        # records not measured because the time budget ran out
    wall_s: float = 0.0


def _drop_to_remeasure(path: str, existing: dict, failed_too: bool = True, ops: Collection[str] = (),
                       shapes: Collection[str] | None = None) -> None:
    """Rewrite ``path`` without the records to measure again (atomically: a crash leaves the old
    file), so that the file keeps one record per key: FAIL records (when ``failed_too``), records
    marked ``carried_from`` (copied from another results file to complete it; a run that resumes
    the file replaces them with its own measurements) and every record of the operators ``ops``
    (only of the shape ids ``shapes`` when given: the run measures no others; those records are
    first saved to ``<path>.replaced.jsonl``, so nothing measured is lost if the run stops early)."""
    wanted = None if not shapes else {str(s) for s in shapes}

    def remeasured(r: dict) -> bool:
        return r.get("op") in ops and (wanted is None or str(r.get("shape_id")) in wanted)

    redo = [k for k, r in existing.items()
            if (failed_too and r.get("status") == "fail") or r.get("carried_from") or remeasured(r)]
    if not redo:
        return
    replaced = [existing[k] for k in redo if remeasured(existing[k])]
    if replaced:
        with open(str(path) + ".replaced.jsonl", "a", encoding="utf-8") as f:  # appended: never lost
            for r in replaced:
                f.write(json.dumps(_json_safe(r)) + "\n")
    for k in redo:
        del existing[k]
    tmp = Path(path).with_suffix(".retry.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in existing.values():
            f.write(json.dumps(_json_safe(r)) + "\n")
    os.replace(tmp, path)


def _check_remeasure(cfg: "RunConfig") -> None:
    """``remeasure_ops`` must name known operators that this run measures, into an ``out`` file:
    otherwise their records would be dropped and not measured again."""
    from solbench.core.spec import all_specs

    if not cfg.out:
        raise ValueError("remeasuring operators needs an --out file whose records they replace")
    known = {s.name for s in all_specs(include_variants=True)}
    unknown = sorted(set(cfg.remeasure_ops) - known)
    if unknown:
        raise ValueError(f"cannot remeasure unknown operators {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    outside = sorted(set(cfg.remeasure_ops) - set(cfg.ops)) if cfg.ops else []
    if outside:
        raise ValueError(f"--remeasure-ops {', '.join(outside)}: not among --ops, so they would not be measured again")


def read_records(path: str | os.PathLike) -> list[dict]:
    """Read a JSONL results file; a malformed line is an error that names the file and line."""
    records = []
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not a JSONL results file (byte {e.start} is not UTF-8 text)") from None
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}:{lineno}: not a JSON record ({e.msg})") from None
        if not isinstance(rec, dict) or "op" not in rec or "impl" not in rec:
            raise ValueError(f"{p}:{lineno}: not a solbench record (needs 'op' and 'impl')")
        records.append(rec)
    return records


_json_safe = json_safe


def _shape_pool(spec: OpSpec, cfg: RunConfig, smoke: bool) -> tuple[list[Shape], list[Shape]]:
    """(the shapes a run takes without --shapes, the shapes --shapes may pick from)."""
    if cfg.suite:
        from solbench.catalog import make_shapes, operator_entries

        entries = operator_entries(cfg.suite)
        shapes = make_shapes(entries[spec.name]) if spec.name in entries else []
        return shapes, shapes
    if smoke:
        # A smoke shape stands in for the catalog shape of its id (a record is keyed by the id), so
        # --shapes picks it, and a catalog shape only where no smoke shape has that id.
        small = list(spec.smoke_shapes())
        ids = {str(s.id) for s in small}
        return small, small + [s for s in spec.shapes if str(s.id) not in ids]
    return list(spec.shapes), list(spec.shapes)


def select_shapes(spec: OpSpec, cfg: RunConfig, smoke: bool) -> list[Shape]:
    shapes, pool = _shape_pool(spec, cfg, smoke)
    if cfg.shapes:
        wanted = {str(s) for s in cfg.shapes}
        shapes = [s for s in pool if str(s.id) in wanted]
    return shapes[:cfg.max_shapes] if cfg.max_shapes else shapes


def _id_ranges(ids: Iterable[str]) -> str:
    """``0-36`` for runs of consecutive integer ids, then the other ids (a few)."""
    ids = set(map(str, ids))
    ints = sorted(int(i) for i in ids if i.isdigit())
    parts: list[str] = []
    for i in ints:
        if parts and parts[-1][1] == i - 1:
            parts[-1][1] = i
        else:
            parts.append([i, i])
    text = [f"{a}-{b}" if b > a else f"{a}" for a, b in parts]
    others = sorted(i for i in ids if not i.isdigit())
    return ", ".join(text + others[:4] + (["..."] if len(others) > 4 else []))


def check_selection(specs: Sequence[OpSpec], cfg: RunConfig, smoke: bool) -> None:
    """A ValueError when ``--shapes`` or ``--impls`` names something that none of the selected
    operators has (a typo would otherwise run nothing and say nothing). A name that only some of
    them have is fine: ``--impls liger`` over the norms runs liger where it exists."""
    if cfg.shapes:
        known = {str(s.id) for spec in specs for s in _shape_pool(spec, cfg, smoke)[1]}
        unknown = [str(s) for s in cfg.shapes if str(s) not in known]
        if unknown:
            have = "; ".join(f"{spec.name}: {_id_ranges([str(s.id) for s in _shape_pool(spec, cfg, smoke)[1]])}"
                             for spec in specs[:6])
            raise ValueError(f"shape id(s) {', '.join(unknown)} match no shape of the selected operators "
                             f"({have}{'; ...' if len(specs) > 6 else ''})")
    if cfg.impls:
        known = {name for spec in specs for name in impls_for(spec.name)}
        unknown = [i for i in cfg.impls if i not in known]
        if unknown:
            raise ValueError(f"implementation(s) {', '.join(unknown)} registered for none of the selected operators "
                             f"(known here: {', '.join(sorted(known))})")


def select_ops(cfg: RunConfig) -> list[OpSpec]:
    if cfg.ops:
        return [get_spec(name) for name in cfg.ops]
    if cfg.suite:
        from solbench.catalog import operator_entries

        return [get_spec(name) for name in operator_entries(cfg.suite)]
    return all_specs(include_variants=cfg.include_variants)


class _Timed:
    """Input sets and preallocated outputs for one impl on one shape, and the call to time."""

    def __init__(self, spec: OpSpec, impl: Impl, shape: Shape, device, n_sets: int, flush: bool = False):
        self.sets, self.flush = timing.input_sets(n_sets, flush, lambda i: spec.make_inputs(shape, device, 1000 + i))
        self.outs = [spec.make_outputs(shape, s) if impl.takes_out else None for s in self.sets]
        self.spec, self.impl = spec, impl

    def __call__(self, i: int):
        """Runs set ``i``; returns what the implementation returned (the timer keeps captured
        calls' outputs alive, so allocated outputs get a buffer per call, see core/timing)."""
        inputs, outs = self.sets[i], self.outs[i]
        if outs is not None:
            return self.impl.fn(**inputs, out=outs if len(outs) > 1 else outs[0])
        return self.impl.fn(**inputs)


def _prepare_impl(spec: OpSpec, impl: Impl, shape: Shape, device) -> tuple[str, str, dict]:
    """("", "", facts) when ``impl`` may be checked on ``shape``; else (status, reason, facts)."""
    facts: dict = {}
    for what, probe in (("available()", impl.available), ("supports()", lambda: impl.supports(shape, device))):
        try:
            support = probe()
        except Exception as e:  # noqa: BLE001 - a broken probe is this impl's FAIL, never the sweep's end
            return "fail", f"{what} raised {type(e).__name__}: {str(e)[:300]}", facts
        if not support:
            return "skip", support.reason, facts
    try:
        if impl.prepare is not None:
            facts.update(impl.prepare(shape, spec.make_inputs(shape, device, 0)) or {})
    except Exception as e:  # noqa: BLE001
        return "fail", f"prepare raised {type(e).__name__}: {str(e)[:300]}", facts
    return "", "", facts


def time_impl(spec: OpSpec, impl: Impl, shape: Shape, device, cfg: RunConfig, cost: Cost,
               sets_cache: dict | None = None) -> tuple[str, str, dict]:
    """Time one implementation that passed its check: ("ok", "", {"timing": ...}) or a FAIL.
    ``sets_cache`` (``solbench tune``, which times many launch configurations of one
    implementation on one shape) keeps the input sets between calls instead of making them again."""
    import torch

    call = None
    try:
        with torch.no_grad():
            if device.type != "cuda":
                n_sets, flush = 2, False
            elif cfg.cold_l2 == "flush":
                n_sets, flush = 2, True
            elif cfg.cold_l2 == "warm":
                n_sets, flush = 1, False
            else:
                n_sets, flush = timing.plan_for(cost, timing.l2_bytes_of(device), allocates_outputs=not impl.takes_out,
                                                mode=cfg.timer)
            key = (spec.name, shape.id, impl.name, n_sets, flush)
            call = sets_cache.get(key) if sets_cache is not None else None
            if call is None:
                call = _Timed(spec, impl, shape, device, n_sets, flush)
                if sets_cache is not None:
                    sets_cache[key] = call
            if device.type == "cuda":
                t = timing.time_gpu(call, len(call.sets), flush=call.flush, mode=cfg.timer, device=device,
                                    warm=cfg.cold_l2 == "warm", eager_flush=not impl.takes_out)
            else:
                t = timing.time_cpu(call, len(call.sets))
    except Exception as e:  # noqa: BLE001
        if device.type == "cuda":
            torch.cuda.synchronize()
        return "fail", f"timing raised {type(e).__name__}: {str(e)[:300]}", {}
    finally:
        call = None  # release input sets before the next implementation
    return "ok", "", {"timing": t.to_record()}


def measure_shape(spec: OpSpec, impls: Sequence[Impl], shape: Shape, device, cfg: RunConfig, cost: Cost,
                  progress: Callable[[str], None] | None = None) -> dict[str, tuple]:
    """``{impl.name: (status, reason, facts, wall_s)}`` for the implementations of one shape.

    Three stages: each implementation's availability, support and ``prepare`` (compilation);
    one correctness check of all of them together (each seed's inputs and fp32 reference are
    made once and shared, see :func:`solbench.core.check.check_impls`); then the timing of each
    one that passed. ``facts["phase_s"]`` says where the wall time went."""
    import torch

    out: dict[str, tuple] = {}
    facts: dict[str, dict] = {}
    wall: dict[str, float] = {}
    checkable: list[Impl] = []
    for impl in impls:
        if progress:
            progress(f"{impl.name}: prepare")
        t0 = time.perf_counter()
        status, reason, f = _prepare_impl(spec, impl, shape, device)
        wall[impl.name] = time.perf_counter() - t0
        f["phase_s"] = {"prepare": round(wall[impl.name], 3)}
        facts[impl.name] = f
        if status:
            out[impl.name] = (status, reason, f, wall[impl.name])
        else:
            checkable.append(impl)
    if not checkable:
        return out
    if progress:
        progress("check")
    t0 = time.perf_counter()
    try:
        results = checker.check_impls(spec, checkable, shape, device, seeds=cfg.seeds)
    except Exception as e:  # noqa: BLE001 - inputs/reference/compare failing (e.g. out of memory) is a FAIL, not a crash
        if device.type == "cuda":
            torch.cuda.empty_cache()
        check_s = time.perf_counter() - t0
        for impl in checkable:
            facts[impl.name]["phase_s"]["check"] = round(check_s, 3)
            out[impl.name] = ("fail", f"check raised {type(e).__name__}: {str(e)[:300]}", facts[impl.name],
                              wall[impl.name] + check_s / len(checkable))
        return out
    # The shared check's time is split evenly between the implementations it judged.
    check_s = (time.perf_counter() - t0) / len(checkable)
    for impl in checkable:
        f, r = facts[impl.name], results[impl.name]
        f["check"] = r.to_record()
        f["phase_s"]["check"] = round(check_s, 3)
        wall[impl.name] += check_s
        if not r.ok:
            out[impl.name] = ("fail", r.reason, f, wall[impl.name])
            continue
        if progress:
            progress(f"{impl.name}: time")
        t0 = time.perf_counter()
        status, reason, tf = time_impl(spec, impl, shape, device, cfg, cost)
        dt = time.perf_counter() - t0
        f.update(tf)
        f["phase_s"]["timing"] = round(dt, 3)
        out[impl.name] = (status, reason, f, wall[impl.name] + dt)
    return out


def run(cfg: RunConfig, *, progress: Callable | None = None, on_shape_done: Callable | None = None) -> RunResult:
    import torch

    device = hardware.current_device()
    smoke = cfg.smoke if cfg.smoke is not None else device.type != "cuda"
    datasheet = hardware.get_sku(cfg.hw) if cfg.hw else hardware.datasheet_for_device(device)
    achievable = hardware.achievable_for_device()
    if cfg.cold_l2 not in COLD_L2_MODES:
        raise ValueError(f"cold_l2 must be one of {COLD_L2_MODES}, got {cfg.cold_l2!r}")
    # A forced flush (or a warm L2) is part of the timer's name, so resuming never mixes methods.
    qualifier = {"flush": "+flush", "warm": "+warm"}.get(cfg.cold_l2, "")
    timer_name = cfg.timer + qualifier if device.type == "cuda" else "cpu"
    env = environment(timer_name)
    device_name = hardware.device_name(device)
    res = RunResult(smoke=smoke, device=device_name, hw=datasheet.name, achievable=achievable, datasheet=datasheet)

    if cfg.remeasure_ops:
        _check_remeasure(cfg)
    specs = select_ops(cfg)
    check_selection(specs, cfg, smoke)
    plan = []
    for spec in specs:
        impls = impls_for(spec.name)
        names = [i for i in cfg.impls if i in impls] if cfg.impls else sorted(impls)
        if not names:
            continue
        for shape in select_shapes(spec, cfg, smoke):
            plan.append((spec, shape, [impls[n] for n in names]))
    existing: dict[tuple, dict] = {}
    out_f = ResultsFile(cfg.out) if cfg.out else None
    if out_f:
        # Locked against other runs from here to the end; the tail is repaired before it is read.
        out_f.acquire()
        for note in out_f.notes:
            print(f"solbench: {note}", file=sys.stderr)
    try:
        if cfg.out and Path(cfg.out).exists():
            for r in read_records(cfg.out):
                existing[record_key(r)] = r
            _drop_to_remeasure(cfg.out, existing, failed_too=cfg.retry_failed, ops=set(cfg.remeasure_ops),
                               shapes=cfg.shapes)
        if out_f:
            out_f.open_append()
    except BaseException:
        if out_f:
            out_f.close()
        raise
    total = sum(len(p[2]) for p in plan)
    done = 0
    t_start = time.perf_counter()
    measured_any = False
    try:
        def key_fields(sp: OpSpec, sh: Shape, impl_name: str) -> dict:
            return record.key_fields(sp.name, sh.id, impl_name, hw=datasheet.name, device=device_name,
                                     timer=timer_name, smoke=smoke)

        for idx, (spec, shape, impls) in enumerate(plan):
            base_of = {impl.name: key_fields(spec, shape, impl.name) for impl in impls}
            todo = [impl for impl in impls if record_key(base_of[impl.name]) not in existing]
            # The budget is checked between shapes, and every run measures at least one shape, so a
            # series of budgeted reruns always gets through the plan.
            if (todo and cfg.time_budget_s is not None and measured_any
                    and time.perf_counter() - t_start > cfg.time_budget_s):
                res.unfinished = sum(1 for sp, sh, im in plan[idx:] for i in im
                                     if record_key(key_fields(sp, sh, i.name)) not in existing)
                break
            cost = spec.cost(shape)

            def shape_progress(msg, _spec=spec, _shape=shape, _done=done):
                if progress:
                    progress(_done, total, f"{_spec.name} #{_shape.id} {msg}")

            measured = measure_shape(spec, todo, shape, device, cfg, cost, shape_progress) if todo else {}
            measured_any = measured_any or bool(todo)
            # The clocks the shape ran at (the run's start saw an idle GPU); that one is kept beside.
            clocks = running_clocks(device) if todo else {}
            shape_env = {**env, **clocks, "clock_sm_start_mhz": env.get("clock_sm_mhz")} if clocks else env
            shape_records = []
            for impl in impls:
                base = base_of[impl.name]
                key = record_key(base)
                if key in existing:
                    shape_records.append(existing[key])
                    res.skipped_existing += 1
                    done += 1
                    continue
                status, reason, facts, wall_s = measured[impl.name]
                rec = record.build(
                    base, role=impl.role, spec=spec, shape=shape, cost=cost, datasheet=datasheet,
                    achievable=achievable, status=status, reason=reason, timing=facts.get("timing"),
                    check=facts.get("check"), compile_s=facts.get("compile_s"),
                    impl_facts={k: v for k, v in facts.items() if k not in ("check", "timing", "compile_s")},
                    wall_s=wall_s, env=shape_env, importance=(cfg.weights or {}).get(spec.name, spec.importance))
                shape_records.append(rec)
                done += 1
            if progress:
                progress(done, total, f"{spec.name} #{shape.id} done")
            record.add_speedups(shape_records)
            for rec in shape_records:
                if record_key(rec) in existing:
                    continue
                if out_f:
                    out_f.append(rec)
            res.records.extend(shape_records)
            if on_shape_done:
                on_shape_done(spec, shape, shape_records)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        if out_f:
            out_f.close()
    res.wall_s = time.perf_counter() - t_start
    if progress:
        progress(done, total, "done")
    return res


def iter_ops(records: Iterable[Mapping]) -> list[str]:
    seen = []
    for r in records:
        if r["op"] not in seen:
            seen.append(r["op"])
    return seen
