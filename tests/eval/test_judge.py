"""The judge's logic against hostile workers, in this process (no subprocess, no torch import per
test): the real worker's command handlers run over a pipe, and each test replaces one of them the
way a candidate that controls its process could. This is where the GPU-only attacks (doing less
in the timed calls, fabricated or patched timings, outputs fixed up after the timed calls) are
tested on CPU: the judge's timing protocol is the same on both, only the timer differs."""
from __future__ import annotations

import fcntl
import os
import time

import pytest
import torch

from solbench.core.spec import get_spec
from solbench.eval import wire
from solbench.eval.judge import Judge, window_errors
from solbench.eval.worker import Worker

OP = "silu_and_mul"
SPEC = get_spec(OP)
SHAPE = [s for s in SPEC.shapes if str(s.id) == "0"][0]
CPU = torch.device("cpu")


def honest(x):
    d = x.shape[-1] // 2
    return (torch.nn.functional.silu(x[..., :d].float()) * x[..., d:].float()).to(x.dtype)


class InProcess:
    """Stands in for :class:`solbench.eval.sandbox.Worker`: same ``request``/``reply``, with the
    worker's handlers called directly and every frame going through the wire format."""

    ended = None

    def __init__(self, fn, worker_cls=Worker):
        self.r, w = os.pipe()
        for f in (self.r, w):
            fcntl.fcntl(f, 1031, 1 << 20)  # room for a reply before it is read
        self.w = worker_cls({"device": "cpu"}, w)
        self.w.fn = fn

    def begin(self, stage):
        pass  # deadlines are the real worker's (test_eval.py)

    def request(self, header, bufs=(), *, stage, max_bytes, cleanup=False):
        import json

        header = json.loads(json.dumps(header))  # what crosses the pipe is JSON
        self.w.seq = "s"
        getattr(self.w, "cmd_" + header["cmd"])(header, [bytearray(memoryview(b).cast("B")) for b in bufs])
        return self.reply(stage=stage, max_bytes=max_bytes)

    def reply(self, *, stage, max_bytes):
        return wire.read_frame(self.r, max_bytes + (1 << 20))


def judge_time(fn, worker_cls=Worker):
    return Judge(SPEC, CPU).time(InProcess(fn, worker_cls), SHAPE)


def test_honest_timing_passes_with_its_audits_and_windows():
    v = judge_time(honest)
    assert v.ok, v.errors
    assert v.facts["timing"]["samples"] > 0 and v.facts["timing"]["median_us"] > 0
    assert len(v.facts["windows"]) == 2 and all(a["values"] == "digests and values" for a in v.facts["audits"])
    # After the first pass some sets were refilled, and one audited call used one of them.
    last = v.facts["audits"][-1]
    n_sets = v.facts["timing"]["n_sets"]
    assert last["refilled_sets"] and any(c % n_sets in last["refilled_sets"] for c in last["calls"])


def test_window_rule():
    assert window_errors(0, 95_000, 100_000, 0, 0.8) == []
    assert "claims 200.0 ms" in window_errors(0, 200_000, 100_000, 0, 0.8)[0]          # more than the clock saw
    assert "work ran outside the timed calls" in window_errors(0, 10_000, 100_000, 0, 0.8)[0]
    assert window_errors(0, 10_000, 100_000, 90_000, 0.8) == []                         # expected outside work
    assert "non-finite" in window_errors(0, float("nan"), 100_000, 0, 0.8)[0]


class PatchedClock(Worker):
    """Reports a hundredth of every sample (a patched clock or CUDA event)."""

    def send(self, header, bufs=()):
        if "samples_us" in header:
            header = {**header, "samples_us": [[t / 100 for t in r] for r in header["samples_us"]]}
        super().send(header, bufs)


class Fabricated(Worker):
    """Reports samples it never ran: ten times what it measured."""

    def send(self, header, bufs=()):
        if "samples_us" in header:
            header = {**header, "samples_us": [[t * 10 for t in r] for r in header["samples_us"]]}
        super().send(header, bufs)


@pytest.mark.parametrize("cls,needle", [(PatchedClock, "work ran outside the timed calls"),
                                        (Fabricated, "the judge's clock saw the whole pass take")])
def test_reported_times_the_judges_clock_does_not_allow_fail(cls, needle):
    v = judge_time(honest, cls)
    assert not v.ok and "integrity: timing mismatch" in v.reason and needle in v.reason, v.reason
    assert "timing" not in v.facts


