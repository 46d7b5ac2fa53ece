"""Small shapes: the calibrated cold floor, `s_floor` in records, the suite score against it, and
the report's Atrex-mode deployed S. CPU only; the calibration is mocked where a GPU would be
needed."""
import json

import pytest

from solbench.core import calibration, hardware
from solbench.core.score import deployed_s, suite_scores
from solbench.report import model
from solbench.runner import RunConfig, run


@pytest.fixture
def mocked_calibration(monkeypatch):
    """A calibration of this CPU with a known, large cold floor (so it binds on every shape)."""
    def fake(cold_floor_us):
        cal = {"peaks": {"fp32": 1e11, "bf16_tc": 1e11, "fp16_tc": 1e11}, "bandwidth": 1e10,
               "launch_floor_us": 1.0, "l2_bytes": None, "device": hardware.device_name(), "date": "test",
               "extra": {} if cold_floor_us is None else {"cold_floor_us": cold_floor_us}}
        monkeypatch.setattr(hardware, "load_calibration", lambda key: cal)
    return fake


def _records(tmp_path):
    out = tmp_path / "r.jsonl"
    res = run(RunConfig(ops=["silu_and_mul"], impls=["torch_eager"], out=str(out)))
    return [json.loads(line) for line in out.read_text().splitlines()] or res.records


def test_records_carry_s_floor_from_the_calibrated_cold_floor(tmp_path, mocked_calibration):
    mocked_calibration(5e6)  # 5 s: above any smoke shape's SOL
    recs = [r for r in _records(tmp_path) if r["status"] == "ok"]
    assert recs
    for r in recs:
        assert r["cold_floor_us"] == 5e6
        assert r["s_floor"] == pytest.approx(max(r["sol_achievable_us"], 5e6) / r["time_us"])
        assert r["s_floor"] >= r["s_achievable"]


def test_s_floor_is_none_before_the_floor_is_calibrated(tmp_path, mocked_calibration):
    mocked_calibration(None)
    recs = _records(tmp_path)
    assert recs and all(r["cold_floor_us"] is None and r["s_floor"] is None for r in recs)


def test_suite_score_against_the_floor():
    recs = [{"op": "a", "impl": "x", "status": "ok", "time_us": 10.0, "weight": 1, "s": 0.01, "s_floor": 0.5},
            {"op": "b", "impl": "x", "status": "ok", "time_us": 10.0, "weight": 1, "s": 0.2, "s_floor": 0.2}]
    imp = {"a": 0.5, "b": 0.5}
    assert suite_scores(recs, imp, key="s")["x"]["score"] == pytest.approx(0.105)
    assert suite_scores(recs, imp, key="s_floor")["x"]["score"] == pytest.approx(0.35)


def test_cpu_calibration_measures_a_cold_floor():
    data = calibration._measure_cpu(quick=True, progress=None)
    assert data["extra"]["cold_floor_us"] > 0 and data["extra"]["cold_floor_cold_l2"] == "warm"


def _deployed_record(op, sid, t_us):
    from solbench.core.spec import get_spec

    spec = get_spec(op)
    shape = next(s for s in spec.shapes if str(s.id) == str(sid))
    return {"op": op, "shape_id": shape.id, "impl": "x", "status": "ok", "time_us": 1.0, "weight": 1.0,
            "cost": spec.cost(shape).to_record(), "provenance": {"deployed_us": {"XPU-A": {"time_us": t_us}}},
            "params": dict(shape.params), "s": 0.5, "s_achievable": 0.5, "hw": "H20", "device": "cpu",
            "timer": "cpu", "sol_us": 1.0, "sol_achievable_us": 1.0}


def test_deployed_s_in_both_modes():
    from solbench.core.atrex_compat import atrex_sol_for

    r = _deployed_record("rms_norm", 0, 10.0)
    assert deployed_s(r) is not None
    assert deployed_s(r, compat="atrex") == pytest.approx(atrex_sol_for("rms_norm", 0, "XPU-A") / 10.0)
    # The published time of linear_sigmoid_mul measured Atrex's 4096-wide GEMM: it is compared
    # with the Atrex-mode SOL only.
    g = _deployed_record("linear_sigmoid_mul", 0, 100.0)
    assert deployed_s(g) is None and deployed_s(g, compat="atrex") > 0


def test_report_model_shows_floor_and_atrex_deployed_s():
    recs = [dict(_deployed_record("linear_sigmoid_mul", 0, 100.0), s_floor=0.7, cold_floor_us=3.0, importance=0.25),
            dict(_deployed_record("rms_norm", 0, 10.0), s_floor=0.6, cold_floor_us=3.0, importance=0.5)]
    data = model.build([model.Source(label="t", records=recs)])
    ops = {o["name"]: o for o in data["ops"]}
    assert ops["linear_sigmoid_mul"]["dep_contract"] == "atrex" and ops["rms_norm"]["dep_contract"] == "native"
    assert all(s["atx"] and s["runs"]["0"]["i"]["x"]["sf"] for s in data["shapes"])
    run0 = data["runs"][0]
    assert run0["cold_floor_us"] == 3.0
    assert run0["suite_floor"]["x"]["score"] == pytest.approx(0.7 * 0.25 + 0.6 * 0.5, rel=1e-5)
