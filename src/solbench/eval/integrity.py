"""Integrity checks: what stops a candidate from gaming the timer or the checker.

Each check names the trick it defeats:

* :class:`Guard` (timer patching): identities of the timer's clocks and events
  (``time.perf_counter``, ``torch.cuda.Event.elapsed_time``, ``torch.cuda.synchronize``...), of
  every callable in ``torch``, ``torch.Tensor`` and ``torch.cuda``, of every loaded ``solbench``
  function (the checker, the timer, this module) and of the operator spec's methods are taken
  before the candidate is imported and compared after every stage.
* :func:`repeat_audit` (output caching, memoization by pointer, persistent output buffers): the
  candidate is called repeatedly on two input sets with distinct addresses, like a timing loop;
  before one randomly chosen repeat call the set is refilled *in place* with fresh values, and that
  call's outputs must match the reference on the fresh values. Outputs of different calls must
  not share memory.
* :class:`TimedCall` + :func:`graph_audit` (the same, on the timed calls themselves): during the GPU
  timer's graph capture the outputs of every captured call are kept; afterwards one captured call
  is picked at random, its input set refilled in place, its outputs poisoned with NaN, the timed
  graph replayed once, and the outputs compared with the reference on the fresh inputs.
* :func:`side_stream_check` (stream tricks): work launched on a stream the timer's events do not
  see shows up as device-wide wall time far above the event time.
* :func:`speed_flags` (suspicious speed): a time below the achievable SOL is physically impossible
  and is flagged, never scored.

Degenerate (constant, all-zero) and non-dense or subclassed outputs are rejected by the core
checker (``compare_tensor`` and ``plain_tensor_errors``) on every call that is compared here.
"""
from __future__ import annotations

import random
import sys
import time
from typing import Any, Callable, Mapping, Sequence

from solbench.core import check as checker
from solbench.core.spec import OpSpec, Shape

# Named so that a violation reads as what it is; the namespace sweep below covers the rest.
TIMER_NAMES = ("time.perf_counter", "time.perf_counter_ns", "time.time", "time.monotonic",
               "torch.cuda.synchronize", "torch.cuda.Event.elapsed_time", "torch.cuda.Event.record",
               "torch.cuda.Event.synchronize", "torch.cuda.Stream.synchronize", "torch.cuda.CUDAGraph.replay",
               "torch.cuda.graph", "torch.cuda.current_stream", "torch.cuda.is_current_stream_capturing")


def _namespaces(spec: OpSpec | None) -> list[tuple[str, Any]]:
    import torch
    import torch.nn.functional as F

    ns: list[tuple[str, Any]] = [("time", time), ("torch", torch), ("torch.Tensor", torch.Tensor),
                                 ("torch.nn.functional", F), ("torch.cuda", torch.cuda),
                                 ("torch.cuda.Event", torch.cuda.Event), ("torch.cuda.Stream", torch.cuda.Stream),
                                 ("torch.cuda.CUDAGraph", torch.cuda.CUDAGraph)]
    for name, mod in sorted(sys.modules.items()):
        if mod is not None and (name == "solbench" or name.startswith("solbench.")):
            ns.append((name, mod))
    if spec is not None:
        ns.append((f"{type(spec).__module__}.{type(spec).__name__}", type(spec)))
    return ns


def _guarded_items(obj) -> dict[str, Any]:
    try:
        d = vars(obj)
    except TypeError:
        return {}
    return {k: v for k, v in list(d.items()) if callable(v) or isinstance(v, (staticmethod, classmethod, property))}


class Guard:
    """Identity snapshot of everything the evaluator relies on; :meth:`violations` lists what
    changed since (empty when nothing did)."""

    def __init__(self, spec: OpSpec | None = None):
        self.spec = spec
        self._snap: list[tuple[str, Any, dict[str, Any]]] = []
        for label, obj in _namespaces(spec):
            self._snap.append((label, obj, _guarded_items(obj)))
        self._spec_keys = set(vars(spec)) if spec is not None else set()

    def violations(self) -> list[str]:
        out = []
        for label, obj, items in self._snap:
            now = vars(obj) if hasattr(obj, "__dict__") else {}
            for key, val in items.items():
                cur = now.get(key, _MISSING)
                if cur is not val and not _torch_wrapper(f"{label}.{key}", cur, val):
                    out.append(f"{label}.{key} was {'deleted' if cur is _MISSING else 'replaced'}")
        if self.spec is not None:
            added = [k for k in vars(self.spec) if k not in self._spec_keys and hasattr(type(self.spec), k)]
            out += [f"the operator spec's {k}() was overridden on the instance" for k in added]
        # Timer names first: they say what the candidate was after.
        out.sort(key=lambda v: (not any(v.startswith(t + " ") for t in TIMER_NAMES), v))
        return out


