"""The HTML report: one self-contained file whose embedded data reproduces the records."""
import json
import re

import pytest

import report_synth as synth
from solbench.cli import main
from solbench.core.score import amdahl_estimate, suite_scores
from solbench.report import model
from solbench.report.html import MAX_BYTES, render, write_report

EXTRA = {"rms_norm": ("ours_triton", "torch_compile", "torch_eager", "liger", "F.rms_norm"),
         "layer_norm": ("ours_triton", "torch_compile", "torch_eager", "liger", "F.layer_norm"),
         "attention_forward": ("torch_compile", "torch_eager", "sdpa", "flashinfer", "liger")}


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="solbench-data">(.*?)</script>', html, re.S)
    assert m, "embedded data element missing"
    return json.loads(m.group(1))


def assert_offline(html: str) -> None:
    """No attribute or stylesheet that would make the browser fetch anything."""
    assert not re.search(r'\b(src|href|srcset|action|poster|data)\s*=\s*["\']?\s*(https?:)?//', html, re.I)
    assert not re.search(r'url\(\s*["\']?\s*(https?:)?//', html, re.I)
    assert not re.search(r'@import', html, re.I)
    assert not re.search(r'<(link|iframe|img|object|embed)\b', html, re.I)
    assert not re.search(r'<script[^>]*\bsrc\s*=', html, re.I)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A full 440-shape sweep of about 2,000 records, with failures and skips."""
    recs = synth.make_records(impls_per_op=EXTRA,
                              fail={("moe_align_block_size", "torch_compile"): "num_tokens_post_pad 128 != 96"})
    path = tmp_path_factory.mktemp("sweep") / "sweep.jsonl"
    synth.write_jsonl(path, recs)
    return str(path), recs


def test_full_sweep_page_is_small_offline_and_complete(sweep, tmp_path):
    path, recs = sweep
    assert len(recs) >= 1800
    out, data = write_report([path], tmp_path / "report.html")
    html = out.read_text(encoding="utf-8")
    assert out.stat().st_size < MAX_BYTES
    assert_offline(html)
    d = page_data(html)
    assert len(d["ops"]) == 30 and len(d["shapes"]) == 440
    assert sum(len(s["runs"]["0"]["i"]) for s in d["shapes"]) == len(recs)
    # Environment stored once per run, not per record: platform strings never repeat into the page.
    assert html.count(synth.ENV["platform"]) == 0 and d["runs"][0]["env"]["torch"] == synth.ENV["torch"]
    # Every FAIL and skip keeps its reason.
    st = [(r, s["runs"]["0"]["i"][r]) for s in d["shapes"] for r in s["runs"]["0"]["i"]]
    fails = [x for _, x in st if x["st"] == "fail"]
    assert len(fails) == 6 and all(d["reasons"][x["why"]].startswith("num_tokens_post_pad") for x in fails)
    assert all("why" in x for _, x in st if x["st"] == "skip")
    # Python's scores ride along for the browser test to compare with the page's own.
    importance = {r["op"]: r["importance"] for r in recs}
    ref = suite_scores(recs, importance)
    assert d["runs"][0]["suite_ach"]["ours_triton"]["score"] == pytest.approx(ref["ours_triton"]["score"], rel=1e-5)
    assert d["runs"][0]["amdahl"]["saved"] == pytest.approx(amdahl_estimate(recs)["saved"], rel=1e-5)
    assert "XPU-A" in d["runs"][0]["amdahl"]["basis"]
    # Every datasheet SKU is embedded for the hardware toggle.
    assert {"H20", "XPU-A", "H100", "H200", "A100", "B200"} <= set(d["skus"])


def test_two_runs_carry_deltas(tmp_path):
    ops = ["rms_norm", "silu_and_mul"]
    a = synth.write_jsonl(tmp_path / "a.jsonl", synth.make_records(ops=ops, seed=1, jitter=0.004))
    b = synth.write_jsonl(tmp_path / "b.jsonl", synth.make_records(ops=ops, seed=2, jitter=0.004,
                                                                   slow={("silu_and_mul", "ours_triton"): 1.2}))
    _, data = write_report([a, b], tmp_path / "r.html")
    assert [r["source"] for r in data["runs"]] == ["a.jsonl", "b.jsonl"] and data["baseline"] == 0
    dl = data["deltas"]["1"]
    assert dl["ops"]["silu_and_mul"]["ours_triton"]["v"] == "slower"
    assert dl["ops"]["rms_norm"]["ours_triton"]["v"] == "same"
    assert dl["shapes"]["silu_and_mul|0"]["ours_triton"]["ratio"] == pytest.approx(1.2, rel=0.03)
    # --merge pools the files into one run instead.
    _, merged = write_report([a, b], tmp_path / "m.html", merge=True)
    assert len(merged["runs"]) == 1 and merged["deltas"] == {}
    with pytest.raises(ValueError, match="out of range"):
        write_report([a, b], tmp_path / "x.html", baseline=5)


def test_one_file_with_two_devices_is_two_runs(tmp_path):
    recs = synth.make_records(ops=["l2_norm"]) + synth.make_records(ops=["l2_norm"], hw="H100", device="NVIDIA H100")
    p = synth.write_jsonl(tmp_path / "two.jsonl", recs)
    runs = model.split_runs(model.load_sources([p]))
    assert sorted(r.device for r in runs) == ["NVIDIA H100", "NVIDIA H200"]
    assert all("·" in r.label for r in runs)


def test_hostile_text_cannot_break_out_of_the_data(tmp_path):
    recs = synth.make_records(ops=["l2_norm"], max_shapes=1)
    evil = "</script><script>window.pwned=1</script><!-- \u2028 & \"quotes\""
    for r in recs:
        r["description"] = evil
        r["reason"] = r["reason"] or ""
    recs[-1]["status"], recs[-1]["reason"] = "fail", evil
    data = model.build([model.Source("x.jsonl", recs)], title="a <b>title</b>")
    html = render(data)
    assert html.count("</script>") == 2                # the data element and the script element
    assert "<title>a &lt;b&gt;title&lt;/b&gt;</title>" in html
    back = page_data(html)
    assert back["shapes"][0]["desc"] == evil and evil in back["reasons"]


def test_carried_records_say_so_next_to_their_figures():
    recs = synth.make_records(ops=["l2_norm"], max_shapes=1)
    recs[0]["carried_from"] = "an older sweep"
    data = model.build([model.Source("x.jsonl", recs)])
    shown = [res for sh in data["shapes"] for run in sh["runs"].values() for res in run["i"].values() if "why" in res]
    assert any(data["reasons"][res["why"]].endswith("carried from an older sweep") for res in shown)


def test_long_parameter_lists_are_summarized():
    assert model._brief({"seq_lens": list(range(100)), "h": 8}) == {
        "seq_lens": "[100 values, min 0, max 99, sum 4950]", "h": 8}
    assert model._brief([1, 2, 3]) == [1, 2, 3]


def test_cli_report(tmp_path, capsys):
    p = synth.write_jsonl(tmp_path / "r.jsonl", synth.make_records(ops=["silu_and_mul", "topk_filter"]))
    out = tmp_path / "sub" / "page.html"
    assert main(["report", p, "-o", str(out), "--title", "nightly"]) == 0
    msg = capsys.readouterr().out
    assert out.exists() and "2 operators" in msg and "run 0: r.jsonl" in msg
    assert "<title>nightly</title>" in out.read_text()
    assert main(["report", str(tmp_path / "missing.jsonl"), "-o", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["report", str(empty), "-o", str(out)]) == 2
    assert "no records" in capsys.readouterr().err


def test_minimal_records_still_render():
    # Records from outside the runner may lack cost, peaks and env: the page shows what there is.
    recs = [{"op": "x", "shape_id": 0, "impl": "a", "status": "ok", "time_us": 5.0},
            {"op": "x", "shape_id": 1, "impl": "b", "status": "fail", "reason": "boom"}]
    d = page_data(render(model.build([model.Source("m.jsonl", recs)])))
    assert d["shapes"][0]["cost"] is None and d["runs"][0]["ach"] is None
    assert d["reasons"] == ["boom"] and d["runs"][0]["counts"] == {"ok": 1, "fail": 1, "skip": 0}
    assert d["runs"][0]["amdahl"]["coverage"] == 0
