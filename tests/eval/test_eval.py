"""Candidate evaluation end to end: the adversarial suite (tests/eval/candidates/), isolation, scores,
records. Each evaluation starts one worker subprocess (a torch import, ~3 s), so most tests use one
small shape. The GPU part (stream tricks, capture tricks, timing, ranking) runs on a device only."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from solbench.eval.evaluate import NO_GPU, EvalConfig, evaluate
from solbench.eval.score import leaderboard, task_scores

HERE = Path(__file__).parent
CANDIDATES = HERE / "candidates"
EXAMPLE = HERE.parents[1] / "examples" / "candidates" / "silu_and_mul_ours_triton.py"
OP = "silu_and_mul"

try:
    import torch

    HAS_CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover
    HAS_CUDA = False
gpu_only = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
cpu_only = pytest.mark.skipif(HAS_CUDA, reason="checks the no-GPU behaviour")


def run_eval(name: str | Path, shapes=("0",), edge=False, **kw):
    path = name if isinstance(name, Path) else CANDIDATES / f"{name}.py"
    cfg = EvalConfig(candidate=str(path), op=OP, shapes=list(shapes) if shapes else None, edge=edge,
                     baselines=kw.pop("baselines", []), audit_seed=kw.pop("audit_seed", 7), **kw)
    return evaluate(cfg)


# ---- honest candidates ---------------------------------------------------------------------------

@cpu_only
def test_example_triton_candidate_passes_with_edge_cases_and_no_perf_claim(tmp_path):
    out = tmp_path / "ev.jsonl"
    res = run_eval(EXAMPLE, shapes=None, edge=True, out=str(out))
    recs = res.records
    assert {r["kind"] for r in recs} >= {"catalog", "edge"}
    assert any(r["params"]["shape"][0] == 0 for r in recs if r["edge"])  # the 0-token case is promised
    assert all(r["verdict"] == "pass" and r["status"] == "ok" for r in recs), [r["reason"] for r in recs]
    assert all(r["time_us"] is None and r["s"] is None and r["speedup"] == {} and r["perf"] == NO_GPU for r in recs)
    s = task_scores(recs)
    assert s["fraction_correct"] == 1.0 and s["performance"] == NO_GPU
    assert s["geomean_vs_torch_compile"] is None and s["median_s"] is None
    # Same schema as `run`: the report machinery reads the file.
    from solbench.report.compare import compare_records
    from solbench.runner import read_records

    back = read_records(out)
    assert len(back) == len(recs)
    compare_records(back, back)


@pytest.mark.parametrize("name", ["model_correct", "slow_correct"])
def test_honest_candidates_pass(name):
    res = run_eval(name)
    r, = res.records
    assert r["verdict"] == "pass", r["reason"]
    assert r["impl_facts"]["resolved"].startswith("Model" if name == "model_correct" else "function")


# ---- cheats --------------------------------------------------------------------------------------

CHEATS = {
    # output caching: the repeat-call audit sees outputs in the same memory and stale values
    "cache_after_check": "output caching",
    # memoization by pointer: the set refilled in place gives it away, unless the allocator already
    # handed a later seed's input the address of an earlier one: then the seed check sees stale values
    "memo_by_pointer": ("fresh-input audit", "elements outside atol"),
    # timer patching, at import
    "patch_timer": "time.perf_counter was replaced",
    # patching the evaluator's own checker, lazily on the first call
    "patch_checker": "solbench.core.check.compare_outputs was replaced",
    # degenerate output
    "constant_output": "constant output",
    # lazy / subclassed tensors
    "lazy_subclass": "subclass, not a plain torch.Tensor",
    # forged protocol lines
    "forge_protocol": "forged lines",
}


@pytest.mark.parametrize("name", sorted(CHEATS))
def test_every_cpu_capable_cheat_is_caught(name):
    r, = run_eval(name).records
    assert r["verdict"] == "fail" and r["status"] == "fail"
    expected = CHEATS[name] if isinstance(CHEATS[name], tuple) else (CHEATS[name],)
    assert any(e in r["reason"] for e in expected), r["reason"]
    assert r["time_us"] is None and r["s_achievable"] is None


def test_timer_patch_names_the_cuda_event_too():
    r, = run_eval("patch_timer").records
    assert "torch.cuda.Event.elapsed_time was replaced" in r["reason"]


# ---- isolation -----------------------------------------------------------------------------------

def test_crash_hang_memory_and_import_failures_are_fails_and_the_evaluator_survives():
    crash, = run_eval("crash").records
    assert crash["verdict"] == "fail" and "exited with code 139 during check" in crash["reason"]
    # A hang on two shapes: each is killed at the stage limit, a fresh worker takes the next.
    res = run_eval("hang", shapes=("0", "9"), timeouts={"check": 2.0})
    assert [r["verdict"] for r in res.records] == ["fail", "fail"] and res.workers == 2
    assert all("check stage ran past its 2 s limit" in r["reason"] for r in res.records)
    hog, = run_eval("memory_hog", mem_cap_gb=1.0).records
    # Without CUDA the cap is an address-space limit (the allocation fails); a CUDA worker needs
    # a huge address space, so there the resident-set watcher kills it instead.
    assert hog["verdict"] == "fail" and ("allocate" in hog["reason"] or "memory cap" in hog["reason"]), hog["reason"]
    bad, = run_eval("bad_import").records
    assert bad["verdict"] == "fail" and "this candidate does not even import" in bad["reason"]


# ---- scores, CLI, batch --------------------------------------------------------------------------

def _rec(shape_id, verdict, t=None, compile_t=None, s=None, weight=1.0, edge=False):
    return {"op": OP, "shape_id": shape_id, "impl": "candidate", "verdict": verdict,
            "status": "ok" if verdict == "pass" else "fail", "time_us": t, "s_achievable": s, "weight": weight,
            "edge": edge, "perf": "timed" if t else "not timed",
            "speedup": {"vs_torch_compile": compile_t / t} if t and compile_t else {}}


def test_task_scores_rank_fast_above_slow_and_never_score_flagged():
    fast = [_rec(0, "pass", 10, 20, 0.8), _rec(1, "pass", 5, 20, 0.9), _rec("edge-0", "pass", edge=True)]
    slow = [_rec(0, "pass", 40, 20, 0.2), _rec(1, "pass", 50, 20, 0.1), _rec("edge-0", "pass", edge=True)]
    cheat = [_rec(0, "flagged"), _rec(1, "fail"), _rec("edge-0", "pass", edge=True)]
    f, s, c = task_scores(fast), task_scores(slow), task_scores(cheat)
    assert f["fraction_correct"] == s["fraction_correct"] == 1.0
    assert f["geomean_vs_torch_compile"] == pytest.approx((2 * 4) ** 0.5)
    assert s["geomean_vs_torch_compile"] == pytest.approx((0.5 * 0.4) ** 0.5)
    assert f["median_s"] > s["median_s"]
    assert c["fraction_correct"] == pytest.approx(1 / 3) and c["flagged"] == 1 and c["median_s"] is None
    board = leaderboard([("fast.py", fast)], {OP: 0.5})
    assert board["suite"]["score"] == pytest.approx(0.5 * 0.85) and board["suite"]["coverage"] == 0.5


def test_speedups_name_every_baseline_and_the_baselines_method_reaches_run(monkeypatch):
    from solbench.core.spec import get_spec
    from solbench.eval import evaluate as ev

    base = [{"impl": n, "status": "ok", "time_us": t, "shape_id": 3}
            for n, t in (("ours_triton", 9.0), ("torch_compile", 20.0), ("liger", 12.0))]
    base.append({"impl": "torch_eager", "status": "fail", "time_us": None, "shape_id": 3})
    sp = ev._speedups({"time_us": 10.0, "shape_id": 3}, base)
    # vs_ours_triton is the reproduction ratio for the exported ours_triton kernel
    assert sp["vs_ours_triton"] == pytest.approx(0.9) and sp["vs_liger"] == pytest.approx(1.2)
    assert sp["vs_torch_compile"] == pytest.approx(2.0) and "vs_torch_eager" not in sp
    assert sp["best_library_impl"] == "ours_triton" and sp["vs_best_peer"] == pytest.approx(1.2)
    # --baselines-cold-l2 flush times the baselines exactly as the candidate is (run --cold-l2 flush)
    seen = {}
    class _NoRun:
        records: list = []

    def fake_run(rc, progress=None):
        seen["rc"] = rc
        return _NoRun()

    monkeypatch.setattr("solbench.runner.run", fake_run)
    spec = get_spec(OP)
    ev.measure_baselines(spec, spec.shapes[:1], EvalConfig(candidate="c.py", op=OP, baselines=["torch_eager"],
                                                           baselines_cold_l2="flush"))
    assert seen["rc"].cold_l2 == "flush"


def test_speed_below_achievable_sol_is_flagged():
    from solbench.eval.integrity import speed_flags

    assert speed_flags(1.0, 2.0, 1.5)[0].startswith("suspicious speed")  # below the datasheet
    assert "achievable" in speed_flags(1.8, 2.0, 1.5)[0]                 # 10% below the achievable
    assert speed_flags(1.97, 2.0, 1.5) == []  # within the calibration's own margin (S = 1.015)
    assert speed_flags(3.0, 2.0, 1.5) == []
    assert speed_flags(None, 2.0, 1.5) == []


@cpu_only
def test_cli_eval_prints_no_speedup_without_gpu_and_batch_writes_a_leaderboard(tmp_path, capsys):
    from solbench.cli import main

    folder = tmp_path / "batch"
    folder.mkdir()
    shutil.copy(CANDIDATES / "model_correct.py", folder / "silu_and_mul.py")
    out = tmp_path / "b.jsonl"
    assert main(["eval", "--batch", str(folder), "--shapes", "0", "--no-edge", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "not measured: no GPU" in text and "speedup" not in text.lower()
    board = json.loads((folder / "leaderboard.json").read_text())
    row, = board["candidates"]
    assert row["op"] == OP and row["fraction_correct"] == 1.0 and board["suite"] is None
    assert "no GPU" in board["suite_note"]


def test_cli_eval_exits_non_zero_unless_every_shape_passes(tmp_path, capsys):
    from solbench.cli import main

    broken = tmp_path / "broken.py"
    broken.write_text("def silu_and_mul(x:\n    return x\n")  # a syntax error
    args = ["eval", str(broken), "--op", OP, "--shapes", "0", "--no-edge", "--baselines", ""]
    assert main(args) == 1
    assert "did not pass every shape" in capsys.readouterr().err
    assert main(args + ["--report-only"]) == 0  # a passing candidate exits 0: the batch test below


def test_guard_sees_patches_made_after_the_snapshot():
    import time

    from solbench.core import check
    from solbench.core.spec import get_spec
    from solbench.eval.integrity import Guard

    spec = get_spec(OP)
    g = Guard(spec)
    orig_clock, orig_cmp = time.perf_counter, check.compare_tensor
    try:
        assert g.violations() == []
        time.perf_counter = lambda: 0.0
        check.compare_tensor = lambda *a, **k: ([], {})
        spec.reference = lambda **k: None
        v = g.violations()
        assert v[0] == "time.perf_counter was replaced"
        assert "solbench.core.check.compare_tensor was replaced" in v
        assert any("reference() was overridden" in x for x in v)
    finally:
        time.perf_counter, check.compare_tensor = orig_clock, orig_cmp
        del spec.reference
    assert g.violations() == []


# ---- GPU part (run on the device; output committed under tests/eval/gpu_results/) -----------------

@gpu_only
@pytest.mark.parametrize("name,needle", [("side_stream", "stream"), ("skip_when_captured", "fresh-input audit")])
def test_gpu_stream_and_capture_cheats_are_caught(name, needle):
    r, = run_eval(name, shapes=("1",)).records
    assert r["verdict"] in ("fail", "flagged") and r["time_us"] is None, (r["verdict"], r["reason"], r.get("timing"))
    assert needle in r["reason"] or any(needle in f for f in r["flags"]), r["reason"]


@gpu_only
@pytest.mark.timeout(400)  # two evals, each compiling torch_compile cold in its subprocess (> 90 s on an H200)
def test_gpu_fast_candidate_ranks_above_slow_and_matches_run(tmp_path):
    shapes = ("1", "5")
    # The baselines are timed by `run`'s rule, the candidate's own: the exported kernel's allocated
    # outputs rotate with its inputs under graph timing just as ours_triton's out= buffers do.
    fast = run_eval(EXAMPLE, shapes=shapes, baselines=["ours_triton", "torch_compile"])
    slow = run_eval("slow_correct", shapes=shapes, baselines=["torch_compile"])
    assert all(r["verdict"] == "pass" and r["time_us"] for r in fast.records + slow.records)
    fs, ss = task_scores(fast.records), task_scores(slow.records)
    assert fs["geomean_vs_torch_compile"] > ss["geomean_vs_torch_compile"] and fs["median_s"] > ss["median_s"]
    for r in fast.records:  # the exported kernel reproduces ours_triton's `run` figure within noise
        assert 0.85 < r["speedup"]["vs_ours_triton"] < 1.18, r["speedup"]


@gpu_only
def test_device_sync_eager_timer_sees_side_stream_work():
    # The evaluator's eager timer (and its fallback when capture fails) waits for the whole
    # device: work on an unjoined side stream, which CUDA events on the caller's stream miss
    # and which makes graph capture fail, is timed in full.
    import torch

    from solbench.core import timing

    x = torch.randn(1 << 26, device="cuda")  # 256 MB in, 256 MB out: ~120 us on an H100/H200
    y = torch.empty_like(x)
    side = torch.cuda.Stream()

    def plain(i):
        torch.mul(x, 2.0, out=y)

    def hidden(i):
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            torch.mul(x, 2.0, out=y)

    ref = timing.time_gpu(plain, 1, flush=False, mode="eager").median_us
    events = timing.time_gpu(hidden, 1, flush=False, mode="eager").median_us
    synced = timing.time_gpu(hidden, 1, flush=False, mode="eager", eager="device_sync")
    fallback = timing.time_gpu(hidden, 1, flush=False, eager="device_sync")
    torch.cuda.synchronize()
    assert events < 0.5 * ref, (events, ref)
    assert synced.mode == "eager_device_sync" and synced.median_us > 0.8 * ref, (synced, ref)
    assert fallback.mode == "eager_device_sync" and fallback.median_us > 0.8 * ref, (fallback, ref)
    assert any("unjoined" in n for n in fallback.notes), fallback.notes
