"""The committed GPU results themselves (benchmarks/results/<gpu>/): the full sweep covers the
catalog with a verdict or a reason for every record, its report page is small and passes the
browser self-test, and `compare` calls two runs of the same code on the same GPU the same while
it calls a run with one implementation slowed by 20% slower."""
import json
from collections import Counter
from pathlib import Path

import pytest

from solbench.catalog import operator_entries
from solbench.cli import main
from solbench.runner import read_records

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
SWEEPS = sorted(p for p in RESULTS.glob("*/sweep.jsonl"))
pytestmark = pytest.mark.skipif(not SWEEPS, reason="no committed full sweep under benchmarks/results/")


@pytest.fixture(scope="module", params=SWEEPS, ids=[p.parent.name for p in SWEEPS])
def sweep(request):
    return request.param, read_records(request.param)


def test_sweep_covers_every_catalog_shape_with_a_verdict(sweep):
    _, recs = sweep
    catalog = {(name, str(s["id"])) for name, e in operator_entries().items() for s in e["shapes"]}
    seen = {(r["op"], str(r["shape_id"])) for r in recs}
    assert catalog <= seen, f"shapes without any record: {sorted(catalog - seen)[:10]}"
    assert len({r["op"] for r in recs}) == 30
    keys = Counter((r["op"], str(r["shape_id"]), r["impl"]) for r in recs)
    assert max(keys.values()) == 1, "one record per op x shape x impl"
    for r in recs:
        assert r["status"] in ("ok", "fail", "skip")
        if r["status"] == "ok":
            assert r["time_us"] > 0 and r["check"]["ok"]
        else:
            assert r["reason"], f"{r['op']}#{r['shape_id']} {r['impl']}: {r['status']} without a reason"
    ours = [r for r in recs if r["impl"] == "ours_triton"]
    assert ours and all(r["status"] == "ok" for r in ours), "every ours_triton record is correct"


def test_report_of_the_sweep_is_small_offline_and_passes_the_browser_test(sweep, tmp_path):
    path, recs = sweep
    page = tmp_path / "sweep.html"
    assert main(["report", str(path), "-o", str(page)]) == 0
    assert page.stat().st_size < 5e6
    html = page.read_text()
    assert "http://" not in html.split('id="solbench-data">', 1)[0].replace("http://www.w3.org", "")
    from test_report_browser import CHROMIUM, Dom, browse

    if CHROMIUM is None:
        pytest.skip("Debian chromium is not installed: the browser self-test on the sweep was not run")
    st = Dom(browse(page.resolve().as_uri() + "#selftest", tmp_path)).selftest
    assert st is not None and st["errors"] == []
    assert st["op_rows"] == st["ops_expected"] == 30
    assert st["sort_changed"] and st["hw_changed"]
    assert st["expanded_shape_rows"] == st["expanded_shapes_expected"] > 0
    assert st["sol_max_rel_err"] < 1e-4 and st["resources"] == []


@pytest.mark.parametrize("gpu", [p.parent.name for p in SWEEPS if (p.parent / "repeat.jsonl").exists()])
def test_compare_same_code_same_gpu_is_same_and_a_20pct_slowdown_is_slower(gpu, tmp_path, capsys):
    base, repeat = RESULTS / gpu / "sweep.jsonl", RESULTS / gpu / "repeat.jsonl"
    capsys.readouterr()
    assert main(["compare", str(base), str(repeat), "--json"]) == 0
    pairs = json.loads(capsys.readouterr().out)["ops"]
    verdicts = {(o["op"], o["impl"]): o["verdict"] for o in pairs}
    # torch_compile's kernels need not be the same code in two processes: Inductor times the
    # candidate launch configs of a reduction kernel at its first call and keeps the fastest, so a
    # close race can go either way (the likely cause of H200 session 9's fused_qk_rmsnorm: compiled
    # kernels 1.8% apart on all 4 shapes while every other pair was "same"). Its pairs may differ
    # by up to 3%; all others not.
    differing = {(o["op"], o["impl"]): round(o["ratio"], 3) for o in pairs if o["verdict"] != "same"}
    assert verdicts and all(impl == "torch_compile" and abs(ratio - 1) <= 0.03
                            for (_, impl), ratio in differing.items()), differing
    # The same second run with one implementation 20% slower on every shape.
    slowed = tmp_path / "slowed.jsonl"
    with slowed.open("w") as f:
        for r in read_records(repeat):
            if r["op"] == "rms_norm" and r["impl"] == "ours_triton" and r["status"] == "ok":
                for k in ("time_us", "p20_us", "p80_us"):
                    r[k] *= 1.2
            f.write(json.dumps(r) + "\n")
    assert main(["compare", str(base), str(slowed), "--json", "--fail-on-regression", "10"]) == 1
    verdicts = {(o["op"], o["impl"]): o["verdict"] for o in json.loads(capsys.readouterr().out)["ops"]}
    assert verdicts.pop(("rms_norm", "ours_triton")) == "slower"
    assert {k: v for k, v in verdicts.items() if v != "same"}.keys() <= differing.keys()
