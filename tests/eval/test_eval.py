"""Candidate evaluation end to end: the hostile-candidate suite (tests/eval/candidates/), one test
per attack class of the threat model (docs/EVAL.md), isolation, scores, records. Each evaluation
starts one worker subprocess (a torch import, ~3 s), so every test uses one small shape and the
judge's own logic is tested in-process in test_judge.py. The GPU part (stream, capture and
doing-less tricks, timing, ranking) runs on a device only."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
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
                     baselines=kw.pop("baselines", []), **kw)
    return evaluate(cfg)


def failed(name: str, *needles: str, **kw) -> dict:
    """The one record of ``name``: a FAIL whose reason has one of ``needles``, with no figure."""
    r, = run_eval(name, **kw).records
    assert r["verdict"] == "fail" and r["status"] == "fail", (name, r["verdict"], r["reason"])
    assert any(n in r["reason"] for n in needles), (name, r["reason"])
    assert r["time_us"] is None and r["s_achievable"] is None
    return r


WRONG = ("elements outside atol", "constant output", "NaN")  # the judge's comparison, in its own process


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
    # The record names the file that ran by the hash of its bytes, taken before it ran.
    assert recs[0]["candidate"]["sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["model_correct", "prints_megabytes"])
def test_honest_candidates_pass(name):
    # prints_megabytes: 9 MB at import and 256 KB a call go to the worker's log, not the verdict.
    res = run_eval(name)
    r, = res.records
    assert r["verdict"] == "pass", r["reason"]
    assert r["impl_facts"]["resolved"].startswith("Model" if name == "model_correct" else "function")
    assert len(r["reason"]) < 100


@cpu_only
def test_honest_candidate_passes_the_timing_protocol_on_cpu_without_a_figure():
    r, = run_eval("model_correct", time_on_cpu=True).records
    assert r["verdict"] == "pass", r["reason"]
    assert r["time_us"] is None and r["timing"] is None and r["perf"] == NO_GPU  # a CPU time is no figure
    assert r["integrity"]["timing_check"]["samples"] > 0 and len(r["integrity"]["windows"]) == 2
    assert all(a["values"] == "digests and values" for a in r["integrity"]["perf_audit"])


# ---- the attack classes (docs/EVAL.md, "Threat model") -------------------------------------------

def test_patching_the_judge_or_its_tools_changes_nothing_it_uses():
    # Patches the checker, the spec's tolerance and cost model, sys.modules and builtins inside
    # its own process; the judge never imported any of them there. Off by one: FAIL.
    failed("patch_judge", "elements outside atol")


@cpu_only
def test_a_patched_clock_is_a_timing_mismatch():
    # The clocks it can reach are its own process's; the judge's clock around each pass is not.
    r = failed("patch_timer", "integrity: timing mismatch", time_on_cpu=True)
    assert "work ran outside the timed calls" in r["reason"]


@pytest.mark.parametrize("name", ["read_frames", "predict_audit"])
def test_reading_the_judges_state_finds_nothing_to_use(name):
    # Frames and gc hold no reference, token or audit choice in the worker (they live in the
    # judge); every check call is judged, so predicting which one is audited gains nothing.
    failed(name, *WRONG)


@pytest.mark.parametrize("name,needles", [("lazy_parameter", ("integrity: fake output", "tensor subclass")),
                                          ("profile_hook", WRONG), ("constant_output", ("constant output",))])
def test_lazy_fake_or_degenerate_outputs_fail(name, needles):
    # Only bytes cross to the judge: a Parameter subclass computed when read is refused by name,
    # and a hook that would copy the reference in at judging time never sees one.
    failed(name, *needles)


@pytest.mark.parametrize("name,needles,kw", [
    ("cache_after_check", WRONG, {}),            # stale outputs after the first calls
    ("memo_by_pointer", WRONG, {}),              # same addresses, new values (the set refilled in place)
    ("writes_inputs", ("integrity: inputs written",), {}),
    ("first_calls", ("integrity: fake output: timed call",), {"time_on_cpu": True}),
    ("background_work", ("integrity: fake output", "integrity: timing mismatch"), {"time_on_cpu": True}),
])
def test_stage_detection_fails(name, needles, kw):
    failed(name, *needles, **kw)


def _alive(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read().replace(b"\0", b" "):
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("namespace", ["1", "0"])
def test_a_survivor_is_named_and_ended(namespace, monkeypatch):
    # A daemon in a new session (double fork + setsid) outlives nothing: with a PID namespace the
    # kernel ends it with the worker; without one the evaluator is its subreaper and ends it.
    monkeypatch.setenv("SOLBENCH_EVAL_NAMESPACE", namespace)
    r = failed("survivor", "integrity: survivor")
    assert "sleep" in r["reason"] and r["integrity"]["survivors"]
    assert _alive("sleep 37.123") == []


def test_a_worker_that_cannot_start_in_a_namespace_starts_without_one(monkeypatch):
    # Some drivers or container profiles refuse a user/PID namespace: the worker dies before any
    # candidate code runs, and the next one starts without it (the records say so).
    from solbench.eval import contain

    monkeypatch.setenv("SOLBENCH_EVAL_NAMESPACE", "1")
    monkeypatch.setattr(contain, "_NS_PREFIX", ["false"])
    res = run_eval("model_correct")
    r, = res.records
    assert r["verdict"] == "pass", r["reason"]
    assert res.workers == 1 and r["integrity"]["pid_namespace"] is False


def test_a_candidate_cannot_change_its_recorded_file_or_the_evaluators_files(tmp_path, monkeypatch):
    src = tmp_path / "self_rewrite.py"
    shutil.copy(CANDIDATES / "self_rewrite.py", src)
    original = src.read_bytes()
    target = tmp_path / "results.jsonl"
    target.write_text("precious\n")
    monkeypatch.setenv("SOLBENCH_EVAL_TEST_TARGET", str(target))
    r = failed(src, *WRONG)
    # It ran from a copy hashed before it ran: the record names the hostile file, which is intact.
    assert r["candidate"]["sha256"] == hashlib.sha256(original).hexdigest() and src.read_bytes() == original
    if r["integrity"]["confinement"].startswith("landlock"):
        assert target.read_text() == "precious\n"  # the write outside its scratch folder was refused


def test_forged_protocol_frames_are_an_integrity_failure():
    failed("forge_protocol", "integrity: protocol")


# ---- bad input -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name,needle", [("wrong_signature", "interface: signature (gate, up) does not match"),
                                         ("syntax_error", "import failed: SyntaxError"),
                                         ("bad_import", "this candidate does not even import")])
def test_bad_input_is_one_clear_line(name, needle):
    r = failed(name, needle)
    assert "\n" not in r["reason"] and len(r["reason"]) < 300


def test_a_missing_file_is_an_error_before_anything_runs():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_eval("no_such_candidate")


# ---- isolation -----------------------------------------------------------------------------------

def test_crash_hang_memory_and_import_failures_are_fails_and_the_evaluator_survives():
    crash, = run_eval("crash").records
    assert crash["verdict"] == "fail" and "exited with code 139 during check" in crash["reason"]
    # A hang on two shapes: each is killed at the stage limit, a fresh worker takes the next.
    res = run_eval("hang", shapes=("0", "9"), timeouts={"check": 2.0})
    assert [r["verdict"] for r in res.records] == ["fail", "fail"] and res.workers == 2
    assert all("check stage ran past its 2 s limit" in r["reason"] for r in res.records)
    assert not any("survivor" in r["reason"] for r in res.records)  # the killed worker is no survivor
    hog, = run_eval("memory_hog", mem_cap_gb=1.0).records
    # Without CUDA the cap is an address-space limit (the allocation fails); a CUDA worker needs
    # a huge address space, so there the resident-set watcher kills it instead.
    assert hog["verdict"] == "fail" and ("allocate" in hog["reason"] or "memory cap" in hog["reason"]), hog["reason"]


@pytest.mark.parametrize("name,namespace,needle", [
    # Each call well within the limit, the stage of nine calls not: one deadline per stage.
    ("slow_calls", "1", "check stage ran past its 2 s limit (waiting for the worker's reply to 'call')"),
    # Bytes keep coming, never a frame: the deadline is checked while reading, not only when idle.
    ("trickle_reply", "1", "check stage ran past its 2 s limit (waiting for the worker's reply to 'call')"),
    # End of file on the channel from a worker that stays alive: its exit is waited for a while only.
    ("closes_channel", "0", "closed its channel to the judge during check"),
])
def test_every_wait_on_the_worker_ends_within_its_stage_limit(name, namespace, needle, monkeypatch):
    monkeypatch.setenv("SOLBENCH_EVAL_NAMESPACE", namespace)
    t0 = time.monotonic()
    res = run_eval(name, timeouts={"check": 2.0})
    r, = res.records
    assert r["verdict"] == "fail" and needle in r["reason"], r["reason"]
    assert time.monotonic() - t0 < 60 and res.workers == 1


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

    from solbench.core.record import candidate_speedups

    base = [{"impl": n, "status": "ok", "time_us": t, "shape_id": 3}
            for n, t in (("ours_triton", 9.0), ("torch_compile", 20.0), ("liger", 12.0))]
    base.append({"impl": "torch_eager", "status": "fail", "time_us": None, "shape_id": 3})
    # A reference is timed beside the others but never ranked as a peer.
    base.append({"impl": "dense_ref", "role": "reference", "status": "ok", "time_us": 11.0, "shape_id": 3})
    sp = candidate_speedups({"time_us": 10.0, "shape_id": 3}, base)
    # vs_ours_triton is the reproduction ratio for the exported ours_triton kernel
    assert sp["vs_ours_triton"] == pytest.approx(0.9) and sp["vs_liger"] == pytest.approx(1.2)
    assert sp["vs_torch_compile"] == pytest.approx(2.0) and "vs_torch_eager" not in sp
    assert sp["best_library_impl"] == "ours_triton" and sp["vs_best_peer"] == pytest.approx(1.2)
    assert sp["vs_dense_ref"] == pytest.approx(1.1)
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


# ---- GPU part (run on the device; output committed under tests/eval/gpu_results/) -----------------

#: Stage limits for the GPU cheat tests: an honest evaluation of one shape takes seconds, so a
#: regression that stalls a stage fails the test (with the stage in its reason) within a few
#: minutes instead of hanging the suite; pytest-timeout, where installed, is the second guard.
GPU_TEST_TIMEOUTS = {"import": 60.0, "check": 30.0, "perf": 60.0}


@gpu_only
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name,needle", [("side_stream", "stream"),
                                         ("skip_when_captured", "integrity: fake output: timed call"),
                                         ("less_when_timed", "integrity: fake output: timed call")])
def test_gpu_stream_capture_and_doing_less_cheats_are_caught(name, needle):
    t0 = time.monotonic()
    r, = run_eval(name, shapes=("1",), timeouts=GPU_TEST_TIMEOUTS).records
    assert r["verdict"] in ("fail", "flagged") and r["time_us"] is None, (r["verdict"], r["reason"], r.get("timing"))
    assert needle in r["reason"] or any(needle in f for f in r["flags"]), r["reason"]
    # side_stream's capture fails and its calls are timed eagerly: the judge's clock caps the
    # samples its near-zero estimate asked for (400 x 200 calls a pass: minutes on an H100).
    assert time.monotonic() - t0 < 120, (time.monotonic() - t0, r.get("timing"))


@gpu_only
@pytest.mark.timeout(400)  # two evals, each compiling torch_compile cold in its subprocess (> 90 s on an H200)
def test_gpu_fast_candidate_ranks_above_slow_and_matches_run(tmp_path):
    shapes = ("1", "5")
    # The baselines are timed by `run`'s rule, the candidate's own: the exported kernel's allocated
    # outputs rotate with its inputs under graph timing just as ours_triton's out= buffers do.
    fast = run_eval(EXAMPLE, shapes=shapes, baselines=["ours_triton", "torch_compile"])
    slow = run_eval("slow_correct", shapes=shapes, baselines=["torch_compile"])
    assert all(r["verdict"] == "pass" and r["time_us"] for r in fast.records + slow.records), [
        (r["shape_id"], r["verdict"], r.get("time_us"), (r.get("reason") or "")[:300]) for r in fast.records + slow.records]
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
