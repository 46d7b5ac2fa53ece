"""The judge: everything that decides a verdict, in a process that never imports the candidate.

The judge draws its seeds and audit choices with :mod:`secrets`, builds every input and the fp32
reference itself, and sends the worker (:mod:`solbench.eval.worker`) only input bytes. It gets
back output bytes (dtype, shape, strides), rebuilds plain tensors and compares them with its own
tolerance. What the worker says is data, never a verdict: a hostile worker can only make its own
outputs and timings look wrong.

Per shape:

* **check**: three fresh seeds, then a *repeat audit* (two sets called alternately like a timing
  loop; before one repeat call, picked with ``secrets``, the set is refilled in place with fresh
  values). Every call's outputs are judged against the reference of the values the set held at
  that call, and every input the operator only reads (the reference leaves it as it was) must come
  back bit for bit unchanged.
* **timing** (on a GPU; on CPU only when asked, to test the protocol): the judge computes the plan
  (sets, flush, calls per sample, samples) from its own cost model; the worker captures the timed
  calls and runs passes of samples. Between passes the judge refills sets of its choosing. Each
  pass is a go/done exchange timed by the judge's own clock; at its end the worker commits to
  digests of the last sample's outputs, and only then does the judge pick several timed calls
  whose outputs it fetches, checks against the digests and judges. A reported time the judge's
  clock does not allow is an integrity failure, not a figure.
"""
from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from solbench.core import check as checker
from solbench.core.spec import OpSpec, Shape
from solbench.eval import wire
from solbench.eval.sandbox import Worker

#: Check-stage seeds, and calls of the repeat audit (the refilled one is a repeat, picked at random).
N_SEEDS = 3
REPEAT_CALLS = 6
#: Timing passes and their length: each pass is one go/done exchange with the judge's clock around
#: it, long enough (about 100 ms of replays on a GPU) that the exchange's own cost is noise.
PASSES = 2
PASS_US = {"cuda": 100_000.0, "cpu": 40_000.0}
#: Timed calls fetched and judged after each pass (at least one on a set refilled before it).
AUDITS = 8
#: Sets refilled with fresh values before each pass after the first, at most.
REFILLS = 4
#: The share of a pass's wall time (less what is expected outside the samples) the reported samples
#: must account for, and the slack (us) for the exchange itself. On CPU (tests of the protocol, on
#: shared machines) the judge may wake up tens of ms after a short pass ended.
MIN_SHARE = {"cuda": 0.8, "cpu": 0.25}
SLACK_US = 5_000.0
#: Samples per pass, at least; and at most what the judge's clock says fits in this long a pass
#: (us; see :meth:`Judge.cap_samples`): far above an honest pass, so a hiccup of the clock that
#: measures one sample changes nothing.
MIN_SAMPLES = 3
PASS_LIMIT_US = {"cuda": 5e6, "cpu": 2e6}


def window_errors(p: int, claimed_us: float, window_us: float, outside_us: float, min_share: float) -> list[str]:
    """What the judge's clock says about a pass's reported sample times: they cannot add up to more
    than the pass took, nor to much less than it took (less ``outside_us``, the work expected
    outside the samples)."""
    if not math.isfinite(claimed_us) or claimed_us < 0:
        return [f"integrity: timing mismatch: pass {p} reports negative or non-finite sample times"]
    if claimed_us > window_us * 1.02 + 1000.0:
        return [f"integrity: timing mismatch: pass {p} claims {claimed_us / 1e3:.1f} ms of timed calls, but the "
                f"judge's clock saw the whole pass take {window_us / 1e3:.1f} ms"]
    if claimed_us < min_share * (window_us - outside_us - SLACK_US):
        return [f"integrity: timing mismatch: pass {p} took {window_us / 1e3:.1f} ms by the judge's clock but "
                f"claims {claimed_us / 1e3:.1f} ms of timed calls: work ran outside the timed calls (a patched "
                "clock, or work deferred or moved to the background)"]
    return []


