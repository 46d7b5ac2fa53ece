"""The subprocess that imports and runs one candidate: ``python -m solbench.eval.worker``.

It reads one JSON request line on stdin (candidate path, operator, shapes, device, seeds, memory
cap, and a nonce) and answers with JSON lines on a private copy of its original stdout; file
descriptor 1 is pointed at stderr before the candidate is imported, so the candidate's prints
cannot reach the protocol, and every message carries the nonce, which the parent checks. Before
each stage it announces ``{"ev": "begin", "stage": ..., "shape": ...}`` so the parent knows which
stage's timeout applies and whom to blame for a crash.

Stages: ``import`` (once), then per shape ``check`` (core checker over several seeds with poisoned
outputs, then the repeat-call fresh-input audit) and, on a GPU and for timed shapes, ``perf``
(core timer under graph replay with rotating inputs of distinct addresses, the graph audit of a
random timed call, the side-stream check). The identity guard runs after every stage.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
import traceback

# Bound before the candidate exists; the guard checks that the module attribute is still this.
_clock = time.perf_counter

EXIT_CONTEXT_LOST = 3  # a CUDA error poisoned the context: the parent restarts a fresh worker


def _vm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def apply_memory_cap(device, cap_bytes: int | None, gpu_fraction: float | None) -> str:
    """CPU: RLIMIT_AS = the address space in use now + ``cap_bytes`` (an allocation past it raises
    MemoryError in the candidate). CUDA: RLIMIT_AS would break the driver (it reserves huge virtual
    ranges), so device memory is capped with ``set_per_process_memory_fraction`` and host memory
    is watched by the parent (resident set size)."""
    if device.type == "cuda":
        import torch

        if gpu_fraction:
            # The current device (an index-less torch.device is refused here).
            torch.cuda.set_per_process_memory_fraction(float(gpu_fraction))
            return f"GPU memory fraction {gpu_fraction:g}; host RSS watched by the parent"
        return "host RSS watched by the parent"
    if cap_bytes:
        import resource

        vm = _vm_bytes()
        if vm is not None:
            limit = vm + int(cap_bytes)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            return f"RLIMIT_AS {limit / 2**30:.1f} GiB ({cap_bytes / 2**30:.1f} GiB over the evaluator's own)"
    return "none"


def _is_cuda_error(e: BaseException) -> bool:
    text = f"{type(e).__name__}: {e}"
    return "CUDA error" in text or "AcceleratorError" in text or "device-side assert" in text \
        or "illegal memory access" in text


def _load_spec(op: str):
    import importlib

    from solbench.core import spec as core_spec

    # Import only the operator's package (all of them take seconds); variants live in a sibling's.
    if op not in core_spec._SPECS:
        try:
            importlib.import_module(f"solbench.ops.{op}")
        except ModuleNotFoundError:
            pass
    if op in core_spec._SPECS:
        return core_spec._SPECS[op]
    return core_spec.get_spec(op)


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:400]}"


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    req = json.loads(sys.stdin.readline())
    nonce = req.pop("nonce")

    def send(**msg):
        proto.write(json.dumps({"nonce": nonce, **msg}) + "\n")
        proto.flush()

    if req.get("triton_interpret"):
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    from solbench.core import check as checker
    from solbench.core import timing
    from solbench.core.spec import Impl, Shape
    from solbench.eval import candidate as cand
    from solbench.eval import integrity

    device = torch.device(req["device"])
    if device.type == "cuda":
        torch.cuda.init()
    spec = _load_spec(req["op"])
    cap_note = apply_memory_cap(device, req.get("mem_cap_bytes"), req.get("gpu_mem_fraction"))
    rng = random.Random(req.get("audit_seed"))
    seeds = tuple(req.get("seeds") or checker.DEFAULT_SEEDS)
    guard = integrity.Guard(spec)

    send(ev="begin", stage="import", shape=None)
    t0 = _clock()
    try:
        mod = cand.import_file(req["candidate"])
        fn, desc = cand.resolve(mod, spec.name, device)
    except BaseException as e:  # noqa: BLE001 - SystemExit from a candidate is its import failure
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        send(ev="import", ok=False, error=_err(e), traceback="".join(tb[-6:])[-2000:])
        return 0
    import_s = _clock() - t0
    violations = guard.violations()
    send(ev="import", ok=True, desc=desc, import_s=round(import_s, 3), memory_cap=cap_note,
         guard=integrity.guard_message(violations) if violations else None)

    impl = Impl(spec.name, req.get("name", "candidate"), fn)
    for sh in req["shapes"]:
        shape = Shape(op=spec.name, id=sh["id"], params=sh["params"], smoke=bool(sh.get("smoke")))
        sid = sh["id"]
        send(ev="begin", stage="check", shape=sid)
        res: dict = {"ok": False}
        try:
            first = shape_inputs_names(spec, shape, device)
            sig = cand.check_signature(fn, first)
            if sig:
                res["reason"] = f"interface: {sig}"
            else:
                r = checker.check_impl(spec, impl, shape, device, seeds=seeds)
                res["check"] = r.to_record()
                if not r.ok:
                    res["reason"] = r.reason
                else:
                    audit = integrity.repeat_audit(fn, spec, shape, device, rng)
                    res["audit"] = {"errors": audit["errors"], "notes": audit["notes"],
                                    "audited_call": audit.get("audited_call")}
                    res["ok"] = not audit["errors"]
                    if audit["errors"]:
                        res["reason"] = "; ".join(audit["errors"][:3])
        except BaseException as e:  # noqa: BLE001
            res = {"ok": False, "reason": f"raised {_err(e)}"}
            if _is_cuda_error(e):
                send(ev="check", shape=sid, **res, fatal=True)
                return EXIT_CONTEXT_LOST
        violations = guard.violations()
        if violations:
            res.update(ok=False, reason=integrity.guard_message(violations), integrity=True)
        send(ev="check", shape=sid, **res)
        if not (res["ok"] and sh.get("timed") and device.type == "cuda"):
            continue
        send(ev="begin", stage="perf", shape=sid)
        try:
            perf = _perf(spec, shape, fn, device, rng, req.get("timer", "graph"), timing, integrity)
        except BaseException as e:  # noqa: BLE001
            perf = {"ok": False, "reason": f"timing raised {_err(e)}"}
            if _is_cuda_error(e):
                send(ev="perf", shape=sid, **perf, fatal=True)
                return EXIT_CONTEXT_LOST
        violations = guard.violations()
        if violations:
            perf.update(ok=False, reason=integrity.guard_message(violations), integrity=True)
        send(ev="perf", shape=sid, **perf)
        torch.cuda.empty_cache()
    send(ev="done")
    return 0


def shape_inputs_names(spec, shape, device) -> list[str]:
    return list(spec.make_inputs(shape, device, 0))


def _perf(spec, shape, fn, device, rng, timer_mode, timing, integrity) -> dict:
    import torch

    # A candidate allocates its own outputs (TimedCall returns them, so the graph keeps one per call).
    n_sets, flush = timing.plan_for(spec.cost(shape), timing.l2_bytes_of(device), allocates_outputs=True,
                                    mode=timer_mode)
    in_place = integrity.mutates_inputs(fn, spec, shape, device)
    sets, flush = timing.input_sets(n_sets, flush, lambda i: spec.make_inputs(shape, device, 1000 + i))
    n_sets = len(sets)
    err = integrity.distinct_addresses(sets)
    if err:
        return {"ok": False, "reason": err}
    tc = integrity.TimedCall(fn, spec, sets)
    audits: list[dict] = []

    def on_graph(replay, k):
        if in_place:
            audits.append({"errors": [], "notes": ["the candidate writes into its inputs: graph audit replaced by "
                                                   "the eager fresh-input audit"]})
            return
        audits.append(integrity.graph_audit(tc, spec, shape, device, rng, replay, k))

    with torch.no_grad():
        # Eager timing (asked for, or the fallback when capture fails, as it does for work on a stream
        # the capture never joins) waits for the whole device, so side-stream work is timed too.
        t = timing.time_gpu(tc, n_sets, flush=flush, mode=timer_mode, device=device, on_graph=on_graph,
                            eager="device_sync", clock=_clock, eager_flush=True)
        tc.captured.clear()
        if t.mode != "graph" or in_place:
            audits.append(integrity.eager_audit(fn, spec, shape, sets, device, rng))
        stream = integrity.side_stream_check(tc, n_sets, clock=_clock)
    errors = [e for a in audits for e in a["errors"]]
    notes = [n for a in audits for n in a.get("notes", [])]
    flags = [stream["flag"]] if stream["flag"] else []
    if any("unjoined" in n for n in t.notes):
        # CUDA refuses to end a capture while a forked stream has work the capturing stream never
        # waited for: the caller could read the outputs before they are written.
        flags.append("stream tricks: graph capture found work on a stream the caller's stream never waits "
                     "for (capturing stream has unjoined work); outputs may be read before they are written")
    out = {"ok": not errors, "timing": t.to_record(), "audit": {"errors": errors, "notes": notes,
                                                                "audited_call": [a.get("audited_call") for a in audits]},
           "stream": stream, "flags": flags}
    if errors:
        out["reason"] = "; ".join(errors[:3])
    return out


if __name__ == "__main__":
    sys.exit(main())