_MISSING = object()


def _torch_wrapper(name: str, new, old) -> bool:
    """torch itself re-wraps a few functions when a subsystem loads (importing torch._dynamo wraps
    ``torch.manual_seed``). Such a wrapper is accepted when it wraps the original and its code
    lives inside torch; a timer function is never accepted."""
    if name in TIMER_NAMES:
        return False
    if getattr(new, "__wrapped__", None) is not old:
        return False
    import os

    import torch

    code = getattr(new, "__code__", None)
    root = os.path.dirname(torch.__file__) + os.sep
    return code is not None and os.path.abspath(code.co_filename).startswith(root)


def guard_message(violations: Sequence[str]) -> str:
    shown = "; ".join(violations[:4]) + (f"; and {len(violations) - 4} more" if len(violations) > 4 else "")
    return f"integrity: the candidate patched the evaluator or the timer ({shown})"


# ---- fresh inputs ----------------------------------------------------------------------------------

def tensors_of(obj) -> list:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        return [t for v in obj.values() for t in tensors_of(v)]
    if isinstance(obj, (tuple, list)):
        return [t for v in obj for t in tensors_of(v)]
    return []


def _span(t) -> tuple[int, int]:
    start = t.untyped_storage().data_ptr()
    return start, start + t.untyped_storage().nbytes()


def aliases(t, others) -> bool:
    """Whether ``t`` lives in the storage of one of ``others``."""
    if t.numel() == 0:
        return False
    p = t.data_ptr()
    return any(o.numel() and _span(o)[0] <= p < _span(o)[1] for o in others)


def distinct_addresses(sets: Sequence[Mapping]) -> str | None:
    """The timer's rotating input sets must not share memory (else a rotation is a repeat)."""
    seen: dict[int, int] = {}
    for i, s in enumerate(sets):
        for t in tensors_of(s):
            if t.numel() == 0:
                continue
            p = t.untyped_storage().data_ptr()
            if p in seen and seen[p] != i:
                return f"evaluator error: input sets {seen[p]} and {i} share storage at {p:#x}"
            seen[p] = i
    return None


def refresh_inputs_(spec: OpSpec, shape: Shape, inputs: dict, device, seed: int) -> str | None:
    """Refill ``inputs`` in place (same addresses) with the values of a fresh seed. Returns why
    that is impossible (seed-dependent shapes or non-tensor arguments), else None."""
    import torch

    new = spec.make_inputs(shape, device, seed)
    if set(new) != set(inputs):
        return "input names depend on the seed"
    changed = False
    for k, v in inputs.items():
        n = new[k]
        if isinstance(v, torch.Tensor):
            if not isinstance(n, torch.Tensor) or n.shape != v.shape or n.dtype != v.dtype:
                return f"input {k!r} changes shape with the seed"
            if v.numel() and not torch.equal(v, n):
                changed = True
            v.copy_(n)
        elif n != v:
            return f"non-tensor input {k!r} changes with the seed"
    return None if changed else "no input changes with the seed"


def _call(fn, spec: OpSpec, inputs: Mapping) -> dict:
    return spec.normalize_outputs(fn(**inputs))


def _sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize()


def _judge(spec, shape, snapshot, got, device, what: str) -> list[str]:
    import torch

    with torch.no_grad():
        ref = spec.normalize_outputs(spec.reference(**checker.clone_inputs(snapshot)))
    errors, _ = checker.compare_outputs(spec, shape, snapshot, got, ref, device)
    return [f"{what}: {e}" for e in errors]


def _shared_output_errors(per_call: Sequence[tuple[int, Sequence, Sequence]]) -> list[str]:
    """Outputs of different calls sharing memory: a cached result or a persistent buffer. Outputs
    that live in the call's own inputs (in-place operators) are exempt."""
    owner: dict[int, int] = {}
    for n, outs, ins in per_call:
        for t in outs:
            if t.numel() == 0 or aliases(t, ins):
                continue
            p = t.data_ptr()
            if p in owner and owner[p] != n:
                return [f"output caching: calls {owner[p]} and {n} returned outputs in the same memory "
                        f"({p:#x}); every call must produce its own outputs"]
            owner[p] = n
    return []


