"""``solbench eval``: one candidate file against one operator, shape by shape, in a subprocess.

Per shape the verdict is one of

* ``pass``: correct on every seed and in the fresh-input audits (and, on a GPU, timed);
* ``fail``: wrong, crashed, hung, over the memory cap, or caught patching the evaluator;
* ``flagged``: correct, but the timing cannot be trusted (time below the achievable SOL, or work
  on a stream the timer does not see). Never scored.

Records have the ``run`` schema (so ``report`` and ``compare`` read them), with ``status`` ``ok``
only for ``pass``, plus the fields ``verdict``, ``flags``, ``integrity``, ``edge``,
``candidate``. Without a GPU there is no timing at all: ``time_us`` is None and ``perf`` says
"not measured: no GPU"; no speedup is computed.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from solbench.core import check as checker
from solbench.core import hardware, roofline
from solbench.core.env import environment
from solbench.core.spec import OpSpec, Shape, get_spec, impls_for
from solbench.eval import integrity, sandbox
from solbench.eval.edge import edge_shapes

NO_GPU = "not measured: no GPU"
SCHEMA_VERSION = 1


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
    audit_seed: int | None = None


@dataclass
class EvalResult:
    records: list[dict] = field(default_factory=list)      # the candidate's
    baseline_records: list[dict] = field(default_factory=list)
    gpu: bool = False
    device: str = ""
    hw: str = ""
    import_info: dict | None = None
    workers: int = 0


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


def _payload(shape: Shape, timed: bool, edge: bool) -> dict:
    return {"id": str(shape.id), "params": dict(shape.params), "smoke": shape.smoke, "timed": timed, "edge": edge}


def _sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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


def _speedups(rec: dict, baselines: Sequence[Mapping]) -> dict:
    """The candidate against every baseline timed on its shape (``vs_<impl>``: the baseline's time
    over the candidate's), the best in-library implementation (ours included) and the best peer
    (``run``'s meaning: third party and torch, not ours)."""
    t = rec.get("time_us")
    if not t:
        return {}
    times = {b["impl"]: b["time_us"] for b in baselines
             if b.get("status") == "ok" and b.get("time_us") and str(b["shape_id"]) == str(rec["shape_id"])}
    sp = {f"vs_{n}": times[n] / t for n in sorted(times)}
    if times:
        best = min(times, key=times.get)
        sp["vs_best_library"] = times[best] / t
        sp["best_library_impl"] = best
    peers = [v for n, v in times.items() if not n.startswith("ours")]
    if peers:
        sp["vs_best_peer"] = min(peers) / t
    return sp


def _verdict(outcome: sandbox.ShapeOutcome, gpu: bool, timed: bool) -> tuple[str, str, list[str], dict]:
    """(verdict, reason, flags, facts) of one shape from what the worker reported."""
    facts: dict = {}
    if outcome.fail:
        return "fail", f"{outcome.stage}: {outcome.fail}" if outcome.stage else outcome.fail, [], facts
    chk = outcome.check or {}
    facts["check"] = chk.get("check")
    facts["audit"] = chk.get("audit")
    if not chk.get("ok"):
        return "fail", chk.get("reason") or "check failed", [], facts
    if not (gpu and timed):
        return "pass", "", [], facts
    perf = outcome.perf or {}
    facts["timing"] = perf.get("timing")
    facts["perf_audit"] = perf.get("audit")
    facts["stream"] = perf.get("stream")
    if not perf.get("ok"):
        return "fail", perf.get("reason") or "timing failed", [], facts
    flags = list(perf.get("flags") or [])
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

    payload = [_payload(s, timed=gpu, edge=False) for s in shapes] + [_payload(s, timed=False, edge=True) for s in edges]
    request = {"candidate": cand_path, "op": spec.name, "device": device.type, "name": cfg.name,
               "seeds": list(cfg.seeds), "timer": cfg.timer,
               "mem_cap_bytes": int(cfg.mem_cap_gb * 2**30) if cfg.mem_cap_gb else default_mem_cap_bytes(),
               "gpu_mem_fraction": cfg.gpu_mem_fraction if gpu else None,
               "triton_interpret": not gpu,
               "audit_seed": cfg.audit_seed if cfg.audit_seed is not None else int.from_bytes(os.urandom(4), "little")}
    rss_cap = request["mem_cap_bytes"] + (4 << 30)  # the worker's own torch/solbench footprint on top
    env_vars = os.environ.copy()
    if not gpu:
        env_vars["TRITON_INTERPRET"] = "1"
    t0 = time.perf_counter()
    sb = sandbox.run_candidate(request, payload, cfg.timeouts, rss_cap, progress, env_vars)
    wall = time.perf_counter() - t0

    result = EvalResult(gpu=gpu, device=dev_name, hw=datasheet.name, import_info=sb.import_info, workers=sb.workers)
    if gpu:
        result.baseline_records = measure_baselines(spec, shapes, cfg, progress)

    sha = _sha256(cand_path)
    for shape, is_edge in [(s, False) for s in shapes] + [(s, True) for s in edges]:
        outcome = sb.outcomes[str(shape.id)]
        verdict, reason, flags, facts = _verdict(outcome, gpu, not is_edge)
        if sb.foreign_lines:
            verdict, reason = "fail", (f"integrity: {sb.foreign_lines} forged lines on the evaluator's channel; "
                                       + reason).rstrip("; ")
        cost = spec.cost(shape)
        rl_ds, rl_ach = roofline.roofline(cost, datasheet), roofline.roofline(cost, achievable)
        t = facts.get("timing") or {}
        measured = t.get("median_us") if verdict != "fail" else None
        if measured is not None:
            flags += integrity.speed_flags(measured, rl_ach.sol_us, rl_ds.sol_us)
            if flags:
                verdict, reason = "flagged", "; ".join(flags)
        time_us = measured if verdict == "pass" else None
        if verdict == "pass" and not gpu:
            reason = "correct"
        elif verdict == "pass" and is_edge:
            reason = "correct (edge case: checked, not timed)"
        rec = {
            "schema": SCHEMA_VERSION, "op": spec.name, "shape_id": shape.id, "impl": cfg.name, "hw": datasheet.name,
            "device": dev_name, "timer": timer_name, "smoke": bool(smoke or is_edge),
            "status": "ok" if verdict == "pass" else "fail", "reason": reason,
            "time_us": time_us, "p20_us": t.get("p20_us") if time_us else None,
            "p80_us": t.get("p80_us") if time_us else None,
            "sol_us": rl_ds.sol_us, "sol_achievable_us": rl_ach.sol_us,
            "s": roofline.speed_of_light_fraction(rl_ds.sol_us, time_us),
            "s_achievable": roofline.speed_of_light_fraction(rl_ach.sol_us, time_us),
            "launch_floor_us": achievable.launch_floor_us, "ai": rl_ds.ai, "regime": rl_ds.regime,
            "bound": rl_ds.bound, "cost": cost.to_record(), "tolerance": spec.tolerance(shape).to_record(),
            "dtype": spec.dtype, "importance": spec.importance, "weight": shape.weight,
            "description": shape.description, "params": dict(shape.params), "provenance": dict(shape.provenance),
            "check": facts.get("check"), "timing": t or None,
            "compile_s": (sb.import_info or {}).get("import_s"),
            "impl_facts": {"candidate": cand_path, "resolved": (sb.import_info or {}).get("desc"),
                           "memory_cap": (sb.import_info or {}).get("memory_cap")},
            "peaks": {"datasheet": {"bandwidth": datasheet.bandwidth, "peaks": dict(datasheet.peaks)},
                      "achievable": {"bandwidth": achievable.bandwidth, "peaks": dict(achievable.peaks),
                                     "source": achievable.source}},
            "wall_s": round(wall, 3), "env": env,
            # eval-only fields
            "verdict": verdict, "flags": flags, "edge": is_edge,
            "kind": "edge" if is_edge else ("reduced" if shape.smoke else "catalog"), "measured_time_us": measured,
            "perf": (NO_GPU if not gpu else ("not timed: edge case" if is_edge else
                                              ("timed" if measured is not None else "not timed: failed earlier"))),
            "integrity": {"audit": facts.get("audit"), "perf_audit": facts.get("perf_audit"),
                          "stream": facts.get("stream"), "foreign_lines": sb.foreign_lines},
            "candidate": {"path": cand_path, "sha256": sha, "name": cfg.name},
        }
        rec["speedup"] = _speedups(rec, result.baseline_records) if gpu else {}
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
