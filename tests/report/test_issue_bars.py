"""solbench.report.issue_bars: the kernel issues' bars judged from results records, with the rules
its docstring states (same-run comparisons, unmeasured shapes as misses, shares, references)."""
import json

import pytest

from solbench.cli import main
from solbench.report import issue_bars as ib


def rec(op, sid, impl, t, *, s=0.9, mb=10.0, status="ok", role=None, floor=1.2, gflop=0.0, path="bf16_tc",
        peak=1e15, **extra):
    return {"op": op, "shape_id": sid, "impl": impl, "status": status, "time_us": t if status == "ok" else None,
            "s_achievable": s, "launch_floor_us": floor, "role": role or ("ours" if impl.startswith("ours") else "peer"),
            "cost": {"bytes_read": mb * 1e6, "bytes_written": 0.0, "flops": {path: gflop * 1e9}},
            "peaks": {"achievable": {"peaks": {path: peak}}}, **extra}


def table(files, catalog):
    return ib.collect(files, catalog)


def test_a_peer_comparison_comes_from_the_run_where_ours_is_fastest():
    old = [rec("x", 0, "ours_triton", 100.0), rec("x", 0, "flex_attention", 90.0)]
    new = [rec("x", 0, "ours_triton", 95.0), rec("x", 0, "ours_cuda", 80.0), rec("x", 0, "flex_attention", 85.0)]
    t = table([("old.jsonl", old), ("new.jsonl", new)], {"x": {0: {}}})
    ratio, where = t[("x", "0")].versus("flex_attention")
    assert where == "new.jsonl" and ratio == pytest.approx(80.0 / 85.0)
    # a peer only the old run timed is compared inside the old run, never across runs
    only_old = [rec("x", 0, "ours_triton", 100.0), rec("x", 0, "sdpa_flash", 90.0)]
    t = table([("old.jsonl", only_old), ("new.jsonl", new)], {"x": {0: {}}})
    assert t[("x", "0")].versus("sdpa_flash") == (pytest.approx(100.0 / 90.0), "old.jsonl")
    bar = ib.Bar("beats flash", ("x",), ib.faster_than(("sdpa_flash",)))
    v = ib.judge(bar, t)
    assert v.met is False and v.misses == ["x #0 1.11x sdpa_flash"]


def test_unmeasured_shapes_and_failed_records_are_misses():
    files = [("a.jsonl", [rec("x", 0, "ours_triton", 5.0), rec("x", 1, "ours_cuda", 5.0, status="fail"),
                          rec("x", 1, "ours_triton", 6.0)])]
    t = table(files, {"x": {0: {}, 1: {}, 2: {}}})
    v = ib.judge(ib.Bar("correct", ("x",), ib.correct), t)
    assert v.shapes == 3 and v.met is False
    assert v.misses == ["x #1 fails (ours_cuda)", "x #2 unmeasured"]
    # a selection by size cannot place a shape without records: covered and missed, not skipped
    v = ib.judge(ib.Bar("big", ("x",), ib.s_at_least(0.5), ib.moving_at_least(1.0)), t)
    assert v.shapes == 3 and v.misses == ["x #2 unmeasured"]


def test_share_bars_allow_the_stated_fraction_of_misses():
    recs = [rec("x", i, "ours_triton", 1.0) for i in range(10)] + [rec("x", i, "liger", 2.0) for i in range(10)]
    recs[0]["time_us"] = 3.0  # one shape of ten behind: 90% is enough
    t = table([("a.jsonl", recs)], {"x": {i: {} for i in range(10)}})
    assert ib.judge(ib.Bar("90%", ("x",), ib.faster_than(), share=0.9), t).met is True
    assert ib.judge(ib.Bar("all", ("x",), ib.faster_than()), t).met is False
    recs[1]["time_us"] = 3.0
    t = table([("a.jsonl", recs)], {"x": {i: {} for i in range(10)}})
    assert ib.judge(ib.Bar("90%", ("x",), ib.faster_than(), share=0.9), t).met is False


def test_references_are_yardsticks_not_peers():
    recs = [rec("x", 0, "ours_cuda", 100.0), rec("x", 0, "sdpa_dense", 90.0, role="reference"),
            rec("x", 0, "flag_gems", 120.0)]
    s = table([("a.jsonl", recs)], {"x": {0: {}}})[("x", "0")]
    assert s.peers() == ["flag_gems"]
    assert ib.faster_than()(s) is None
    assert ib.at_least_of_reference("sdpa_dense", 0.85)(s) is None          # 0.90x of cuDNN
    assert ib.at_least_of_reference("sdpa_dense", 0.95)(s) == "0.90x sdpa_dense"


def test_a_miss_is_never_printed_as_the_limit():
    s = table([("a.jsonl", [rec("x", 0, "ours_cuda", 1.0, s=0.49959)])], {"x": {0: {}}})[("x", "0")]
    assert ib.s_at_least(0.50)(s) == "S 0.4996"
    assert ib.s_at_least(0.60)(s) == "S 0.500"
    assert ib.near_floor(3.0)(s) is None
    s.by_file["a.jsonl"]["ours_cuda"]["time_us"] = 9.0
    assert ib.near_floor(3.0)(s) == "9.0 us (7.8 over)"