def mutates_inputs(fn, spec: OpSpec, shape: Shape, device, seed: int = 4242) -> bool:
    """Whether the candidate writes into its inputs (in-place operators): the graph audit then
    cannot replay several calls on one set, and the eager audit is used instead."""
    import torch

    inputs = spec.make_inputs(shape, device, seed)
    before = checker.clone_inputs(inputs)
    with torch.no_grad():
        fn(**inputs)
    _sync(device)
    return any(isinstance(v, torch.Tensor) and v.numel() and not torch.equal(v, before[k])
               for k, v in inputs.items())


def repeat_audit(fn, spec: OpSpec, shape: Shape, device, rng: random.Random, n_calls: int = 6) -> dict:
    """Call the candidate like a timing loop (two input sets, alternating) and audit one randomly
    chosen repeat call on freshly refilled inputs. Returns ``{"errors": [...], "notes": [...],
    "audited_call": n}``."""
    import torch

    sets = [spec.make_inputs(shape, device, 2000 + i) for i in range(2)]
    notes = []
    err = distinct_addresses(sets)
    if err:
        return {"errors": [err], "notes": notes, "audited_call": None}
    target = rng.randrange(2, n_calls)  # a repeat: that set's addresses were seen before
    per_call, audited = [], None
    with torch.no_grad():
        for n in range(n_calls):
            s = sets[n % 2]
            if n == target:
                why = refresh_inputs_(spec, shape, s, device, 3000 + rng.randrange(1 << 20))
                if why:
                    notes.append(f"fresh-input audit not applicable ({why})")
                snapshot = checker.clone_inputs(s)
                got = _call(fn, spec, s)
                _sync(device)
                audited = (snapshot, got, {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in got.items()})
                per_call.append((n, tensors_of(got), tensors_of(s)))
            else:
                got = _call(fn, spec, s)
                per_call.append((n, tensors_of(got), tensors_of(s)))
        _sync(device)
    errors = _shared_output_errors(per_call)
    snapshot, raw, copy = audited
    # Plainness is judged on what was returned, values on the copy taken right after the call.
    plain = [e for name, t in raw.items() for e in checker.plain_tensor_errors(name, t, device)]
    errors += [f"call {target}: {e}" for e in plain]
    if not plain:
        errors += _judge(spec, shape, snapshot, copy, device, f"fresh-input audit of call {target} (repeat of "
                                                                f"set {target % 2} refilled in place)")
    return {"errors": errors, "notes": notes, "audited_call": target}


class TimedCall:
    """``call(i)`` for the GPU timer: runs the candidate on input set ``i`` and, while a CUDA graph
    is being captured, keeps every call's outputs so that :func:`graph_audit` can check them."""

    def __init__(self, fn, spec: OpSpec, sets: list[dict]):
        import torch

        self.fn, self.spec, self.sets = fn, spec, sets
        self.captured: list[tuple[int, Any]] = []
        self._capturing = torch.cuda.is_current_stream_capturing

    def __call__(self, i: int):
        out = self.fn(**self.sets[i])
        if self._capturing():
            self.captured.append((i, out))
        return out


