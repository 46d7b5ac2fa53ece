"""The results record (solbench.core.record): built in one place for run and eval, roles decide
what is ranked, and files without roles still read as before."""
import pytest

from solbench.core import hardware, record
from solbench.core.spec import get_spec

OP = "rms_norm"


def _ok(impl, t, role=None, shape_id=0):
    r = {"impl": impl, "status": "ok", "time_us": t, "shape_id": shape_id}
    if role:
        r["role"] = role
    return r


def test_role_of_reads_the_role_and_falls_back_to_the_name_for_old_files():
    assert record.role_of({"impl": "ours_triton", "role": "reference"}) == "reference"
    assert record.role_of({"impl": "ours_triton"}) == "ours"
    assert record.role_of({"impl": "liger"}) == "peer"
    assert record.role_of({"impl": "x", "role": "candidate"}) == "candidate"


def test_best_peer_ranks_only_peers():
    recs = [_ok("ours_triton", 5.0, "ours"), _ok("dense", 4.0, "reference"), _ok("liger", 8.0, "peer"),
            _ok("torch_compile", 10.0, "peer"), _ok("torch_eager", 20.0, "peer"),
            {"impl": "flashinfer", "role": "peer", "status": "fail", "time_us": None, "shape_id": 0}]
    record.add_speedups(recs)
    sp = {r["impl"]: r["speedup"] for r in recs}
    # ours against the fastest peer (liger), never against the faster reference
    assert sp["ours_triton"] == {"vs_torch_compile": 2.0, "vs_torch_eager": 4.0, "vs_best_peer": 1.6}
    # a peer is ranked against the other peers, never against ours or itself
    assert sp["liger"]["vs_best_peer"] == pytest.approx(10.0 / 8.0)
    assert sp["dense"]["vs_best_peer"] == pytest.approx(8.0 / 4.0)
    assert sp["flashinfer"] == {}


def test_speedups_of_a_file_without_roles_use_the_names():
    recs = [_ok("ours_triton", 5.0), _ok("ours_variant", 2.0), _ok("liger", 8.0)]
    record.add_speedups(recs)
    assert recs[0]["speedup"] == {"vs_best_peer": 1.6}


def test_display_order_puts_ours_first_then_the_torch_baselines():
    recs = [_ok("zeta", 1.0), _ok("torch_eager", 1.0), _ok("alpha", 1.0), _ok("torch_compile", 1.0),
            _ok("my_kernel", 1.0, "ours"), _ok("ours_triton", 1.0)]
    assert record.display_order(recs) == ["my_kernel", "ours_triton", "torch_compile", "torch_eager", "alpha",
                                          "zeta"]


def test_build_fills_sol_s_and_the_floor_and_leaves_times_out_of_failures():
    spec = get_spec(OP)
    shape = spec.shapes[0]
    cost = spec.cost(shape)
    ds = hardware.SKUS["H200"]
    ach = hardware.Hardware(name="H200 (calibrated)", peaks=dict(ds.peaks), bandwidth=ds.bandwidth * 0.9,
                            source="calibrated", launch_floor_us=2.0, extra={"cold_floor_us": 3.0})
    key = record.key_fields(OP, shape.id, "ours_triton", hw=ds.name, device="dev", timer="graph", smoke=False)
    timing = {"median_us": 10.0, "p20_us": 9.0, "p80_us": 11.0}
    common = dict(role="ours", spec=spec, shape=shape, cost=cost, datasheet=ds, achievable=ach, check=None,
                  compile_s=None, impl_facts={}, wall_s=1.23456, env={"commit": "x"})
    ok = record.build(key, status="ok", reason="", timing=timing, **common)
    assert record.record_key(ok) == record.record_key(key)
    assert ok["schema"] == record.SCHEMA_VERSION and ok["role"] == "ours"
    assert (ok["time_us"], ok["p20_us"], ok["p80_us"]) == (10.0, 9.0, 11.0)
    assert ok["s"] == pytest.approx(ok["sol_us"] / 10.0)
    assert ok["s_achievable"] == pytest.approx(ok["sol_achievable_us"] / 10.0)
    assert ok["s_floor"] == pytest.approx(max(ok["sol_achievable_us"], 3.0) / 10.0)
    assert ok["importance"] == spec.importance and ok["wall_s"] == 1.235
    assert record.build(key, status="ok", reason="", timing=timing, importance=0.5, **common)["importance"] == 0.5
    # a timed run that is not ok (eval's flagged verdict) keeps its timing record, but no figure
    bad = record.build(key, status="fail", reason="flagged", timing=timing, **common)
    assert bad["timing"] == timing
    assert all(bad[k] is None for k in ("time_us", "p20_us", "p80_us", "s", "s_achievable", "s_floor"))
