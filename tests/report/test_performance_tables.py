"""benchmarks/performance_tables.py: the docs' tables come from the committed files, and the
two-run table calls a shape behind only when both runs say so."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("performance_tables", ROOT / "benchmarks" / "performance_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rec(op, sid, impl, t):
    return {"op": op, "shape_id": sid, "impl": impl, "status": "ok", "time_us": t}


def test_behind_in_both_needs_both_runs(capsys):
    mod = _module()
    first = [_rec("x", 0, "ours_triton", 1.10), _rec("x", 0, "liger", 1.0),    # 10% behind
             _rec("x", 1, "ours_triton", 1.10), _rec("x", 1, "liger", 1.0),
             _rec("x", 2, "ours_triton", 0.90), _rec("x", 2, "liger", 1.0)]
    second = [_rec("x", 0, "ours_triton", 1.06), _rec("x", 0, "liger", 1.0),   # behind again
              _rec("x", 1, "ours_triton", 0.97), _rec("x", 1, "liger", 1.0),   # ahead this time
              _rec("x", 2, "ours_triton", 1.20), _rec("x", 2, "liger", 1.0)]
    mod.behind_in_both(first, second)
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| x |")][0]
    assert row == "| x | 3 | 0 (1.10x / 1.06x) | 0 (1.10x / 1.06x) |"


def test_each_operators_second_run_comes_from_the_first_file_that_has_it():
    mod = _module()
    partial = [_rec("x", 0, "ours_triton", 1.0)]
    earlier = [_rec("x", 0, "ours_triton", 2.0), _rec("y", 0, "ours_triton", 3.0)]
    assert mod.second_run([partial, earlier]) == [_rec("x", 0, "ours_triton", 1.0), _rec("y", 0, "ours_triton", 3.0)]


def test_tables_print_from_the_committed_h200_files(capsys, monkeypatch):
    res = ROOT / "benchmarks" / "results" / "h200"
    monkeypatch.setattr("sys.argv", ["performance_tables.py", str(res / "repeat.jsonl"), "--second-run",
                                     str(res / "sweep.jsonl")])
    exec(compile((ROOT / "benchmarks" / "performance_tables.py").read_text(), "performance_tables.py", "exec"),
         {"__name__": "__main__"})
    out = capsys.readouterr().out
    assert "| silu_and_mul | 37/37 |" in out and "by > 5% in both" in out


def test_bars_count_ties_apart_from_losses(capsys):
    mod = _module()
    recs = []
    for sid, ours in enumerate((0.90, 1.004, 1.03)):  # ahead, level (0.4% behind), behind
        for impl, t in (("ours_triton", ours), ("liger", 1.0)):
            recs.append({**_rec("x", sid, impl, t), "cost": {"bytes_read": 1e3, "bytes_written": 1e3},
                         "s_achievable": 0.5, "launch_floor_us": 0.7})
    mod.bars(recs)
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| x |")][0]
    assert row.split(" | ")[3:5] == ["1/3", "2/3"]  # faster on one shape, within 1% on two