def graph_audit(tc: TimedCall, spec: OpSpec, shape: Shape, device, rng: random.Random,
                replay: Callable[[], None], k: int) -> dict:
    """Audit one randomly chosen call of the timed graph on freshly refilled inputs (see the
    module docstring). Never raises: errors are returned."""
    import torch

    try:
        captured = tc.captured[-k:]
        if len(captured) != k:
            return {"errors": [], "notes": [f"graph audit skipped: {len(captured)} captured calls, expected {k}"]}
        per_call = [(n, tensors_of(spec.normalize_outputs(out)), tensors_of(tc.sets[i]))
                    for n, (i, out) in enumerate(captured)]
        errors = _shared_output_errors(per_call)
        j = rng.randrange(k)
        i, out = captured[j]
        got = spec.normalize_outputs(out)
        plain = [e for name, t in got.items() for e in checker.plain_tensor_errors(name, t, device)]
        if plain:
            return {"errors": errors + [f"timed call {j}: {e}" for e in plain], "notes": [], "audited_call": j}
        notes = []
        why = refresh_inputs_(spec, shape, tc.sets[i], device, 5000 + rng.randrange(1 << 20))
        if why:
            notes.append(f"fresh-input audit not applicable ({why})")
        snapshot = checker.clone_inputs(tc.sets[i])
        ins = tensors_of(tc.sets[i])
        for t in got.values():
            if not aliases(t, ins):
                checker.poison_(t)
        torch.cuda.synchronize()
        replay()
        torch.cuda.synchronize()
        errors += _judge(spec, shape, snapshot, got, device,
                         f"fresh-input audit of timed call {j} of {k} (set {i} refilled in place, graph replayed)")
        return {"errors": errors, "notes": notes, "audited_call": j}
    except Exception as e:  # noqa: BLE001 - the timer must not see an exception from the hook
        return {"errors": [f"graph audit raised {type(e).__name__}: {str(e)[:300]}"], "notes": []}


def eager_audit(fn, spec: OpSpec, shape: Shape, sets: list[dict], device, rng: random.Random) -> dict:
    """After eager timing: refill one timed input set in place and call the candidate on it once."""
    import torch

    i = rng.randrange(len(sets))
    notes = []
    why = refresh_inputs_(spec, shape, sets[i], device, 7000 + rng.randrange(1 << 20))
    if why:
        notes.append(f"fresh-input audit not applicable ({why})")
    snapshot = checker.clone_inputs(sets[i])
    with torch.no_grad():
        got = _call(fn, spec, sets[i])
    _sync(device)
    plain = [e for name, t in got.items() for e in checker.plain_tensor_errors(name, t, device)]
    if plain:
        return {"errors": plain, "notes": notes}
    return {"errors": _judge(spec, shape, snapshot, got, device, f"fresh-input audit (set {i} refilled in place)"),
            "notes": notes}


def side_stream_check(call: Callable[[int], None], n_sets: int, reps: int = 20,
                      clock: Callable[[], float] = time.perf_counter) -> dict:
    """Work the timer's events miss: device-wide synchronized wall time against event time on the
    current stream. An honest candidate's events span its work (also when it is host-bound: the
    stream idles between launches); unjoined side-stream work only shows up in the wall time."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    t0 = clock()
    start.record()
    for r in range(reps):
        call(r % n_sets)
    end.record()
    torch.cuda.synchronize()  # every stream of the device
    wall_us = (clock() - t0) * 1e6
    event_us = start.elapsed_time(end) * 1e3
    flagged = wall_us > 2 * event_us + 200.0
    return {"wall_us": wall_us, "event_us": event_us, "reps": reps,
            "flag": (f"stream tricks: {reps} calls took {wall_us:.0f} us device-wide but {event_us:.0f} us on the "
                     "timed stream; work runs on a stream the caller's stream does not wait for") if flagged else None}


#: How far below the achievable SOL a time may fall before it is called impossible. The calibrated
#: copy bandwidth is itself a measurement (of torch's elementwise copy), and a good kernel beats it
#: by a few percent on the largest shapes: the H200's exported silu kernel measured S = 1.01-1.02
#: on shapes #7/#8. Cheats (cached outputs, skipped work) are off by far more than this margin,
#: and nothing may beat the datasheet SOL at all.
ACHIEVABLE_MARGIN = 0.05


def speed_flags(time_us: float | None, sol_achievable_us: float | None, sol_us: float | None) -> list[str]:
    """A measured time below the datasheet SOL, or more than :data:`ACHIEVABLE_MARGIN` below the
    achievable SOL (calibrated ceilings), cannot be honest."""
    if time_us is None or time_us <= 0:
        return []
    flags = []
    if sol_us and time_us < sol_us:
        flags.append(f"suspicious speed: {time_us:.3g} us is below the datasheet SOL {sol_us:.3g} us; not scored")
    elif sol_achievable_us and time_us < sol_achievable_us * (1.0 - ACHIEVABLE_MARGIN):
        flags.append(f"suspicious speed: {time_us:.3g} us is more than {ACHIEVABLE_MARGIN:.0%} below the achievable "
                     f"SOL {sol_achievable_us:.3g} us (S = {sol_achievable_us / time_us:.2f}); not scored")
    return flags
