"""Unit tests of the core: catalog, spec registry, roofline, checker, timer statistics, hardware."""
import json
import math

import pytest
import torch

from solbench.catalog import catalog_summary, make_shapes, operator_entries, shape_weight
from solbench.core import hardware, roofline, timing
from solbench.core.check import check_impl, compare_tensor
from solbench.core.score import suite_scores, weighted_median
from solbench.core.spec import Cost, Impl, Support, Tolerance, get_spec


def test_catalog_has_30_ops_and_440_shapes():
    assert catalog_summary() == {"operators": 30, "shapes": 440, "num_profiles": 1303}
    entry = operator_entries()["silu_and_mul"]
    shapes = make_shapes(entry)
    assert len(shapes) == 37
    assert shapes[0].params["shape"] == [1, 1536]
    assert "deployed_us" in shapes[0].provenance


def test_shape_weight_prefers_traced_time():
    assert shape_weight({"total_duration_us": 10.0, "call_count": 3}) == 10.0
    assert shape_weight({"call_count": 3}) == 3.0
    assert shape_weight({}) == 1.0


def test_support_refusal_needs_reason():
    with pytest.raises(ValueError):
        Support.no("")
    assert not Support.no("no GPU") and Support.no("no GPU").reason == "no GPU"


def test_roofline_hand_values():
    h100 = hardware.get_sku("H100")
    # silu_and_mul reads [.., 2d] and writes [.., d]: half as many bytes written as read.
    for shape in get_spec("silu_and_mul").shapes:
        cost = get_spec("silu_and_mul").cost(shape)
        assert cost.bytes_written * 2 == cost.bytes_read
    c = Cost(flops={"bf16_tc": 2 * 4096**3}, bytes_read=2 * 4096 * 4096 * 2, bytes_written=4096 * 4096 * 2)
    rl = roofline.roofline(c, h100)
    assert math.isclose(rl.compute_us, 2 * 4096**3 / 989e12 * 1e6)
    assert rl.regime == "C" and rl.bound == "compute"
    m = Cost(flops={"fp32": 1e6}, bytes_read=3.35e9, bytes_written=0)
    rl = roofline.roofline(m, h100)
    assert math.isclose(rl.sol_us, 1000.0) and rl.regime == "M"
    assert roofline.roofline(Cost(flops={}, bytes_read=100, bytes_written=100), h100).regime == "I"
    # Paths overlap: the slowest one bounds the time, not their sum (a sum is no lower bound).
    both = Cost(flops={"bf16_tc": 989e12 * 1e-3, "fp32": 67e12 * 0.5e-3}, bytes_read=0, bytes_written=0)
    assert math.isclose(roofline.roofline(both, h100).compute_us, 1000.0)
    # A path declared serial (its cost comment says why it cannot overlap) adds to the max.
    serial = Cost(flops=dict(both.flops), bytes_read=0, bytes_written=0, serial=("fp32",))
    assert math.isclose(roofline.roofline(serial, h100).compute_us, 1500.0)
    assert serial.to_record()["serial"] == ["fp32"] and "serial" not in both.to_record()
    assert roofline.speed_of_light_fraction(5.0, 10.0) == 0.5


def test_skus_and_fallback_paths():
    assert hardware.get_sku("h20").peak("tf32_tc") == 74e12
    assert hardware.get_sku("XPU-A").peak("tf32_tc") == 29.1e12  # no tf32: runs at fp32 rate
    assert hardware.get_sku("A100").peak("fp8_e4m3_tc") == 312e12  # no fp8: bf16 rate
    assert hardware.get_sku("H200").bandwidth == 4.8e12
    assert hardware.match_sku("NVIDIA H100 80GB HBM3") == "H100"
    assert hardware.match_sku("NVIDIA H200") == "H200"
    with pytest.raises(KeyError, match="known"):
        hardware.get_sku("V100")


