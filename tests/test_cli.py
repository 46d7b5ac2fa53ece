"""The command line, end to end on CPU."""
import json

import pytest

from solbench.cli import main
from solbench.runner import read_records

REQUIRED = {"op", "shape_id", "impl", "status", "reason", "time_us", "sol_us", "sol_achievable_us", "s",
            "s_achievable", "hw", "env"}


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "silu_and_mul" in data
    assert data["silu_and_mul"]["shapes"] == 37 and "ours_triton" in data["silu_and_mul"]["impls"]
    assert all(set(v) == {"shapes", "importance", "impls"} for v in data.values())


def test_roofline_json_without_gpu(capsys):
    assert main(["roofline", "--ops", "silu_and_mul", "--hw", "H20", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 37
    r = rows[0]
    assert set(r) >= {"op", "shape_id", "flops", "bytes_read", "bytes_written", "ai", "regime", "sol_us"}
    # [1, 1536] bf16: 3072 B in, 1536 B out, on 4.0 TB/s.
    assert r["bytes_read"] == 3072 and r["bytes_written"] == 1536
    assert abs(r["sol_us"] - 4608 / 4.0e12 * 1e6) < 1e-9


def test_run_smoke_writes_jsonl_and_resumes(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["run", "--ops", "silu_and_mul", "--impls", "ours_triton,torch_eager", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "smoke subset" in text
    recs = read_records(out)
    assert len(recs) == 4 and all(REQUIRED <= set(r) for r in recs)
    assert all(r["status"] == "ok" and r["time_us"] > 0 and r["smoke"] for r in recs)
    assert all(r["env"]["torch"] for r in recs)
    assert main(args) == 0
    assert "4 reused" in capsys.readouterr().out
    assert len(read_records(out)) == 4, "a rerun must not duplicate records"


def test_retry_failed_replaces_only_fail_records(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["run", "--ops", "silu_and_mul", "--impls", "ours_triton,torch_eager", "--out", str(out)]
    assert main(args) == 0
    recs = read_records(out)
    recs[0]["status"], recs[0]["reason"], recs[0]["time_us"] = "fail", "made up for the test", None
    out.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(args) == 0  # a plain rerun keeps the FAIL record
    assert sum(r["status"] == "fail" for r in read_records(out)) == 1
    assert main(args + ["--retry-failed"]) == 0
    assert "3 reused" in capsys.readouterr().out
    again = read_records(out)
    assert len(again) == 4 and all(r["status"] == "ok" for r in again)


def test_remeasure_ops_replaces_only_those_operators_records(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["run", "--ops", "silu_and_mul,rms_norm", "--impls", "ours_triton", "--out", str(out)]
    assert main(args) == 0
    recs = read_records(out)
    for r in recs:  # mark every record, to see which ones get measured again
        r["time_us"] = 12345.0
    out.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert main(args + ["--remeasure-ops", "silu_and_mul"]) == 0
    again = read_records(out)
    assert len(again) == len(recs)
    assert all((r["time_us"] == 12345.0) == (r["op"] == "rms_norm") for r in again)
    replaced = read_records(str(out) + ".replaced.jsonl")  # the old records are not lost
    assert len(replaced) == sum(r["op"] == "silu_and_mul" for r in recs) and {r["op"] for r in replaced} == {"silu_and_mul"}
    capsys.readouterr()
    for bad, needle in ((["run", "--ops", "rms_norm", "--remeasure-ops", "rms_norm"], "needs an --out"),
                        (args + ["--remeasure-ops", "nope"], "unknown operators nope"),
                        (["run", "--ops", "rms_norm", "--out", str(out), "--remeasure-ops", "silu_and_mul"], "not among --ops")):
        assert main(bad) == 2 and needle in capsys.readouterr().err, bad
    assert len(read_records(out)) == len(recs)  # a refused request changed nothing
    # With --shapes only those shapes' records of the operator are measured again (the others are
    # neither dropped nor measured: the run takes no other shapes).
    first = str(next(r["shape_id"] for r in recs if r["op"] == "silu_and_mul"))
    for r in recs:
        r["time_us"] = 12345.0
    out.write_text("".join(json.dumps(r) + "\n" for r in recs))
    args = ["run", "--ops", "silu_and_mul", "--impls", "ours_triton", "--out", str(out)]
    assert main(args + ["--remeasure-ops", "silu_and_mul", "--shapes", first]) == 0
    again = read_records(out)
    assert len(again) == len(recs)
    assert all((r["time_us"] == 12345.0) == (r["op"] != "silu_and_mul" or str(r["shape_id"]) != first) for r in again)


def test_time_budget_stops_cleanly_and_the_rerun_resumes(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    args = ["run", "--ops", "silu_and_mul", "--impls", "ours_triton,torch_eager", "--out", str(out)]
    # A budget spent at once: every run still measures one shape (so budgeted reruns always make
    # progress); the second shape is left for the rerun.
    assert main(args + ["--time-budget", "1e-9"]) == 0
    text = capsys.readouterr().out
    assert "--time-budget" in text and "2 records not measured" in text and "resume" in text
    assert len(read_records(out)) == 2
    assert main(args) == 0
    assert "2 reused" in capsys.readouterr().out
    recs = read_records(out)
    assert len(recs) == 4 and all(r["status"] == "ok" for r in recs)
    # Where each record's wall time went is recorded.
    assert all({"prepare", "check", "timing"} <= set(r["impl_facts"]["phase_s"]) for r in recs)


def test_time_budget_must_be_positive():
    with pytest.raises(SystemExit, match="positive"):
        main(["run", "--ops", "silu_and_mul", "--time-budget", "-1"])


def test_bad_input_errors(capsys):
    assert main(["run", "--ops", "no_such_op"]) == 2
    assert "unknown operator 'no_such_op'" in capsys.readouterr().err
    # A typo in --shapes or --impls must not run nothing and say nothing.
    assert main(["run", "--ops", "silu_and_mul,rms_norm", "--impls", "torch_eager", "--shapes", "99", "--full"]) == 2
    assert "shape id(s) 99 match no shape of the selected operators (silu_and_mul: 0-36; rms_norm: 0-55)" in \
        capsys.readouterr().err
    assert main(["run", "--ops", "silu_and_mul", "--impls", "ours_trito"]) == 2
    err = capsys.readouterr().err
    assert "ours_trito registered for none of the selected operators" in err and "ours_triton" in err


def test_shapes_and_impls_only_some_operators_have_are_fine(tmp_path):
    # rms_norm has a shape 47, silu_and_mul does not: each operator runs the ids it has.
    out = tmp_path / "r.jsonl"
    assert main(["run", "--ops", "silu_and_mul,rms_norm", "--impls", "torch_eager", "--shapes", "0,47", "--full",
                 "--out", str(out)]) == 0
    assert sorted((r["op"], r["shape_id"]) for r in read_records(out)) == [
        ("rms_norm", 0), ("rms_norm", 47), ("silu_and_mul", 0)]


def test_calibrate_use_only_on_the_same_device(tmp_path, monkeypatch, capsys):
    import pytest

    from solbench.core import hardware

    monkeypatch.setenv("SOLBENCH_CACHE", str(tmp_path / "cache"))
    saved = {"device": "NVIDIA H100 80GB HBM3", "bandwidth": 3.0e12, "peaks": {"bf16_tc": 7.4e14}}
    f = tmp_path / "cal.json"
    f.write_text(json.dumps(saved))
    with pytest.raises(SystemExit, match="measured on 'NVIDIA H100"):
        main(["calibrate", "--use", str(f)])
    saved["device"] = hardware.device_name()
    f.write_text(json.dumps(saved))
    assert main(["calibrate", "--use", str(f)]) == 0
    assert hardware.load_calibration(hardware.device_key())["bandwidth"] == 3.0e12
    # The copy-by-size curve times copies against the L2: a clear refusal without a GPU, and the
    # adopted calibration is left as it was.
    with pytest.raises(SystemExit, match="--by-size: needs a CUDA device"):
        main(["calibrate", "--use", str(f), "--by-size"])
    assert "copy_by_size" not in hardware.load_calibration(hardware.device_key())


def test_calibrate_prints_the_copy_by_size_curve(tmp_path, monkeypatch, capsys):
    from solbench.core import hardware

    monkeypatch.setenv("SOLBENCH_CACHE", str(tmp_path / "cache"))
    cal = {"device": hardware.device_name(), "bandwidth": 4.0e12, "peaks": {},
           "copy_by_size": [{"bytes": 64 << 20, "us": 20.0, "bandwidth": 3.355e12, "cold_l2": "rotate"}]}
    f = tmp_path / "cal.json"
    f.write_text(json.dumps(cal))
    assert main(["calibrate", "--use", str(f)]) == 0
    out = capsys.readouterr().out
    assert "copy of      64 MiB" in out and "0.839 of the calibrated bandwidth (rotate)" in out


def test_cold_l2_option_is_validated_and_cpu_runs_ignore_it(tmp_path):
    from solbench.runner import RunConfig, run

    with pytest.raises(ValueError, match="cold_l2"):
        run(RunConfig(ops=["silu_and_mul"], impls=["torch_eager"], cold_l2="rotate-always"))
    for mode in ("flush", "warm"):
        out = tmp_path / f"{mode}.jsonl"
        assert main(["run", "--ops", "silu_and_mul", "--impls", "torch_eager", "--cold-l2", mode, "--out", str(out)]) == 0
        assert {r["timer"] for r in read_records(out)} == {"cpu"}  # the CPU timer has no L2 to flush or keep


def test_carried_records_are_measured_again_on_resume(tmp_path, capsys):
    # A results file completed with records copied from another run (marked carried_from) gets
    # them replaced by the next run that resumes it.
    out = tmp_path / "r.jsonl"
    args = ["run", "--ops", "silu_and_mul", "--impls", "ours_triton,torch_eager", "--out", str(out)]
    assert main(args) == 0
    recs = read_records(out)
    recs[1]["carried_from"], recs[1]["time_us"] = "another file", 12345.0
    out.write_text("".join(json.dumps(r) + "\n" for r in recs))
    capsys.readouterr()
    assert main(args) == 0
    assert "3 reused" in capsys.readouterr().out
    again = read_records(out)
    assert len(again) == 4 and not any(r.get("carried_from") for r in again)
    assert all(r["time_us"] != 12345.0 for r in again)
