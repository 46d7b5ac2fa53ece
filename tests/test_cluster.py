"""``solbench run --cluster`` on a local Ray instance: two CPU workers standing in for GPUs (the
``solbench_gpu`` resource), the smoke shapes of two cheap operators with torch_eager only."""
import collections
import json
import os
import signal

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'solbench[cluster]'): "
                                        "the cluster tests need it")

from solbench import cli  # noqa: E402 - after the skip: needs Ray
from solbench.cluster import GPU_STANDIN, run_cluster  # noqa: E402
from solbench.runner import RunConfig, read_records, record_key, run  # noqa: E402

OPS = ["silu_and_mul", "rms_norm"]


def _cfg(out):
    return RunConfig(ops=OPS, impls=["torch_eager"], out=str(out), smoke=True)


def _keys(records):
    return collections.Counter((record_key(r), r["status"]) for r in records)


@pytest.fixture(scope="module")
def cluster():
    # Two workers' worth of the resource that stands in for GPUs; workers inherit this process's
    # environment (TRITON_INTERPRET, and SOLBENCH_CACHE from conftest, also forwarded explicitly).
    ray.init(address="local", num_cpus=2, resources={GPU_STANDIN: 2}, include_dashboard=False, log_to_driver=False)
    yield "local:2"
    ray.shutdown()


@pytest.fixture(scope="module")
def local_records(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "local.jsonl"
    run(_cfg(out))
    return read_records(out)


def _unit(key):
    return f"{key[0]} #{key[1]}"


def test_split_over_two_workers_gives_the_records_of_a_local_run(cluster, local_records, tmp_path, capsys):
    out = tmp_path / "cluster.jsonl"
    rc = cli.main(["run", "--ops", ",".join(OPS), "--impls", "torch_eager", "--smoke", "--out", str(out),
                   "--cluster", cluster])
    n = len(local_records)
    assert rc == 0 and f"units {n}/{n}: {n} done" in capsys.readouterr().out  # the log's progress lines
    recs = read_records(out)
    assert _keys(recs) == _keys(local_records)
    assert max(_keys(recs).values()) == 1
    for r in recs:  # where each record was measured
        assert r["cluster"]["node"] and r["cluster"]["node_id"] and r["cluster"]["attempt"] == 1
        assert "gpu_uuid" in r["cluster"] and r["env"]["node"] == r["cluster"]["node"]


def test_killed_worker_unit_retried_then_fail_after_the_limit(cluster, local_records, tmp_path):
    out = tmp_path / "cluster.jsonl"
    unit_names = sorted({f"{r['op']} #{r['shape_id']}" for r in local_records})
    once, always = unit_names[0], unit_names[1]
    kills = collections.Counter()

    def kill(unit, worker):
        # SIGKILL the worker process right after the unit was handed to it (mid-unit).
        if (unit.name == once and kills[once] == 0) or unit.name == always:
            kills[unit.name] += 1
            os.kill(worker["worker_pid"], signal.SIGKILL)

    res = run_cluster(_cfg(out), cluster, attempts=2, on_dispatch=kill)
    recs = read_records(out)
    assert kills == {once: 1, always: 2}
    # Every key once: the twice-killed unit as FAIL, the rest as measured locally.
    expected = collections.Counter({(k, "fail" if _unit(k) == always else status): 1
                                    for k, status in _keys(local_records)})
    assert _keys(recs) == expected
    by_unit = {f"{r['op']} #{r['shape_id']}": r for r in recs}
    assert by_unit[once]["status"] == "ok" and by_unit[once]["cluster"]["attempt"] == 2
    failed = by_unit[always]
    assert failed["status"] == "fail" and "worker died on each of 2 attempts" in failed["reason"]
    assert res.retries == 2 and res.failed_units == 1


def test_interrupted_driver_resumes_from_the_file(cluster, local_records, tmp_path):
    out = tmp_path / "cluster.jsonl"

    def interrupt(kind, msg, state):
        if state.done == 1:
            raise KeyboardInterrupt  # what Ctrl-C does to the driver between two events

    with pytest.raises(KeyboardInterrupt):
        run_cluster(_cfg(out), cluster, on_event=interrupt)
    first = read_records(out)
    assert 1 <= len(first) < len(local_records)
    res = run_cluster(_cfg(out), cluster)
    assert res.skipped_existing == len(first)
    assert _keys(read_records(out)) == _keys(local_records)


def test_eval_batch_on_the_cluster_writes_the_leaderboard_and_records(cluster, tmp_path, capsys):
    import shutil
    from pathlib import Path

    folder = tmp_path / "batch"
    folder.mkdir()
    shutil.copy(Path(__file__).parent / "eval" / "candidates" / "model_correct.py", folder / "silu_and_mul.py")
    out = tmp_path / "eval.jsonl"
    rc = cli.main(["eval", "--batch", str(folder), "--shapes", "0", "--no-edge", "--out", str(out),
                   "--cluster", cluster])
    assert rc == 0, capsys.readouterr()
    row, = json.loads((folder / "leaderboard.json").read_text())["candidates"]
    assert row["op"] == "silu_and_mul" and row["fraction_correct"] == 1.0
    cand = [r for r in read_records(out) if r.get("candidate")]
    assert cand and all(r["verdict"] == "pass" for r in cand)
    # The records name the driver's file and where they were evaluated.
    assert {r["candidate"]["path"] for r in cand} == {str((folder / "silu_and_mul.py").resolve())}
    assert all(r["cluster"]["node"] for r in cand)