def test_doing_less_in_timed_calls_is_caught_by_the_audit():
    # The GPU attack (a captured graph that skips work) as the judge sees it: timed calls whose
    # outputs are an earlier call's. Honest whenever a single call is made.
    state = {"last": None}

    class Lazy(Worker):
        def _call(self, i):
            if self.mode == "cpu" and state["last"] is not None and i % 2:
                return state["last"]
            state["last"] = super()._call(i)
            return state["last"]

    v = judge_time(honest, Lazy)
    assert not v.ok and v.reason.startswith("integrity: fake output: timed call"), v.reason


def test_outputs_fixed_up_after_the_pass_break_the_commitment():
    # Outputs that change between the end of the pass and the fetch (computed late, once the
    # worker knows which calls are looked at) do not match the digests committed to before.
    class FixUp(Worker):
        def cmd_fetch(self, msg, bufs):
            self.kept = [o.clone().fill_(1) for o in self.kept]
            super().cmd_fetch(msg, bufs)

    v = judge_time(honest, FixUp)
    assert not v.ok and "its digest differs" in v.reason, v.reason


def test_a_reply_that_does_not_follow_the_plan_is_a_protocol_violation():
    class Short(Worker):
        def send(self, header, bufs=()):
            if "samples_us" in header:
                header = {**header, "samples_us": [r[:1] for r in header["samples_us"]]}
            super().send(header, bufs)

    v = judge_time(honest, Short)
    assert not v.ok and "integrity: protocol" in v.reason, v.reason


def test_a_plan_sized_by_a_false_estimate_is_capped_by_the_judges_clock(monkeypatch):
    # The GPU side-stream candidate, as the judge sees it: the worker's estimate of a call is ~0
    # (CUDA events on the caller's stream miss side-stream work) while each call is slow. The
    # plan from that estimate is 400 samples of 50 calls a pass, 40 s here; one sample timed by
    # the judge's own clock caps a pass at its limit (2 s; 0.3 s in this test).
    from solbench.eval import judge

    monkeypatch.setitem(judge.PASS_LIMIT_US, "cpu", 3e5)
    class Underestimates(Worker):
        def send(self, header, bufs=()):
            if "est_us" in header:
                header = {**header, "est_us": 0.0}
            super().send(header, bufs)

    def slow(x):
        time.sleep(0.002)
        return honest(x)

    t0 = time.monotonic()
    v = judge_time(slow, Underestimates)
    assert v.ok, v.errors
    assert time.monotonic() - t0 < 10
    t = v.facts["timing"]
    assert t["calls_per_sample"] == 50 and t["samples"] <= 2 * 3, t
    assert any("by the judge's clock" in n for n in t["notes"]), t["notes"]


def test_wire_refuses_what_it_did_not_ask_for():
    r, w = os.pipe()
    fcntl.fcntl(w, 1031, 1 << 20)
    wire.write_frame(w, {"x": 1}, [b"\0" * 1000])
    with pytest.raises(wire.WireError, match="at most 10"):
        wire.read_frame(r, 10)
    os.write(w, b"junk....")
    with pytest.raises(wire.WireError, match="not a frame"):
        wire.read_frame(r, 10)
    # A tensor description whose bytes do not fit its shape.
    with pytest.raises(wire.WireError, match="sent with 3 bytes"):
        wire.decode({"t": 0, "dtype": "float32", "shape": [2], "stride": [1]}, [bytearray(3)])
    # What comes back is always a new plain tensor, whatever was sent.
    class Sub(torch.Tensor):
        pass

    bufs = []
    desc = wire.encode({"a": torch.arange(6.0).reshape(2, 3).as_subclass(Sub)}, bufs)
    back = wire.decode(desc, [bytearray(memoryview(b).cast("B")) for b in bufs])
    assert type(back["a"]) is torch.Tensor and torch.equal(back["a"], torch.arange(6.0).reshape(2, 3))
    os.close(r)
    os.close(w)


def test_digests_are_exact_per_tensor_and_batched():
    a = [[torch.empty(0), torch.randn(3, 5).bfloat16()], [torch.arange(10, dtype=torch.int32)],
         [torch.randn(4, 4).t()], [torch.empty(0)]]
    d = wire.digests(a)

    def one(t):
        b = t.reshape(-1).view(torch.uint8).long()
        return [int(b.sum()), int((b * b).sum())]

    assert d == [[x for t in c for x in one(t)] for c in a]
    changed = [[t.clone() for t in c] for c in a]
    changed[2][0][1, 2] += 1
    assert wire.digests(changed)[2] != d[2] and wire.digests(changed)[:2] == d[:2]