def test_catalog_selections_follow_the_issue_texts():
    cat = ib.catalog_params(["fused_moe", "block_scaled_mm", "gated_delta_rule_update", "unified_attention"])
    t = ib.collect([], cat)
    moe = {sid for (op, sid), s in t.items() if op == "fused_moe" and ib.large_moe(s)}
    assert moe and all(int(t[("fused_moe", i)].params["token_count"]) * int(t[("fused_moe", i)].params["top_k"])
                       >= 16384 for i in moe)
    big_m = {sid for (op, sid), s in t.items() if op == "block_scaled_mm" and ib.gemm_rows(lo=4096)(s)}
    assert "2" in big_m and "0" not in big_m
    one_token = {sid for (op, sid), s in t.items() if op == "gated_delta_rule_update" and ib.delta_update(True)(s)}
    assert one_token and all(t[("gated_delta_rule_update", i)].params["token_count"] == 1 for i in one_token)
    # the catalog's unified_attention shapes are prefills (L_q = L_k): none is a decode
    assert not any(ib.unified_decode(s) for (op, _), s in t.items() if op == "unified_attention")
    # shape ids are the catalog's, which skip numbers (gated_delta_rule_update has no #11)
    assert ("gated_delta_rule_update", "11") not in t


def test_folder_without_our_records_says_so_in_one_line(tmp_path):
    (tmp_path / "run.jsonl").write_text(json.dumps(rec("fused_moe", 0, "torch_eager", 50.0)) + "\n")
    text = ib.markdown(ib.verdicts(ib.folder_runs(tmp_path)))
    assert "**Issue #23 MoE and fp8 GEMM**: no record of our kernels for its operators here." in text


def test_cli_bars(tmp_path, capsys):
    # 38 GFLOP of fp8 in 60 us against a 1.4 PFLOP/s calibrated peak: 0.452 of the rate
    (tmp_path / "run.jsonl").write_text("\n".join(json.dumps(r) for r in (
        rec("block_scaled_mm", 2, "ours_triton", 60.0, s=0.46, gflop=38.0, path="fp8_e4m3_tc", peak=1.4e15),
        rec("block_scaled_mm", 2, "torch_eager", 300.0))) + "\n")
    assert main(["bars", str(tmp_path), "--issue", "23"]) == 0
    out = capsys.readouterr().out
    assert "| block_scaled_mm M >= 4096: >= 0.50 of the calibrated fp8 rate |" in out
    assert "block_scaled_mm #2 rate 0.452" in out and "Issue #22" not in out
    assert main(["bars", str(tmp_path / "missing")]) == 2
    assert "no such results file or folder" in capsys.readouterr().err
    assert main(["bars", str(tmp_path), "--issue", "7"]) == 2
    assert "known issues are #22, #23, #24" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["bars", str(empty)]) == 2
    assert "no JSONL runs" in capsys.readouterr().err


def test_rate_bars_divide_tensor_core_flops_by_the_calibrated_peak():
    # A memory-bound record can have a high S and a low rate: the MoE bars name the rate.
    s = table([("a.jsonl", [rec("x", 0, "ours_triton", 100.0, s=0.62, gflop=27.0, peak=7.4e14)])],
              {"x": {0: {}}})[("x", "0")]
    assert ib.rate_at_least("bf16_tc", 0.45)(s) == "rate 0.365"
    assert ib.rate_at_least("bf16_tc", 0.30)(s) is None
    assert "no fp8_e4m3_tc FLOPs" in ib.rate_at_least("fp8_e4m3_tc", 0.4)(s)


def test_a_named_peer_never_timed_is_a_miss_but_one_that_cannot_run_is_not():
    only_flash = [rec("x", 0, "ours_triton", 90.0), rec("x", 0, "sdpa_flash", 100.0)]
    check = ib.faster_than(("flex_attention", "sdpa_flash"))
    s = table([("a.jsonl", only_flash)], {"x": {0: {}}})[("x", "0")]
    assert check(s) == "no flex_attention run"
    skipped = only_flash + [rec("x", 0, "flex_attention", 0.0, status="skip")]
    assert check(table([("a.jsonl", skipped)], {"x": {0: {}}})[("x", "0")]) is None
    assert ib.at_least_of_reference("sdpa_dense", 0.85)(s) == "no sdpa_dense run"


def test_only_catalog_records_of_one_gpu_count(tmp_path):
    cat = {"x": {0: {"m": 4}}}
    recs = [rec("x", 0, "ours_triton", 5.0, params={"m": 4}),
            rec("x", 0, "ours_cuda", 1.0, params={"m": 8}),              # the same id in another suite
            rec("x", 0, "ours_cuda", 0.5, params={"m": 4}, smoke=True),  # a smoke run
            {"op": "x", "shape_id": 0, "impl": "ours_triton", "lines": []}]  # a breakdown line
    s = table([("a.jsonl", recs[:3]), ("b.jsonl", recs[3:])], cat)[("x", "0")]
    assert s.ours()["time_us"] == 5.0 and ib.correct(s) is None
    h100 = [rec("x", 0, "ours_triton", 5.0, device="NVIDIA H100 80GB HBM3")]
    h200 = [rec("x", 0, "ours_triton", 5.0, device="NVIDIA H200")]
    with pytest.raises(ValueError, match="one GPU at a time"):
        ib.verdicts([("a/run.jsonl", h100), ("b/run.jsonl", h200)])
    (tmp_path / "kprof.jsonl").write_text(json.dumps({"op": "x", "impl": "ours_triton", "lines": []}) + "\n")
    (tmp_path / "run.jsonl.replaced.jsonl").write_text(json.dumps(h100[0]) + "\n")
    assert ib.folder_runs(tmp_path) == []
