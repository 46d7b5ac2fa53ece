"""The timing experiments' machinery on a real GPU (skipped without one): the warm-L2 timer is
labelled as such, the flushed timer subtracts its flushes pair by pair and gives a copy a time
near what its bytes take, and the copy-by-size curve is physically sensible."""
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_warm_and_flushed_runs_are_labelled_and_plausible(tmp_path):
    from solbench.runner import RunConfig, read_records, run

    recs = {}
    for mode in ("auto", "flush", "warm"):
        out = tmp_path / f"{mode}.jsonl"
        run(RunConfig(ops=["silu_and_mul"], impls=["ours_triton"], shapes=["0", "25"], out=str(out), cold_l2=mode))
        recs[mode] = {str(r["shape_id"]): r for r in read_records(out)}
    assert {r["timer"] for r in recs["warm"].values()} == {"graph+warm"}
    assert {r["timing"]["cold_l2"] for r in recs["warm"].values()} == {"warm"}
    assert {r["timing"]["cold_l2"] for r in recs["flush"].values()} == {"flush"}
    assert all("interleaved" in r["timing"]["notes"][0] for r in recs["flush"].values())
    for mode in recs:
        big = recs[mode]["25"]  # 241 MB moved: S must be physical under every method but warm
        assert big["status"] == "ok" and big["time_us"] > 0
        if mode != "warm":
            assert 0.5 < big["s_achievable"] < 1.1, (mode, big["s_achievable"])


def test_copy_by_size_is_physical():
    from solbench.core import calibration, hardware

    rows = calibration.copy_by_size(sizes=(16 << 20, 256 << 20))
    bw = hardware.load_calibration(hardware.device_key()) or hardware.calibrate()
    small, big = rows
    assert small["cold_l2"] == "flush" and big["cold_l2"] == "rotate"
    # a bigger copy amortizes the fixed cost better, and neither beats the calibrated copy by much
    assert small["bandwidth"] < big["bandwidth"] < 1.1 * bw["bandwidth"]