def test_quantiles_and_plan_sets():
    med, p20, p80 = timing.quantiles([5, 1, 3, 2, 4])
    assert (med, p20, p80) == (3, 1.8, 4.2)
    assert timing.quantiles([7.0]) == (7.0, 7.0, 7.0)
    l2 = 50 * 2**20
    n, flush = timing.plan_sets(40 * 2**20, l2)
    assert not flush and n * 40 * 2**20 > 2 * l2
    n, flush = timing.plan_sets(4096, l2)  # a decode call of 4 KB rotates thousands of sets
    assert not flush and n * 4096 > 2 * l2 and n <= timing.MAX_ROTATING_SETS
    assert timing.plan_sets(1024, l2) == (2, True)  # smaller still: a flush
    assert timing.plan_sets(3e9, l2) == (1, False)
    # Self-allocated outputs reuse graph-pool addresses: rotation cannot keep them cold, so calls
    # whose outputs fit in twice the L2 are flushed; bigger outputs evict themselves.
    assert timing.plan_sets(40 * 2**20, l2, outputs_rotate=False, bytes_written=20 * 2**20) == (2, True)
    assert timing.plan_sets(3e9, l2, outputs_rotate=False, bytes_written=1e9) == (1, False)


def test_many_sets_fall_back_to_a_flush_when_slow_to_make():
    def run(n, seconds_per_set, budget_s, flush=False):
        made, now = [], [0.0]

        def make(i):
            made.append(i)
            now[0] += seconds_per_set(i)
            return i
        sets, fl = timing.make_sets(n, flush, make, budget_s=budget_s, clock=lambda: now[0])
        return sets, fl, len(made)

    # 1 s per set: 1000 s projected after 64 sets, far over 3 x 100 s
    assert run(1000, lambda i: 1.0, 100.0) == ([0, 1], True, 64)
    # one slow set among cheap ones (an allocation): no fall-back
    sets, flush, made = run(1000, lambda i: 0.5 if i == 1 else 0.001, 10.0)
    assert (len(sets), flush, made) == (1000, False, 1000)
    # projected under 3 x budget but over budget in fact: stops when the budget is spent
    assert run(1000, lambda i: 0.02, 10.0)[1:] == (True, 501)
    sets, flush, _ = run(1000, lambda i: 0.001, 2000.0)
    assert (len(sets), flush) == (1000, False)
    assert run(8, lambda i: 10.0, 0.0, flush=True)[:2] == (list(range(8)), True)  # few sets: as planned


def test_every_set_is_replayed_in_each_sample():
    assert timing.calls_per_sample(8, 2.0, 1000.0, 200) == 200     # small calls: capped at max_calls
    assert timing.calls_per_sample(25_000, 2.0, 1000.0, 200) == 25_000  # but never fewer than the sets
    assert timing.calls_per_sample(2, 5000.0, 1000.0, 200) == 2
    assert timing.calls_per_sample(1, 5000.0, 1000.0, 200) == 1


def test_gpu_timer_rejects_an_unknown_eager_rule():
    from solbench.core.timing import time_gpu

    with pytest.raises(ValueError, match="device_sync"):
        time_gpu(lambda i: None, 1, flush=False, eager="wall")
    with pytest.raises(ValueError, match="warm and flush"):
        time_gpu(lambda i: None, 1, flush=True, warm=True)