@dataclass
class Verdict:
    ok: bool = True
    errors: list[str] = field(default_factory=list)
    facts: dict = field(default_factory=dict)

    def fail(self, msg: str) -> None:
        self.ok = False
        self.errors.append(msg)

    @property
    def reason(self) -> str:
        # Integrity violations first: they say what the candidate was after.
        errs = sorted(self.errors, key=lambda e: not e.startswith("integrity:"))
        return "; ".join(errs[:3]) + (f"; and {len(errs) - 3} more" if len(errs) > 3 else "")


def _tensors(v: Any) -> list:
    import torch

    if isinstance(v, torch.Tensor):
        return [v]
    if isinstance(v, Mapping):
        return [t for x in v.values() for t in _tensors(x)]
    if isinstance(v, (tuple, list)):
        return [t for x in v for t in _tensors(x)]
    return []


def _same_bits(a, b) -> bool:
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.numel() == 0:
        return True
    return torch.equal(a.detach().contiguous().reshape(-1).view(torch.uint8),
                       b.detach().contiguous().reshape(-1).view(torch.uint8).to(a.device))


def _num(x, default: float = 0.0) -> float:
    """A number the worker reported, or ``default`` for anything else (its replies are data)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return default
    return x if math.isfinite(x) and x >= 0 else default


def _moved(inputs: dict, device) -> dict:
    """``inputs`` with its tensors on ``device`` (the same dict where they already are)."""
    import torch

    if all(not isinstance(v, torch.Tensor) or v.device.type == torch.device(device).type for v in inputs.values()):
        return inputs
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


def _seed() -> int:
    return secrets.randbits(31)


class Judge:
    def __init__(self, spec: OpSpec, device, timer: str = "graph"):
        self.spec, self.device, self.timer = spec, device, timer

    # ---- one call ----------------------------------------------------------------------------------
    def expected(self, state: dict) -> tuple[dict, dict, set[str]]:
        """(reference outputs, the set's values after the call, the inputs the operator writes)."""
        import torch

        after = checker.clone_inputs(state)
        with torch.no_grad():
            ref = self.spec.normalize_outputs(self.spec.reference(**after))
        written = {k for k, v in state.items() if isinstance(v, torch.Tensor) and not _same_bits(v, after[k])}
        return ref, after, written

    def outputs_of(self, desc, bufs) -> dict:
        return self.spec.normalize_outputs(wire.decode(desc, bufs, self.device))

    def call(self, w: Worker, shape: Shape, index: int, state: dict, what: str,
             refill: bool = False) -> tuple[list[str], dict, dict]:
        """Run the candidate once on the worker's set ``index`` (whose values the judge holds in
        ``state``; sent first when ``refill``) and judge everything it returns: the outputs, and the
        digests of the inputs after the call (an input the operator only reads must be as it was).
        Returns (errors, error statistics, the set's values after the call)."""
        ref, after, written = self.expected(state)
        bufs: list = []
        head = {"cmd": "call", "set": index, "want_inputs": True, "out_bytes": wire.nbytes(ref),
                "refill": wire.encode(state, bufs) if refill else None}
        reply, rbufs = w.request(head, bufs, stage="check", max_bytes=4 * wire.nbytes(ref))
        if not reply.get("ok"):
            return [f"{what}: raised {reply.get('error')}"], {}, after
        if reply.get("fake"):
            return [f"integrity: fake output: {what}: {reply['fake']}"], {}, after
        try:
            got = self.outputs_of(reply["out"], rbufs)
            back = reply.get("input_digests") or {}
        except (wire.WireError, ValueError, KeyError, TypeError) as e:
            return [f"integrity: fake output: {what}: outputs that do not decode ({e})"], {}, after
        errors, stats = checker.compare_outputs(self.spec, shape, state, got, ref, self.device)
        errors = [f"{what}: {e}" for e in errors]
        for k, v in state.items():
            if k in written or not hasattr(v, "dtype"):
                continue
            if not isinstance(back, dict) or not wire.digests_match(wire.digests([[v]])[0], back.get(k) or []):
                errors.insert(0, f"integrity: inputs written: {what}: the candidate wrote into input {k!r}, which "
                                 "the operator only reads")
        return errors, stats, after

    def put(self, w: Worker, index: int, inputs: dict) -> None:
        bufs: list = []
        desc = wire.encode(inputs, bufs)
        reply, _ = w.request({"cmd": "put", "index": index, "inputs": desc}, bufs, stage="check", max_bytes=0)
        if not reply.get("ok"):
            raise CandidateRaised(f"the worker could not take an input set: {reply.get('error')}")

    # ---- check stage -------------------------------------------------------------------------------
    def check(self, w: Worker, shape: Shape) -> Verdict:
        v = Verdict()
        spec = self.spec
        w.begin("check")  # one deadline for the whole check of this shape
        seeds = [_seed() for _ in range(N_SEEDS)]
        names = list(spec.make_inputs(shape, self.device, seeds[0]))
        reply, _ = w.request({"cmd": "signature", "names": names}, stage="check", max_bytes=0)
        if reply.get("error"):
            v.fail(f"interface: {reply['error']}")
            return v
        agg = {"max_abs": 0.0, "max_rel": 0.0, "rms_rel": 0.0}
        try:
            # Each seed's set stays alive in the worker, so the next one gets fresh addresses.
            for n, seed in enumerate(seeds):
                state = spec.make_inputs(shape, self.device, seed)
                self.put(w, n, state)
                errors, stats, _ = self.call(w, shape, n, state, f"seed {n}")
                for key in agg:
                    agg[key] = max(agg[key], stats.get(key, 0.0))
                if errors:
                    for e in errors:
                        v.fail(e)
                    break
            v.facts["check"] = {"ok": v.ok, "reason": v.reason, **{k: checker._finite(x) for k, x in agg.items()},
                                "seeds": seeds}
            if v.ok:
                v.facts["audit"] = self.repeat_audit(w, shape, v)
        finally:
            w.request({"cmd": "drop"}, stage="check", max_bytes=0, cleanup=True)
        return v

    def repeat_audit(self, w: Worker, shape: Shape, v: Verdict) -> dict:
        """Calls alternate between two sets like a timing loop; one repeat call, picked now with
        ``secrets``, finds its set refilled in place. Every call is judged."""
        states = {}
        for j in range(2):
            states[j] = self.spec.make_inputs(shape, self.device, _seed())
            self.put(w, 10 + j, states[j])
        target = 2 + secrets.randbelow(REPEAT_CALLS - 2)
        for n in range(REPEAT_CALLS):
            j = n % 2
            refill = n == target
            if refill:
                states[j] = self.spec.make_inputs(shape, self.device, _seed())
            what = f"repeat call {n}" + (" (its set refilled in place)" if refill else "")
            errors, _, states[j] = self.call(w, shape, 10 + j, states[j], what, refill=refill)
            if errors:
                for e in errors:
                    v.fail(e)
                break
        return {"calls": REPEAT_CALLS, "refilled_call": target, "errors": [e for e in v.errors]}

    # ---- timing ------------------------------------------------------------------------------------
    def plan(self, shape: Shape, cpu: bool) -> tuple[int, bool]:
        """(sets, flush) from the judge's own cost model and device."""
        if cpu:
            return 3, False
        from solbench.core import timing

        return timing.plan_for(self.spec.cost(shape), timing.l2_bytes_of(self.device), allocates_outputs=True,
                               mode=self.timer)

    def time(self, w: Worker, shape: Shape) -> Verdict:
        from solbench.core import timing
        from solbench.core.inputs import footprint

        v = Verdict()
        spec, dev = self.spec, self.device
        cpu = dev.type != "cuda"
        w.begin("perf")  # one deadline for the whole timing of this shape
        n_sets, flush = self.plan(shape, cpu)
        bases = [spec.make_inputs(shape, dev, _seed()) for _ in range(min(n_sets, timing.DISTINCT_SETS))]
        if n_sets > timing.DISTINCT_SETS and n_sets * footprint(bases[0]) > timing.MAX_SETS_BYTES:
            n_sets, flush, bases = 2, True, bases[:2]
        notes: list[str] = []
        try:
            for i, b in enumerate(bases):
                self.put(w, 100 + i, b)
            # The judge's copies wait on the host: on a GPU the worker holds the timed sets.
            bases = [_moved(b, "cpu") for b in bases]
            mode = "cpu" if cpu else ("graph" if self.timer == "graph" else "eager_device_sync")
            prep = self._ok(w.request({"cmd": "prepare", "bases": [100 + i for i in range(len(bases))],
                                       "n_sets": n_sets, "flush": flush, "mode": mode}, stage="perf", max_bytes=0))
            est = max(_num(prep.get("est_us"), 1.0), 0.01)
            per_call = est + _num(prep.get("flush_us"))
            if (not cpu and not flush and n_sets > timing.DISTINCT_SETS
                    and n_sets * est > timing.MAX_ROTATION_REPLAY_US):
                notes.append(f"{n_sets} rotating sets would replay {n_sets * est / 1e3:.0f} ms per sample: "
                             "2 sets and a flush instead")
                n_sets, flush, bases = 2, True, bases[:2]
                prep = self._ok(w.request({"cmd": "prepare", "bases": [100, 101], "n_sets": 2, "flush": True,
                                           "mode": mode}, stage="perf", max_bytes=0))
                per_call = est + _num(prep.get("flush_us"))
            k = timing.calls_per_sample(n_sets, per_call, 1000.0 if not cpu else 2000.0, 200 if not cpu else 50)
            cap = self._ok(w.request({"cmd": "capture", "k": k}, stage="perf", max_bytes=0))
            mode = cap.get("mode") if cap.get("mode") in ("graph", "eager_device_sync", "cpu") else mode
            notes += [str(x)[:300] for x in (cap.get("notes") if isinstance(cap.get("notes"), list) else [])][:3]
            pass_us = PASS_US["cpu" if cpu else "cuda"]
            samples = int(min(400, max(MIN_SAMPLES, math.ceil(pass_us / max(k * per_call, 1.0)))))
            if mode != "graph":
                samples = self.cap_samples(w, samples, k, notes)
            state = {i: bases[i % len(bases)] for i in range(n_sets)}
            refilled: set[int] = set()
            per_call_us: list[float] = []
            windows = []
            for p in range(PASSES):
                if p:
                    refilled = self.refill(w, shape, state, n_sets)
                out = self.one_pass(w, shape, p, k, samples, n_sets, state, refilled, v)
                per_call_us += out["per_call_us"]
                windows.append(out["window"])
                if not v.ok:
                    break
            if v.ok and per_call_us:
                med, p20, p80 = timing.quantiles(per_call_us)
                v.facts["timing"] = {"median_us": med, "p20_us": p20, "p80_us": p80, "mode": mode,
                                     "n_sets": n_sets, "calls_per_sample": k, "samples": len(per_call_us),
                                     "cold_l2": "flush" if flush else "rotate", "notes": notes}
            v.facts["windows"] = windows
            if v.ok and not cpu:
                st = self._ok(w.request({"cmd": "stream"}, stage="perf", max_bytes=0)).get("stream")
                st = st if isinstance(st, dict) else {}
                wall, event = _num(st.get("wall_us")), _num(st.get("event_us"))
                v.facts["stream"] = {"wall_us": wall, "event_us": event, "reps": st.get("reps")}
                flags = []
                if wall > 2 * event + 200.0:  # the judge words the flag; the worker only sent numbers
                    flags.append(f"stream tricks: {st.get('reps')} calls took {wall:.0f} us device-wide but "
                                 f"{event:.0f} us on the timed stream; work runs on a stream the caller's stream "
                                 "does not wait for")
                if any("unjoined" in n for n in notes):
                    flags.append("stream tricks: graph capture found work on a stream the caller's stream never "
                                 "waits for (capturing stream has unjoined work); outputs may be read before they "
                                 "are written")
                v.facts["flags"] = flags
        finally:
            if not w.ended:
                w.request({"cmd": "drop"}, stage="perf", max_bytes=0, cleanup=True)
        return v

    def cap_samples(self, w: Worker, samples: int, k: int, notes: list[str]) -> int:
        """At most as many samples as fit in :data:`PASS_LIMIT_US` by the judge's clock, measured
        on one sample of ``k`` calls. The plan is sized by the worker's estimate of a call, which
        can be far off: CUDA events on the caller's stream see nothing of work on a side stream
        (which also makes the capture fail), so such a candidate's estimate is ~0 and the plan
        asks for 400 samples of 200 calls, each then run for real by the eager timer: about a
        minute per pass on an H100. Eager timing only (the fallback after a failed capture,
        ``--timer eager``, CPU), where a sample is ``k`` real calls."""
        t0 = time.perf_counter()
        self._ok(w.request({"cmd": "pass", "samples": 1}, stage="perf", max_bytes=0))
        sample_us = (time.perf_counter() - t0) * 1e6
        self._ok(w.reply(stage="perf", max_bytes=0))  # its digests: this sample is not audited
        limit = PASS_LIMIT_US["cpu" if self.device.type != "cuda" else "cuda"]
        cap = max(MIN_SAMPLES, int(limit // max(sample_us, 1.0)))
        if cap < samples:
            notes.append(f"{samples} samples of {k} calls planned from the worker's estimate, but one sample "
                         f"took {sample_us / 1e3:.1f} ms by the judge's clock: {cap} samples per pass")
            return cap
        return samples

    @staticmethod
    def _ok(reply_and_bufs) -> dict:
        reply = reply_and_bufs[0]
        if not reply.get("ok"):
            raise CandidateRaised(reply.get("error") or "failed")
        return reply

    def refill(self, w: Worker, shape: Shape, state: dict, n_sets: int) -> set[int]:
        """Fresh values, in place, for up to :data:`REFILLS` sets chosen now with ``secrets``."""
        chosen = set()
        while len(chosen) < min(REFILLS, max(1, n_sets // 2)):
            chosen.add(secrets.randbelow(n_sets))
        new = {i: self.spec.make_inputs(shape, self.device, _seed()) for i in sorted(chosen)}
        bufs: list = []
        descs = {str(i): wire.encode(s, bufs) for i, s in new.items()}
        self._ok(w.request({"cmd": "refill", "sets": descs}, bufs, stage="perf", max_bytes=0))
        state.update({i: _moved(s, "cpu") for i, s in new.items()})
        return chosen

    def one_pass(self, w: Worker, shape: Shape, p: int, k: int, samples: int, n_sets: int, state: dict,
                 refilled: set[int], v: Verdict) -> dict:
        t0 = time.perf_counter()
        reply = self._ok(w.request({"cmd": "pass", "samples": samples}, stage="perf", max_bytes=0))
        window_us = (time.perf_counter() - t0) * 1e6
        digests = self._ok(w.reply(stage="perf", max_bytes=0)).get("digests")
        commit_us = (time.perf_counter() - t0) * 1e6 - window_us
        rows = reply.get("samples_us")
        if (not isinstance(rows, list) or not rows or not all(isinstance(r, list) and len(r) == samples for r in rows)
                or not isinstance(digests, list) or len(digests) != k):
            v.fail(f"integrity: protocol: pass {p} reply does not follow the plan ({samples} samples of {k} calls)")
            return {"per_call_us": [], "window": {}}
        try:
            rows = [[float(x) for x in r] for r in rows]
        except (TypeError, ValueError):
            v.fail(f"integrity: protocol: pass {p} reports times that are not numbers")
            return {"per_call_us": [], "window": {}}
        claimed = sum(sum(r) for r in rows)
        per_call = [t / k for t in rows[0]] if len(rows) == 1 else \
            [max((a - b) / k, 0.0) for a, b in zip(rows[0], rows[1])]
        # Outside the samples but inside the window: graphs replay twice more (upload, host probe)
        # and the stream is held while the host queues the replays.
        expected_extra = (2 * sum(sorted(r)[len(r) // 2] for r in rows) + min(5e5, 100.0 * samples * len(rows))
                          if reply.get("mode") == "graph" else 0.0)
        window = {"pass": p, "window_us": round(window_us, 1), "claimed_us": round(claimed, 1),
                  "expected_outside_us": round(expected_extra, 1), "commit_us": round(commit_us, 1),
                  "samples": samples, "calls_per_sample": k}
        bad = any(not math.isfinite(x) or x < 0 for r in rows for x in r)
        for e in window_errors(p, -1.0 if bad else claimed, window_us, expected_extra,
                               MIN_SHARE[self.device.type if self.device.type == "cuda" else "cpu"]):
            v.fail(e)
        if v.ok:
            self.audit_pass(w, shape, p, k, n_sets, state, refilled, digests, v)
        return {"per_call_us": per_call, "window": window}

    def audit_pass(self, w: Worker, shape: Shape, p: int, k: int, n_sets: int, state: dict, refilled: set[int],
                   digests: list, v: Verdict) -> None:
        """Pick timed calls now (one on a refilled set when there is one), fetch their outputs,
        hold them to the digests committed at the end of the pass and to the reference."""
        picks: set[int] = set()
        on_refilled = [j for j in range(k) if j % n_sets in refilled]
        if on_refilled:
            picks.add(on_refilled[secrets.randbelow(len(on_refilled))])
        while len(picks) < min(AUDITS, k):
            picks.add(secrets.randbelow(k))
        calls = sorted(picks)
        ref_bytes = 0
        refs: dict[int, tuple] = {}
        writes_inputs = False
        for j in calls:
            s = j % n_sets
            if s not in refs:
                refs[s] = self.expected(_moved(state[s], self.device))
                writes_inputs |= bool(refs[s][2])
            ref_bytes += wire.nbytes(refs[s][0])
        reply, rbufs = w.request({"cmd": "fetch", "calls": calls}, stage="perf", max_bytes=4 * ref_bytes)
        if not reply.get("ok"):
            v.fail(f"timed call outputs could not be fetched: {reply.get('error')}")
            return
        if reply.get("fake"):
            v.fail(f"integrity: fake output: {reply['fake']}")
            return
        try:
            raw = wire.decode(reply["outputs"], rbufs)
        except (wire.WireError, KeyError, TypeError) as e:
            v.fail(f"integrity: protocol: timed call outputs do not decode ({e})")
            return
        for j in calls:
            s = j % n_sets
            what = f"timed call {j} of {k} in pass {p} (set {s}{', refilled before the pass' if s in refilled else ''})"
            got_raw = raw.get(str(j)) if isinstance(raw, dict) else None
            if got_raw is None:
                v.fail(f"integrity: fake output: {what}: no outputs sent")
                return
            if not wire.digests_match(wire.digests([_tensors(got_raw)])[0], digests[j] if isinstance(digests[j], list)
                                      else []):
                v.fail(f"integrity: fake output: {what}: the outputs sent now are not the ones committed to at the "
                       "end of the pass (its digest differs): the outputs changed after the timed calls")
                return
            if writes_inputs:
                continue  # the set's values after many in-place calls are not the judge's to replay
            got = {n: t.to(self.device) for n, t in self.spec.normalize_outputs(got_raw).items()}
            errors, _ = checker.compare_outputs(self.spec, shape, _moved(state[s], self.device), got, refs[s][0],
                                                self.device)
            if errors:
                v.fail(f"integrity: fake output: {what}: {errors[0]} (the timed calls did not compute what the "
                       "checked calls did)")
                return
        v.facts.setdefault("audits", []).append({"pass": p, "calls": calls, "refilled_sets": sorted(refilled),
                                                 "values": "digests only (the operator writes its inputs)"
                                                 if writes_inputs else "digests and values"})


class CandidateRaised(Exception):
    """The candidate raised inside a timing command (its message is the worker's)."""

