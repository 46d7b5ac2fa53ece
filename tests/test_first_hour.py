"""What a new user meets in the first hour: a run that says what it does in a log, names its files,
stops cleanly on Ctrl-C, and one-line errors (naming the file) for empty, binary or wrong input."""
import json

import pytest

from solbench.cli import main
from solbench.runner import read_records

RUN = ["run", "--ops", "silu_and_mul,rms_norm", "--impls", "torch_eager"]


def test_a_logged_run_prints_a_line_per_operator_names_its_files_and_the_running_clock(tmp_path, capsys,
                                                                                       monkeypatch):
    import solbench.runner as runner

    # On a GPU the clock is read after each shape's timing (the run's start sees an idle GPU).
    monkeypatch.setattr(runner, "running_clocks", lambda device: {"clock_sm_mhz": "1980"})
    out, html = tmp_path / "r.jsonl", tmp_path / "r.html"
    assert main(RUN + ["--out", str(out), "--report", str(html)]) == 0
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert any(ln.startswith("silu_and_mul: 2 ok in ") for ln in lines)
    assert any(ln.startswith("rms_norm: 2 ok in ") and "(records 4/4)" in ln for ln in lines)
    assert lines[-2:] == [f"results: {out}", f"report:  {html}"]
    assert html.exists() and html.stat().st_size > 1000
    recs = read_records(out)
    assert all(r["env"]["clock_sm_mhz"] == "1980" and "clock_sm_start_mhz" in r["env"] for r in recs)


def test_report_needs_out_and_max_shapes_is_positive():
    with pytest.raises(SystemExit, match="--report needs --out"):
        main(RUN + ["--report", "x.html"])
    with pytest.raises(SystemExit, match="--max-shapes must be at least 1"):
        main(RUN + ["--max-shapes", "0"])


def test_max_shapes_keeps_the_first_shapes_of_each_operator(tmp_path):
    out = tmp_path / "r.jsonl"
    assert main(RUN + ["--max-shapes", "1", "--out", str(out)]) == 0
    assert sorted(r["op"] for r in read_records(out)) == ["rms_norm", "silu_and_mul"]


def test_ctrl_c_says_how_many_records_are_safe_and_how_to_resume(tmp_path, capsys, monkeypatch):
    import solbench.runner as runner

    out = tmp_path / "r.jsonl"

    def interrupted(cfg, **kw):
        if cfg.out:
            with open(cfg.out, "a") as f:
                f.write(json.dumps({"op": "rms_norm", "impl": "torch_eager"}) + "\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run", interrupted)
    assert main(RUN + ["--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"interrupted: 1 records in {out}; rerun with the same --out to resume" in err
    assert "Traceback" not in err
    assert main(RUN) == 130
    assert "nothing was saved" in capsys.readouterr().err


@pytest.fixture
def files(tmp_path):
    empty, binary, good = tmp_path / "empty.jsonl", tmp_path / "bin.jsonl", tmp_path / "good.jsonl"
    empty.write_text("")
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    good.write_text(json.dumps({"op": "rms_norm", "impl": "x", "shape_id": 0}) + "\n")
    return empty, binary, good


def test_empty_files_get_one_line_errors(files, tmp_path, capsys):
    empty, _, good = files
    assert main(["compare", str(empty), str(good)]) == 2
    assert f"{empty}: no records to compare" in capsys.readouterr().err
    assert main(["compare", str(good), str(empty)]) == 2
    assert f"{empty}: no records to compare" in capsys.readouterr().err
    pytest.importorskip("matplotlib")
    assert main(["plot", str(empty), "-o", str(tmp_path / "f.png")]) == 2
    err = capsys.readouterr().err
    assert f"{empty}: no records to plot" in err and "ceiling" not in err


def test_binary_files_are_named_not_a_decode_error(files, tmp_path, capsys):
    _, binary, _ = files
    assert main(["report", str(binary), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert f"{binary}: not a JSONL results file" in err and "UnicodeDecodeError" not in err
    assert main(["run", "--suite", str(binary), "--impls", "torch_eager"]) == 2
    err = capsys.readouterr().err
    assert f"suite file {binary} is not a JSON text file" in err


def test_negative_regression_threshold_is_refused(files, capsys):
    _, _, good = files
    assert main(["compare", str(good), str(good), "--fail-on-regression", "-5"]) == 2
    assert "--fail-on-regression takes a percentage >= 0" in capsys.readouterr().err


def test_profile_counts_refuse_negative_numbers(capsys):
    from solbench.cli import main

    with pytest.raises(SystemExit) as e:
        main(["profile", "shapes", "trace.json", "--top", "-1"])
    assert e.value.code == 2
    assert "-1 is negative" in capsys.readouterr().err