def test_flusher_reads_one_buffer_twice_the_l2(monkeypatch):
    import torch

    seen = []
    real_sum = torch.sum
    monkeypatch.setattr(torch, "sum", lambda t, **kw: seen.append((t.data_ptr(), t.numel())) or real_sum(t, **kw))
    f = timing._Flusher(torch.device("cpu"), l2_bytes=64)
    f(), f()
    assert seen[0] == seen[1] == (f.buf.data_ptr(), 2 * 64 // 4)


def test_flush_subtraction_pairs_replays_so_drift_cancels(monkeypatch):
    # A simulated GPU whose every replay runs 0.25 us slower than the one before (clocks drifting):
    # the flush + call graph and the flush-only graph are replayed in alternation and subtracted
    # sample by sample, so the 2 us call comes out as ~2 us. Subtracting the median of a later,
    # separate run of flush-only replays (the old way) would have taken drift off with it.
    import torch

    clock = [0.0]
    replays = [0]
    FLUSH_US, CALL_US, K = 36.0, 2.0, 4

    class Graph:
        def __init__(self, body):
            counts = {"flush": 0, "call": 0}
            body_counts[0] = counts
            body()
            self.us = FLUSH_US * counts["flush"] + CALL_US * counts["call"]

        def replay(self):
            replays[0] += 1
            clock[0] += self.us + 0.25 * replays[0]

    class Event:
        def record(self):
            self.t = clock[0]

        def elapsed_time(self, later):
            return (later.t - self.t) / 1e3  # ms, like CUDA events

    body_counts = [None]
    monkeypatch.setattr(timing, "_capture", lambda body, warm_body=None: Graph(body))
    monkeypatch.setattr(timing, "_events", lambda n: [Event() for _ in range(n)])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(timing, "_hold_stream", lambda us: None)  # no device to spin

    def flusher():
        body_counts[0]["flush"] += 1

    def call(i):
        body_counts[0]["call"] += 1

    t = timing._time_graph(call, 2, flusher, K, samples=30)
    assert t.cold_l2 == "flush" and t.samples == 30 and "interleaved" in t.notes[0]
    # each pair's flush-only replay comes one replay later: 0.25 us of drift over K calls
    assert t.median_us == pytest.approx(CALL_US - 0.25 / K, abs=1e-6)
    warm = timing._time_graph(call, 2, None, K, samples=10)
    assert warm.cold_l2 == "rotate" and warm.notes == []


def test_cpu_timer_measures():
    import time as _t

    t = timing.time_cpu(lambda i: _t.sleep(0.001), 2, budget_s=0.05)
    assert t.mode == "cpu" and 900 < t.median_us < 20000 and t.p20_us <= t.median_us <= t.p80_us


def test_weighted_median_and_suite_score():
    assert weighted_median([1, 2, 3]) == 2
    assert weighted_median([1, 2, 3], [1, 1, 10]) == 3
    assert weighted_median([1, 2], [1, 1]) == 1.5
    recs = [{"op": "a", "impl": "x", "status": "ok", "time_us": 1, "s_achievable": 0.5, "weight": 1},
            {"op": "b", "impl": "x", "status": "ok", "time_us": 1, "s_achievable": 1.0, "weight": 1},
            {"op": "b", "impl": "y", "status": "fail", "time_us": None, "s_achievable": None}]
    s = suite_scores(recs, {"a": 0.2, "b": 0.1})
    assert math.isclose(s["x"]["score"], 0.2 * 0.5 + 0.1 * 1.0)
    assert "y" not in s


# ---- the checker must reject broken kernels -------------------------------------------------

SPEC = get_spec("silu_and_mul")
SHAPE = next(s for s in SPEC.shapes if s.params["shape"] == [1, 1536])


def _good(x, out):
    from solbench.kernels.activation import get_activation, reference_glu

    out.copy_(reference_glu(x, get_activation("silu")))
    return out


def test_checker_accepts_correct_kernel(device):
    assert check_impl(SPEC, Impl("silu_and_mul", "good", _good, takes_out=True), SHAPE, device).ok


def test_checker_rejects_empty_kernel(device):
    res = check_impl(SPEC, Impl("silu_and_mul", "empty", lambda x, out: out, takes_out=True), SHAPE, device)
    assert not res.ok and "NaN" in res.reason


def test_checker_rejects_last_row_unwritten(device):
    spec = SPEC
    shape = next(s for s in spec.shapes if s.params["shape"][0] > 1 and s.params["shape"][0] * s.params["shape"][1] < 2e6)

    def lazy(x, out):
        _good(x[:-1], out[:-1])
        return out

    res = check_impl(spec, Impl("silu_and_mul", "lazy", lazy, takes_out=True), shape, device)
    assert not res.ok and "NaN" in res.reason


def test_checker_rejects_returning_input(device):
    res = check_impl(SPEC, Impl("silu_and_mul", "echo", lambda x: x[..., : x.shape[-1] // 2].clone()), SHAPE, device)
    assert not res.ok and "outside" in res.reason


def test_checker_rejects_wrong_dtype_and_crash(device):
    res = check_impl(SPEC, Impl("silu_and_mul", "fp32", lambda x: _good(x.float(), torch.empty(
        (*x.shape[:-1], x.shape[-1] // 2), device=x.device))), SHAPE, device)
    assert not res.ok and "dtype" in res.reason

    def boom(x):
        raise RuntimeError("kaboom")

    res = check_impl(SPEC, Impl("silu_and_mul", "boom", boom), SHAPE, device)
    assert not res.ok and "kaboom" in res.reason


def test_compare_tensor_constant_and_ints():
    tol = Tolerance(atol=10.0, rtol=10.0)
    errs, _ = compare_tensor("o", torch.zeros(10), torch.linspace(0, 1, 10), tol)
    assert any("constant" in e for e in errs)
    errs, _ = compare_tensor("i", torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4]), tol)
    assert errs and "differ" in errs[0]
    errs, _ = compare_tensor("o", torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]), tol)
    assert errs and "NaN" in errs[0]


def test_compare_tensor_chunked_matches_one_piece(monkeypatch):
    """The float64 compare runs in chunks (huge outputs); statistics, the worst element and the
    first NaN must not depend on where the chunk boundaries fall."""
    import solbench.core.check as check

    gen = torch.Generator().manual_seed(0)
    ref = torch.randn(37, 29, generator=gen)
    got = ref + 1e-3 * torch.randn(37, 29, generator=gen)
    got[20, 3] += 0.5  # the single worst element, in a late chunk
    tol = Tolerance(atol=1e-2, rtol=1e-2, rms_rtol=1.0)
    whole = compare_tensor("o", got, ref, tol)
    monkeypatch.setattr(check, "COMPARE_CHUNK_ELEMS", 64)
    chunked = compare_tensor("o", got, ref, tol)
    assert whole[0] == chunked[0] and "(20, 3)" in chunked[0][0] and "1 of 1073" in chunked[0][0]
    for k in ("max_abs", "max_rel", "rms_rel"):
        assert chunked[1][k] == pytest.approx(whole[1][k], rel=1e-12)
    got[30, 1] = float("nan")
    errs, _ = compare_tensor("o", got, ref, tol)
    assert errs and "NaN" in errs[0] and "(30, 1)" in errs[0]
    # Constant output across chunk boundaries is still caught.
    errs, _ = compare_tensor("o", torch.zeros(200), torch.linspace(0, 1, 200), Tolerance(atol=9, rtol=9))
    assert any("constant" in e for e in errs)


def test_outlier_fraction_allows_only_that_many():
    ref = torch.linspace(-1, 1, 1000)
    got = ref.clone()
    got[:3] += 0.1
    strict = Tolerance(atol=1e-3, rtol=1e-3)
    assert compare_tensor("o", got, ref, strict)[0]
    assert not compare_tensor("o", got, ref, Tolerance(atol=1e-3, rtol=1e-3, outlier_frac=3e-3))[0]
    errs, _ = compare_tensor("o", got, ref, Tolerance(atol=1e-3, rtol=1e-3, outlier_frac=2e-3))
    assert errs and "3 of 1000" in errs[0] and "allowed" in errs[0]
    # The RMS bound still applies to the allowed outliers.
    errs, _ = compare_tensor("o", got, ref, Tolerance(atol=1e-3, rtol=1e-3, rms_rtol=1e-4, outlier_frac=0.5))
    assert errs and "RMS" in errs[0]


def test_every_operator_package_imports():
    from solbench.core.spec import load_errors

    assert load_errors() == {}


def test_check_impls_makes_one_reference_per_seed_for_all_impls(monkeypatch, device):
    from solbench.core.check import check_impls

    calls = []
    real = type(SPEC).reference  # patched on the class: the shared instance must stay untouched
    monkeypatch.setattr(type(SPEC), "reference", lambda self, **kw: calls.append(1) or real(self, **kw))
    good = Impl("silu_and_mul", "good", _good, takes_out=True)
    empty = Impl("silu_and_mul", "empty", lambda x, out: out, takes_out=True)
    res = check_impls(SPEC, [good, empty, Impl("silu_and_mul", "good2", _good, takes_out=True)], SHAPE, device,
                      seeds=(0, 1, 2))
    assert len(calls) == 3, "one reference per seed, shared by every implementation"
    assert res["good"].ok and res["good2"].ok and res["good"].seeds == [0, 1, 2]
    assert not res["empty"].ok and res["empty"].reason.startswith("seed 0:") and "NaN" in res["empty"].reason


def test_torch_compile_is_first_traced_on_the_largest_shape_that_fits(monkeypatch):
    """Inductor keeps the kernel its first launch autotuned: that launch is the operator's largest
    shape (a measurable one), not whichever tiny shape a run reaches first."""
    from solbench.core import baselines
    from solbench.core.spec import Support, get_spec

    spec = get_spec("silu_and_mul")
    monkeypatch.setattr(baselines, "FIRST_TRACE_MAX_BYTES", 2e6)
    label, inputs = baselines._largest_inputs("silu_and_mul", "cpu", lambda s, d: Support.yes())
    small = [s for s in spec.shapes if spec.cost(s).total_bytes <= 2e6]
    largest = max(small, key=lambda s: spec.cost(s).total_bytes)
    assert label == f"shape {largest.id}" and tuple(inputs["x"].shape) == tuple(spec.make_inputs(largest, "cpu", 0)["x"].shape)
    refuse_largest = lambda s, d: Support.yes() if s.id != largest.id else Support.no("too big")  # noqa: E731
    assert baselines._largest_inputs("silu_and_mul", "cpu", refuse_largest)[0] != label
    assert baselines._largest_inputs("silu_and_mul", "cpu", lambda s, d: Support.no("no")) is None

    calls = []
    compiled = baselines.Compiled(lambda x: calls.append(tuple(x.shape)) or x, "probe")
    compiled._compiled = compiled.fn  # no compilation: only the warm-up order is under test
    first = lambda: ("shape big", {"x": torch.zeros(8, 4)})  # noqa: E731
    facts = compiled.warm({"x": torch.zeros(1, 4)}, first=first)
    assert calls == [(8, 4), (1, 4)] and facts["first_traced_on"] == "shape big"
    assert "first_traced_on" not in compiled.warm({"x": torch.zeros(2, 4)}, first=first) and calls[-1] == (2, 4)


def test_a_slow_call_over_many_sets_is_flushed_instead(monkeypatch):
    # A Python-loop baseline (100 us a call) on a decode plan of 5000 sets would replay 0.5 s per
    # sample; time_gpu flushes two sets instead, and says so.
    import torch

    seen = {}

    class FakeFlusher:
        def __init__(self, *a, **k):
            pass

        def __call__(self):
            pass

    def fake_graph(call, n_sets, flusher, k, samples, on_graph=None):
        seen.update(n_sets=n_sets, flushed=flusher is not None, k=k)
        return timing.Timing(100.0, 99.0, 101.0, "graph", n_sets, k, samples, "flush" if flusher else "rotate", [])

    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(timing, "_estimate_us", lambda call, n, reps=3: 100.0)
    monkeypatch.setattr(timing, "_Flusher", FakeFlusher)
    monkeypatch.setattr(timing, "l2_bytes_of", lambda device: 50 << 20)
    monkeypatch.setattr(timing, "_time_graph", fake_graph)
    t = timing.time_gpu(lambda i: None, 5000, flush=False, device=torch.device("cpu"))
    assert seen["n_sets"] == 2 and seen["flushed"] and t.cold_l2 == "flush"
    assert "5000 rotating sets would replay 500 ms per sample" in t.notes[0]
    t = timing.time_gpu(lambda i: None, 300, flush=False, device=torch.device("cpu"))  # 30 ms: rotates
    assert seen["n_sets"] == 300 and not seen["flushed"] and seen["k"] == 300 and t.notes == []
