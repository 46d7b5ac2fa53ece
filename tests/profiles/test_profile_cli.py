"""End to end on CPU: `solbench profile import` -> `solbench run --weights`, and
`solbench profile shapes` -> `solbench run --suite`; many files; errors from the command line."""
import json
import time
from pathlib import Path

import pytest

from _profile_traces import SILU, decode_step_trace
from solbench.cli import main

FIX = Path(__file__).parent / "fixtures"


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def test_import_then_run_with_weights(tmp_path, capsys):
    w = tmp_path / "weights.json"
    assert main(["profile", "import", str(FIX / "nsys_kern_sum.csv"), str(FIX / "nsys_kern_sum_units_tabs.txt"),
                 "--out", str(w)]) == 0
    out = capsys.readouterr().out
    assert "silu_and_mul" in out and "unclassified" in out and "my_custom_fused_thing_kernel" in out
    data = json.loads(w.read_text())
    assert data["profiles"] == 2
    # Mean of per-profile shares, by hand: silu 0.10 and 0.30; gemm 0.54 and 0.60; unclassified 0.03 and 0.
    assert data["shares"]["silu_and_mul"] == pytest.approx(0.20)
    assert data["shares"]["gemm"] == pytest.approx(0.57)
    assert data["unclassified"] == pytest.approx(0.015)
    assert data["shares"]["fused_add_rms_norm"] == pytest.approx(0.04)
    assert sum(data["shares"].values()) + data["unclassified"] == pytest.approx(1.0)
    # Time-weighted: silu (100 + 750) / (1000 + 2500) us.
    assert data["shares_time_weighted"]["silu_and_mul"] == pytest.approx(850 / 3500)
    assert data["top_unclassified"][0]["name"] == "my_custom_fused_thing_kernel"
    assert [p["path"] for p in data["per_profile"]] == [str(FIX / "nsys_kern_sum.csv"),
                                                       str(FIX / "nsys_kern_sum_units_tabs.txt")]

    res = tmp_path / "r.jsonl"
    assert main(["run", "--weights", str(w), "--ops", "silu_and_mul", "--impls", "torch_eager",
                 "--out", str(res)]) == 0
    recs = records(res)
    assert recs and all(r["status"] == "ok" for r in recs)
    assert all(r["importance"] == pytest.approx(0.20) for r in recs)


def test_time_weighting_and_json(tmp_path, capsys):
    assert main(["profile", "import", str(FIX / "nsys_kern_sum.csv"), str(FIX / "nsys_kern_sum_units_tabs.txt"),
                 "--weighting", "time", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["weighting"] == "time"
    assert data["shares"]["silu_and_mul"] == pytest.approx(850 / 3500)
    assert data["shares_mean"]["silu_and_mul"] == pytest.approx(0.20)


def test_user_rules_from_the_command_line(tmp_path, capsys):
    extra = tmp_path / "extra.yaml"
    extra.write_text("rules:\n  - {name: mine, kernel: '^my_custom_fused_thing', target: silu_and_mul}\n")
    assert main(["profile", "import", str(FIX / "nsys_kern_sum.csv"), "--rules", str(extra), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["unclassified"] == 0 and data["shares"]["silu_and_mul"] == pytest.approx(0.13)


def test_shapes_then_run_suite(tmp_path, capsys):
    b = decode_step_trace()
    for i in range(3):
        e = b.op("_C::silu_and_mul", 1000 + 100 * i, 20, dims=[[6, 48], [6, 96]])
        b.kernel(SILU, 1010 + 100 * i, 4, ext=e)
    trace = b.dump(tmp_path / "trace.json.gz", gz=True)
    suite = tmp_path / "suite.json"
    assert main(["profile", "shapes", str(trace), "--out", str(suite)]) == 0
    assert "silu_and_mul" in capsys.readouterr().out
    data = json.loads(suite.read_text())
    silu = next(o for o in data["operators"] if o["name"] == "silu_and_mul")
    assert [s["input_kwargs"]["shape"] for s in silu["shapes"]] == [[6, 96], [4, 128]]
    res = tmp_path / "r.jsonl"
    assert main(["run", "--suite", str(suite), "--ops", "silu_and_mul", "--impls", "torch_eager",
                 "--out", str(res)]) == 0
    recs = records(res)
    assert sorted(r["shape_id"] for r in recs) == [0, 1]
    assert all(r["status"] == "ok" for r in recs)


def test_shapes_without_recorded_shapes(tmp_path, capsys):
    assert main(["profile", "shapes", str(FIX / "nsys_kern_sum.csv")]) == 2
    assert "record_shapes=True" in capsys.readouterr().err


def test_bad_file_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("Time (%)\tTotal Time\tInstances\tName\n50.0\t12 parsecs\t3\tnvjet_b\n")
    assert main(["profile", "import", str(FIX / "nsys_kern_sum.csv"), str(bad)]) == 2
    assert f"{bad}:2:" in capsys.readouterr().err
    # --skip-bad warns and goes on with the readable ones.
    assert main(["profile", "import", str(FIX / "nsys_kern_sum.csv"), str(bad), "--skip-bad", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["profiles"] == 1 and "skipped" in captured.err


def test_thousand_small_summaries_take_seconds(tmp_path, capsys):
    folder = tmp_path / "fleet"
    folder.mkdir()
    src = (FIX / "nsys_kern_sum.csv").read_text()
    for i in range(1000):
        (folder / f"host{i:04d}.csv").write_text(src.replace("500000,10", f"{500000 + 1000 * i},10"))
    t0 = time.perf_counter()
    assert main(["profile", "import", str(folder), "--json"]) == 0
    elapsed = time.perf_counter() - t0
    data = json.loads(capsys.readouterr().out)
    assert data["profiles"] == 1000
    assert elapsed < 30, f"{elapsed:.1f} s for 1000 summaries"
    print(f"1000 summaries in {elapsed:.2f} s")
