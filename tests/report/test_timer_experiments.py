"""benchmarks/timer_experiments.py reads one device run's experiment files and prints the
comparisons the next decisions rest on (flush vs rotation, decode gaps, copy by size, eval
reproduction). Synthetic records with known ratios go in; the ratios must come out."""
import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "timer_experiments.py"


def _tool():
    spec = importlib.util.spec_from_file_location("timer_experiments", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rec(op, sid, impl, t, mb, cold="rotate", **extra):
    return {"schema": 1, "op": op, "shape_id": sid, "impl": impl, "status": "ok", "time_us": t, "hw": "H200",
            "device": "NVIDIA H200", "timer": "graph", "smoke": False,
            "cost": {"bytes_read": mb * 1e6 * 2 / 3, "bytes_written": mb * 1e6 / 3}, "timing": {"cold_l2": cold}, **extra}


def _write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_reads_every_experiment_and_prints_the_ratios(tmp_path, capsys):
    sweep = tmp_path / "sweep.jsonl"
    _write(sweep, [_rec("silu_and_mul", 4, "ours_triton", 20.0, 70), _rec("silu_and_mul", 7, "ours_triton", 100.0, 500)])
    _write(tmp_path / "flush_check_1.jsonl", [_rec("silu_and_mul", 4, "ours_triton", 24.0, 70, "flush"),
                                               _rec("silu_and_mul", 7, "ours_triton", 101.0, 500, "flush")])
    _write(tmp_path / "decode_warm.jsonl", [_rec("rms_norm", 47, "ours_triton", 3.0, 0.02, "warm", p20_us=2.9, p80_us=3.2),
                                             _rec("rms_norm", 47, "liger", 2.0, 0.02, "warm", p20_us=1.9, p80_us=2.1)])
    _write(tmp_path / "eval_silu_and_mul.jsonl", [_rec("silu_and_mul", 4, "candidate", 21.0, 70, "flush", verdict="pass",
                                                       speedup={"vs_ours_triton": 0.95})])
    (tmp_path / "calibration.json").write_text(json.dumps(
        {"bandwidth": 4e12, "copy_by_size": [{"bytes": 64 << 20, "us": 20.0, "bandwidth": 3.4e12, "cold_l2": "rotate"}]}))
    assert _tool().main([str(tmp_path), "--sweep", str(sweep)]) == 0
    out = capsys.readouterr().out
    assert "S of the copy 0.850" in out
    assert "64-256 MB    1.200  (1)" in out and ">= 256 MB    1.010  (1)" in out   # flushed / rotated
    assert "1.50 vs liger" in out                                                 # ours / best peer, warm
    assert "warm: median p20-p80 spread 10.0% of the median over 2 records" in out
    assert "median 0.950" in out


def test_missing_files_print_nothing(tmp_path, capsys):
    assert _tool().main([str(tmp_path), "--sweep", str(tmp_path / "none.jsonl")]) == 0
    assert capsys.readouterr().out == ""


def test_replay_sizes_and_the_noise_probe(tmp_path, capsys):
    def graph(rec, k):
        rec["timing"].update(mode="graph", calls_per_sample=k)
        return rec

    _write(tmp_path / "warm.jsonl", [graph(_rec("rms_norm", 28, "ours_triton", 2.5, 0.02, "warm"), 4),
                                     graph(_rec("rms_norm", 28, "liger", 1.6, 0.02, "warm"), 400)])
    for i, t in enumerate((1.5, 1.8, 1.6), 1):
        _write(tmp_path / f"noise_{i}.jsonl", [_rec("silu_and_mul", 0, "ours_triton", t, 0.005, "flush",
                                                    p20_us=t * 0.95, p80_us=t * 1.05)])
    assert _tool().main([str(tmp_path), "--sweep", str(tmp_path / "none.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "warm        2 records  p10       10 us" in out and "under 50 us: 1" in out  # 4 x 2.5 us
    assert "1.50   1.80   1.60  max/min 1.200  p20-p80 10.0%" in out
