"""Deployed S and the Amdahl estimate (core/score.py), against hand-computed values."""
import math

import pytest

from solbench.core.hardware import SKUS
from solbench.core.score import amdahl_estimate, deployed_s

XPU_BW = SKUS["XPU-A"].bandwidth  # 5.3 TB/s


def rec(op, sid, impl, s, *, importance, weight=1.0, deployed_us=4.0, status="ok", bytes_total=None):
    # bytes chosen so that the XPU-A datasheet SOL is exactly 1 us (memory-bound, no FLOPs).
    nbytes = XPU_BW * 1e-6 if bytes_total is None else bytes_total
    prov = {"deployed_us": {"XPU-A": {"framework": "aiter", "time_us": deployed_us}}} if deployed_us else {}
    return {"op": op, "shape_id": sid, "impl": impl, "status": status, "time_us": 10.0 if status == "ok" else None,
            "s": s if status == "ok" else None, "importance": importance, "weight": weight,
            "cost": {"flops": {}, "bytes_read": nbytes / 2, "bytes_written": nbytes / 2}, "provenance": prov}


def test_deployed_s_is_xpu_a_sol_over_published_time():
    r = rec("a", 0, "x", 0.5, importance=0.1, deployed_us=4.0)
    assert deployed_s(r) == pytest.approx(0.25)
    # Compute-bound: 232.65 TFLOP of bf16 at 232.65 TFLOP/s is 1 s of SOL.
    r2 = dict(r, cost={"flops": {"bf16_tc": 232.65e12}, "bytes_read": 1.0, "bytes_written": 0.0},
              provenance={"deployed_us": {"XPU-A": {"framework": "aiter", "time_us": 2e6}}})
    assert deployed_s(r2) == pytest.approx(0.5)
    assert deployed_s(dict(r, provenance={})) is None
    assert deployed_s(dict(r, provenance={"deployed_us": {"H20": {"time_us": 3.0}}})) is None


def test_amdahl_by_hand():
    records = [
        # op a (importance 0.1): shape 0 weight 3, best S 0.5 vs deployed 0.25 -> saves 1 - 0.25/0.5 = 0.5;
        # shape 1 weight 1, best S 0.2 < deployed 0.25 -> keep the deployed kernel, saves 0.
        rec("a", 0, "ours", 0.5, importance=0.1, weight=3.0),
        rec("a", 0, "eager", 0.1, importance=0.1, weight=3.0),
        rec("a", 0, "broken", None, importance=0.1, weight=3.0, status="fail"),
        rec("a", 1, "ours", 0.2, importance=0.1, weight=1.0),
        # op b (importance 0.2): one shape, S 1.0 vs deployed 0.5 -> saves 0.5.
        rec("b", 0, "eager", 1.0, importance=0.2, deployed_us=2.0),
        # op c: no published deployed time -> left out of the estimate and of its coverage.
        rec("c", 0, "eager", 0.9, importance=0.3, deployed_us=None),
    ]
    est = amdahl_estimate(records)
    a = est["per_op"]["a"]
    assert a["saved_fraction"] == pytest.approx((3 * 0.5 + 1 * 0.0) / 4)
    assert a["saved"] == pytest.approx(0.1 * 0.375)
    assert est["per_op"]["b"]["saved"] == pytest.approx(0.2 * 0.5)
    assert "c" not in est["per_op"]
    assert est["saved"] == pytest.approx(0.0375 + 0.1)
    assert est["coverage"] == pytest.approx(0.3)
    assert a["best_impls"] == {"ours": 4.0}
    assert "XPU-A" in est["basis"] and "S_deployed" in est["basis"]
    # Importance from a weights file overrides the records'.
    assert amdahl_estimate(records, {"a": 1.0, "b": 0.0})["saved"] == pytest.approx(0.375)
    assert not math.isnan(est["saved"])


def test_amdahl_ignores_failures_even_if_faster():
    records = [rec("a", 0, "ours", 0.5, importance=0.1),
               dict(rec("a", 0, "cheat", 0.99, importance=0.1), status="fail")]
    assert amdahl_estimate(records)["per_op"]["a"]["s_best"] == pytest.approx(0.5)


def test_amdahl_divides_catalog_importance_by_its_sum():
    # The catalog's importances are shares over different sets of profiles and sum to 1.095:
    # production time saved and covered are shares of that sum, so never above 100%.
    from solbench.catalog import catalog_importance

    cat = catalog_importance()
    total = sum(cat.values())
    assert 1.09 < total < 1.10
    records = [rec(op, 0, "ours", 1.0, importance=imp, deployed_us=2.0) for op, imp in cat.items()]
    est = amdahl_estimate(records)
    assert est["importance_total"] == pytest.approx(total)
    # Operators whose published deployed time measured Atrex's contract, not ours, are left out.
    from solbench.core.atrex_compat import DEPLOYED_ATREX_CONTRACT

    covered = 1.0 - sum(cat[op] for op in DEPLOYED_ATREX_CONTRACT) / total
    assert est["coverage"] == pytest.approx(covered) and est["saved"] == pytest.approx(0.5 * covered)
    assert "normalised by the catalog's importance sum (1.095" in est["basis"]
    # Weights from a profile import are one fleet's shares already: not divided.
    assert amdahl_estimate(records[:1], {records[0]["op"]: 1.0})["importance_total"] == 1.0
