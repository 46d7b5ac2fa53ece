"""Results files a crash or a second run cannot corrupt (solbench.resultsfile, used by `run --out`)."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from solbench.cli import main
from solbench.resultsfile import ResultsFile, ResultsLocked, repair_tail
from solbench.runner import read_records

# The cheapest real run: torch_eager on silu_and_mul's two smoke shapes (about a second).
RUN = ["run", "--ops", "silu_and_mul", "--impls", "torch_eager"]


def _lines(path):
    return path.read_bytes().split(b"\n")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A complete results file of RUN, and its records."""
    out = tmp_path_factory.mktemp("full") / "r.jsonl"
    assert main(RUN + ["--out", str(out)]) == 0
    recs = read_records(out)
    assert len(recs) == 2
    return out.read_bytes(), recs


def test_a_record_without_final_newline_is_kept_and_the_next_starts_a_new_line(tmp_path, full_run, capsys):
    data, recs = full_run
    out = tmp_path / "r.jsonl"
    first = data.split(b"\n")[0]
    out.write_bytes(first)  # one complete record, no final newline (the second shape still to measure)
    assert main(RUN + ["--out", str(out)]) == 0
    assert "no final newline" in capsys.readouterr().err
    again = read_records(out)  # every line parses
    assert len(again) == 2 and json.loads(first) in again, "the record without newline must not be lost"
    assert out.read_bytes().endswith(b"\n") and b"" not in _lines(out)[:-1]
    assert not (tmp_path / "r.jsonl.partial").exists()


def test_a_truncated_last_line_is_moved_aside_and_the_run_resumes(tmp_path, full_run, capsys):
    data, recs = full_run
    out = tmp_path / "r.jsonl"
    first, second = data.split(b"\n")[:2]
    out.write_bytes(first + b"\n" + second[: len(second) // 2])
    assert main(RUN + ["--out", str(out)]) == 0
    err = capsys.readouterr().err
    partial = tmp_path / "r.jsonl.partial"
    assert "cut off" in err and str(partial) in err
    assert partial.read_bytes() == second[: len(second) // 2] + b"\n"
    again = read_records(out)
    assert len(again) == 2 and json.loads(first) in again
    assert {(r["op"], r["shape_id"]) for r in again} == {(r["op"], r["shape_id"]) for r in recs}


def test_repair_tail_leaves_a_sound_file_alone(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text('{"op": "a", "impl": "b"}\n')
    assert repair_tail(out) is None and out.read_text() == '{"op": "a", "impl": "b"}\n'
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    assert repair_tail(empty) is None


def test_each_record_reaches_the_file_when_it_is_appended(tmp_path):
    out = tmp_path / "r.jsonl"
    with ResultsFile(out) as rf:
        rf.open_append()
        rf.append({"op": "a", "impl": "b", "x": float("nan")})
        assert read_records(out) == [{"op": "a", "impl": "b", "x": None}]  # before close: no buffering
        rf.append({"op": "c", "impl": "d"})
        assert len(read_records(out)) == 2


def test_a_second_run_on_the_same_file_is_refused(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    with ResultsFile(out):
        with pytest.raises(ResultsLocked, match="being written by process"):
            ResultsFile(out).acquire()
        assert main(RUN + ["--out", str(out)]) == 2
        assert "being written by process" in capsys.readouterr().err
    # Released: the next run goes ahead.
    with ResultsFile(out):
        pass


def test_a_writer_killed_mid_record_leaves_every_earlier_record_intact(tmp_path):
    out = tmp_path / "r.jsonl"
    # The child writes three records, then SIGKILLs itself halfway through writing the fourth.
    child = textwrap.dedent(f"""
        import os, signal
        from solbench.resultsfile import ResultsFile
        rf = ResultsFile({str(out)!r}); rf.acquire(); rf.open_append()
        for i in range(3):
            rf.append({{"op": "op", "impl": "i", "shape_id": i, "pad": "x" * 5000}})
        real_write = os.write
        def dying_write(fd, data):
            real_write(fd, bytes(data[: len(data) // 2]))
            os.kill(os.getpid(), signal.SIGKILL)
        os.write = dying_write
        rf.append({{"op": "op", "impl": "i", "shape_id": 3, "pad": "x" * 5000}})
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", child], env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    with pytest.raises(ValueError, match="not a JSON record"):
        read_records(out)  # what the kill left: three records and half of a fourth
    with ResultsFile(out) as rf:  # the kernel released the dead writer's lock
        assert len(rf.notes) == 1 and "cut off" in rf.notes[0]
    assert [r["shape_id"] for r in read_records(out)] == [0, 1, 2]
    assert (tmp_path / "r.jsonl.partial").read_bytes().startswith(b'{"op": "op", "impl": "i", "shape_id": 3')
