"""``solbench eval``: one candidate file against one operator, shape by shape.

The candidate runs in a worker subprocess (:mod:`solbench.eval.worker`) that only produces
outputs; this process is the judge (:mod:`solbench.eval.judge`): it never imports the candidate,
builds inputs and references itself, and alone writes records. The candidate file is copied into
a scratch folder and hashed before anything runs; baselines are measured before the worker starts.

Per shape the verdict is one of

* ``pass``: correct on every seed and in the fresh-input audits (and, on a GPU, timed);
* ``fail``: wrong, crashed, hung, over the memory cap, or caught patching the evaluator;
* ``flagged``: correct, but the timing cannot be trusted (time below the achievable SOL, or work
  on a stream the timer does not see). Never scored.

Records have the ``run`` schema (:mod:`solbench.core.record`, so ``report`` and ``compare`` read
them), with ``role`` ``candidate`` and ``status`` ``ok`` only for ``pass``, plus the fields
``verdict``, ``flags``, ``integrity``, ``edge``, ``candidate``. Without a GPU there is no timing at
all: ``time_us`` is None and ``perf`` says "not measured: no GPU"; no speedup is computed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from solbench.core import check as checker
from solbench.core import hardware, record, roofline
from solbench.core.env import environment
from solbench.core.spec import OpSpec, Shape, get_spec, impls_for
from solbench.eval import contain, integrity
from solbench.eval.edge import edge_shapes
from solbench.eval.judge import CandidateRaised, Judge, Verdict
from solbench.eval.sandbox import Worker, WorkerGone, survivors_message

NO_GPU = "not measured: no GPU"


@dataclass
class EvalConfig:
    candidate: str
    op: str
    shapes: Sequence[str] | None = None          # shape ids (catalog, smoke or edge-N)
    out: str | None = None
    name: str = "candidate"                      # the record's ``impl``
    seeds: Sequence[int] = checker.DEFAULT_SEEDS
    timeouts: Mapping[str, float] | None = None
    mem_cap_gb: float | None = None              # host memory the candidate may use; None: default
    gpu_mem_fraction: float = 0.8
    baselines: Sequence[str] | None = None       # impl names to time beside it; None: every available one
    baselines_from: str | None = None            # a `run` JSONL to reuse (and extend) baseline records from
    # How the baselines start cold: "auto" (`run`'s rule, the one the candidate is timed with: under
    # graph timing every implementation's outputs rotate with its inputs where the sets fit, the
    # rest are flushed) or "flush" (every baseline behind an L2 flush).
    baselines_cold_l2: str = "auto"
    timer: str = "graph"
    edge: bool = True
    hw: str | None = None
    smoke: bool | None = None                    # None: smoke shapes exactly when there is no GPU
    audit_seed: int | None = None                # ignored: audit choices are drawn with `secrets`
    # Run the timing protocol on CPU too (tests of the judge's timing checks): the result goes into
    # `integrity.timing_check`, never into `time_us`: a CPU time is not a figure.
    time_on_cpu: bool = False


@dataclass
class EvalResult:
    records: list[dict] = field(default_factory=list)      # the candidate's
    baseline_records: list[dict] = field(default_factory=list)
    gpu: bool = False
    device: str = ""
    hw: str = ""
    import_info: dict | None = None
    workers: int = 0
    confinement: str = ""
    namespace: bool = False


def default_mem_cap_bytes() -> int:
    """Half the machine's memory, at most 32 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 << 30
    return int(min(total // 2, 32 << 30))


def select_shapes(spec: OpSpec, cfg: EvalConfig, gpu: bool) -> tuple[list[Shape], list[Shape]]:
    """(shapes to check and, on a GPU, time; edge shapes to check only)."""
    smoke = cfg.smoke if cfg.smoke is not None else not gpu
    edges = edge_shapes(spec) if cfg.edge else []
    if cfg.shapes:
        wanted = [str(s) for s in cfg.shapes]
        pool = {str(s.id): s for s in list(spec.shapes) + list(spec.smoke_shapes())}
        edge_pool = {str(s.id): s for s in edges}
        unknown = [w for w in wanted if w not in pool and w not in edge_pool]
        if unknown:
            raise ValueError(f"{spec.name}: unknown shape ids {unknown}; catalog ids are "
                             f"{', '.join(str(s.id) for s in spec.shapes)}; edge ids {', '.join(edge_pool) or 'none'}")
        return [pool[w] for w in wanted if w in pool], [edge_pool[w] for w in wanted if w in edge_pool]
    return (list(spec.smoke_shapes()) if smoke else list(spec.shapes)), edges


def measure_baselines(spec: OpSpec, shapes: Sequence[Shape], cfg: EvalConfig, progress=None) -> list[dict]:
    """Time the in-library implementations on the same shapes with the ``run`` machinery (reusing
    records already in ``cfg.baselines_from``)."""
    from solbench.runner import RunConfig, run

    if not shapes:
        return []
    available = [n for n, i in impls_for(spec.name).items() if i.available()]
    names = [n for n in (cfg.baselines if cfg.baselines is not None else available) if n in available]
    if not names:
        return []
    rc = RunConfig(ops=[spec.name], impls=names, shapes=[str(s.id) for s in shapes], hw=cfg.hw, timer=cfg.timer,
                   out=cfg.baselines_from, smoke=cfg.smoke if cfg.smoke is not None else False,
                   seeds=cfg.seeds, include_variants=True, cold_l2=cfg.baselines_cold_l2)
    return run(rc, progress=(lambda d, t, m: progress(f"baseline {m}")) if progress else None).records


@dataclass
class ShapeOutcome:
    check: Verdict | None = None
    perf: Verdict | None = None
    fail: str | None = None      # crash / timeout / memory cap / import failure / protocol
    stage: str | None = None


def worker_env(scratch: str, gpu: bool) -> dict:
    """The worker's environment: caches and temporary files inside the scratch folder (the only
    place it may write), no compile-worker pools that would outlive a call."""
    env = os.environ.copy()
    for key, sub in (("TMPDIR", "tmp"), ("TRITON_CACHE_DIR", "triton"), ("TORCHINDUCTOR_CACHE_DIR", "inductor"),
                     ("CUDA_CACHE_PATH", "nv"), ("XDG_CACHE_HOME", "cache")):
        path = os.path.join(scratch, sub)
        os.makedirs(path, exist_ok=True)
        env[key] = path
    env["TORCHINDUCTOR_COMPILE_THREADS"] = "1"
    if not gpu:
        env["TRITON_INTERPRET"] = "1"
    return env


def start_worker(start: dict, scratch: str, env: dict, timeouts: dict, rss_cap: int) -> Worker:
    """A worker, in a PID namespace where one can be made. A worker that dies before it is ready
    (before any candidate code) inside a namespace is the system's doing (a driver that refuses
    it): later workers start without one, and the records say so."""
    try:
        return Worker(start, scratch, env, timeouts, rss_cap)
    except WorkerGone:
        if not contain.namespace_prefix():
            raise
        contain.disable_namespace()
        return Worker(start, scratch, env, timeouts, rss_cap)


def judge_candidate(spec: OpSpec, device, cfg: EvalConfig, items: list[tuple[Shape, bool]], copy: str,
                    original_dir: str, scratch: str, progress=None) -> tuple[dict, dict]:
    """Run the judge over ``items`` (shape, timed), starting a fresh worker after any that ends.
    Returns (outcomes by shape id, facts: import info, workers, confinement, survivors)."""
    gpu = device.type == "cuda"
    judge = Judge(spec, device, cfg.timer)
    timeouts = {**(cfg.timeouts or {})}
    cap = int(cfg.mem_cap_gb * 2**30) if cfg.mem_cap_gb else default_mem_cap_bytes()
    start = {"device": device.type, "mem_cap_bytes": cap, "gpu_mem_fraction": cfg.gpu_mem_fraction if gpu else None,
             "triton_interpret": not gpu, "scratch": scratch}
    env = worker_env(scratch, gpu)
    facts: dict = {"import_info": None, "workers": 0, "confinement": "", "namespace": False, "survivors": []}
    outcomes: dict[str, ShapeOutcome] = {}
    worker: Worker | None = None
    served: list[str] = []          # shapes the current worker judged (a survivor fails them)
    failed_import: str | None = None

    def retire():
        nonlocal worker, served
        if worker is not None:
            found = worker.close()
            if found:
                facts["survivors"] += found
                for sid in served:
                    outcomes[sid].fail = survivors_message(found) + (f"; {outcomes[sid].fail}"
                                                                     if outcomes[sid].fail else "")
        worker, served = None, []

    for shape, timed in items:
        sid = str(shape.id)
        o = outcomes[sid] = ShapeOutcome()
        if failed_import:
            o.fail, o.stage = failed_import, "import"
            continue
        try:
            if worker is None or worker.ended:
                retire()
                facts["workers"] += 1
                worker = start_worker(start, scratch, env, timeouts, rss_cap=cap + (4 << 30))
                facts["confinement"] = worker.ready.get("confinement", "")
                facts["namespace"] = worker.namespace
                imp, _ = worker.request({"cmd": "import", "path": copy, "op": spec.name, "extra_path": original_dir},
                                        stage="import", max_bytes=0)
                facts["import_info"] = {**imp, "memory_cap": worker.ready.get("memory_cap")}
                if not imp.get("ok"):
                    failed_import = f"import failed: {imp.get('error')}"
                    o.fail, o.stage = failed_import, "import"
                    continue
            served.append(sid)
            try:
                o.check = judge.check(worker, shape)
            except CandidateRaised as e:
                o.check = Verdict(ok=False, errors=[f"raised {e}"])
            if progress:
                progress(f"check shape {sid}: {'ok' if o.check.ok else 'FAIL'}")
            if o.check.ok and timed:
                try:
                    o.perf = judge.time(worker, shape)
                except CandidateRaised as e:
                    o.perf = Verdict(ok=False, errors=[f"timing raised {e}"])
                if progress:
                    progress(f"perf shape {sid}: {'ok' if o.perf.ok else 'FAIL'}")
        except WorkerGone as e:
            tail = e.stderr.splitlines()[-6:]
            o.fail = e.detail + (f" | stderr: {' / '.join(tail)[-600:]}" if tail and e.kind == "crash" else "")
            o.stage = worker.stage if worker is not None else "start"
            if o.stage in ("import", "start"):  # no worker got as far as the candidate's function
                failed_import = o.fail
        if gpu:
            import torch

            torch.cuda.empty_cache()  # the judge's inputs and references of this shape
    retire()
    return outcomes, facts


def _verdict(outcome: ShapeOutcome, gpu: bool, timed: bool) -> tuple[str, str, list[str], dict]:
    """(verdict, reason, flags, facts) of one shape from the judge's outcome."""
    facts: dict = {}
    chk = outcome.check
    if chk is not None:
        facts["check"] = chk.facts.get("check")
        facts["audit"] = chk.facts.get("audit")
    perf = outcome.perf
    if perf is not None:
        facts["perf_audit"] = perf.facts.get("audits")
        facts["windows"] = perf.facts.get("windows")
        facts["stream"] = perf.facts.get("stream")
        facts["timing"] = perf.facts.get("timing")
    if outcome.fail:
        return "fail", f"{outcome.stage}: {outcome.fail}" if outcome.stage else outcome.fail, [], facts
    if chk is None or not chk.ok:
        return "fail", (chk.reason if chk else "") or "check failed", [], facts
    if perf is None:
        return "pass", "", [], facts
    if not perf.ok:
        return "fail", perf.reason or "timing failed", [], facts
    flags = list(perf.facts.get("flags") or [])
    return ("flagged" if flags else "pass"), "; ".join(flags), flags, facts


def evaluate(cfg: EvalConfig, progress: Callable[[str], None] | None = None) -> EvalResult:
    device = hardware.current_device()
    gpu = device.type == "cuda"
    spec = get_spec(cfg.op)
    shapes, edges = select_shapes(spec, cfg, gpu)
    if not shapes and not edges:
        raise ValueError(f"{spec.name}: no shapes selected")
    datasheet = hardware.get_sku(cfg.hw) if cfg.hw else hardware.datasheet_for_device(device)
    achievable = hardware.achievable_for_device()
    timer_name = cfg.timer if gpu else "cpu"
    env = environment(timer_name)
    dev_name = hardware.device_name(device)
    smoke = cfg.smoke if cfg.smoke is not None else not gpu
    cand_path = str(Path(cfg.candidate).resolve())
    if not Path(cand_path).is_file():
        raise FileNotFoundError(f"candidate file {cfg.candidate} does not exist")

    # The file that runs is a copy, hashed before anything runs: a candidate that rewrites itself
    # (or its original) afterwards cannot change what was recorded.
    scratch = tempfile.mkdtemp(prefix="solbench-eval-")
    try:
        data = Path(cand_path).read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        os.makedirs(os.path.join(scratch, "candidate"))
        copy = os.path.join(scratch, "candidate", Path(cand_path).name)
        with open(copy, "wb") as f:
            f.write(data)
        result = EvalResult(gpu=gpu, device=dev_name, hw=datasheet.name)
        # Baselines (and --baselines-from) are read and measured before any candidate code runs.
        if gpu:
            import torch

            result.baseline_records = measure_baselines(spec, shapes, cfg, progress)
            torch.cuda.empty_cache()  # the worker gets the memory the baselines held
        items = [(s, gpu or cfg.time_on_cpu) for s in shapes] + [(s, False) for s in edges]
        t0 = time.perf_counter()
        outcomes, facts = judge_candidate(spec, device, cfg, items, copy, str(Path(cand_path).parent), scratch,
                                          progress)
        wall = time.perf_counter() - t0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result.import_info, result.workers = facts["import_info"], facts["workers"]
    result.confinement, result.namespace = facts["confinement"], facts["namespace"]

    for shape, is_edge in [(s, False) for s in shapes] + [(s, True) for s in edges]:
        outcome = outcomes[str(shape.id)]
        verdict, reason, flags, facts_ = _verdict(outcome, gpu, not is_edge)
        timing_check = None
        if not gpu and facts_.get("timing"):
            timing_check, facts_["timing"] = facts_["timing"], None  # a CPU time is not a figure
        cost = spec.cost(shape)
        rl_ds, rl_ach = roofline.roofline(cost, datasheet), roofline.roofline(cost, achievable)
        t = facts_.get("timing") or {}
        measured = t.get("median_us") if verdict != "fail" else None
        if measured is not None:
            flags += integrity.speed_flags(measured, rl_ach.sol_us, rl_ds.sol_us)
            if flags:
                verdict, reason = "flagged", "; ".join(flags)
        if verdict == "pass" and not gpu:
            reason = "correct"
        elif verdict == "pass" and is_edge:
            reason = "correct (edge case: checked, not timed)"
        key = record.key_fields(spec.name, shape.id, cfg.name, hw=datasheet.name, device=dev_name, timer=timer_name,
                                smoke=bool(smoke or is_edge))
        rec = record.build(
            key, role="candidate", spec=spec, shape=shape, cost=cost, datasheet=datasheet, achievable=achievable,
            status="ok" if verdict == "pass" else "fail", reason=reason, timing=t, check=facts_.get("check"),
            compile_s=(result.import_info or {}).get("import_s"),
            impl_facts={"candidate": cand_path, "resolved": (result.import_info or {}).get("desc"),
                        "memory_cap": (result.import_info or {}).get("memory_cap")},
            wall_s=wall, env=env)
        rec.update({
            # eval-only fields
            "verdict": verdict, "flags": flags, "edge": is_edge,
            "kind": "edge" if is_edge else ("reduced" if shape.smoke else "catalog"), "measured_time_us": measured,
            "perf": (NO_GPU if not gpu else ("not timed: edge case" if is_edge else
                                              ("timed" if measured is not None else "not timed: failed earlier"))),
            "integrity": {"audit": facts_.get("audit"), "perf_audit": facts_.get("perf_audit"),
                          "windows": facts_.get("windows"), "stream": facts_.get("stream"),
                          "timing_check": timing_check, "confinement": facts["confinement"],
                          "pid_namespace": facts["namespace"], "survivors": facts["survivors"]},
            "candidate": {"path": cand_path, "sha256": sha, "name": cfg.name},
        })
        rec["speedup"] = record.candidate_speedups(rec, result.baseline_records) if gpu else {}
        result.records.append(rec)
    if cfg.out:
        write_records(cfg.out, result.records + ([] if cfg.baselines_from and
                                                  Path(cfg.baselines_from).resolve() == Path(cfg.out).resolve()
                                                  else result.baseline_records))
    return result


def write_records(path: str, records: Sequence[Mapping]) -> None:
    from solbench.runner import _json_safe

    with open(path, "a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(_json_safe(r)) + "\n")
