"""Static figures (matplotlib): roofline and S per shape or per operator."""
import pytest

import report_synth as synth
from solbench.core import hardware, roofline
from solbench.report.plot import ceilings, plot, s_against

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    recs = synth.make_records(ops=["rms_norm", "fused_moe", "moe_align_block_size"], max_shapes=6,
                              fail={("rms_norm", "torch_eager"): "max_rel 1.0 > rtol"})
    return synth.write_jsonl(tmp_path_factory.mktemp("plot") / "r.jsonl", recs), recs


def test_op_figures_png_and_svg(results, tmp_path):
    path, _ = results
    png = plot([path], tmp_path / "rms.png", op="rms_norm")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    svg = plot([path], tmp_path / "moe.svg", op="fused_moe", hw="H20").read_text()
    assert "<svg" in svg and "fused_moe: S per shape" in svg and "H20 datasheet" in svg
    # A structural operator (no FLOPs) is drawn as attained bandwidth, and skips are named.
    svg = plot([path], tmp_path / "align.svg", op="moe_align_block_size").read_text()
    assert "attained bandwidth" in svg and "skipped: liger" in svg


def test_suite_figure(results, tmp_path):
    path, _ = results
    svg = plot([path], tmp_path / "suite.svg", hw="datasheet").read_text()
    assert "S per operator" in svg and "H200 datasheet" in svg


def test_s_recomputed_against_selected_ceilings(results):
    _, recs = results
    r = next(x for x in recs if x["status"] == "ok" and x["op"] == "fused_moe")
    # The run's own achievable ceilings reproduce the record's s_achievable; a SKU its own S.
    assert s_against(r, ceilings(recs, "achievable")) == pytest.approx(r["s_achievable"], rel=1e-9)
    assert s_against(r, ceilings(recs, "datasheet")) == pytest.approx(r["s"], rel=1e-9)
    c = synth.synthetic_cost(r["op"], r["shape_id"], r["dtype"])
    h20 = roofline.roofline(c, hardware.SKUS["H20"]).sol_us / r["time_us"]
    assert s_against(r, ceilings(recs, "H20")) == pytest.approx(h20, rel=1e-9)


def test_plot_errors(results, tmp_path):
    path, recs = results
    with pytest.raises(ValueError, match="no records for operator"):
        plot([path], tmp_path / "x.png", op="nope")
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.pdf"):
        plot([path], tmp_path / "x.jpg", op="rms_norm")
    with pytest.raises(ValueError, match="no records for implementation"):
        plot([path], tmp_path / "x.png", op="rms_norm", impls=["ours_cuda"])
    other = synth.write_jsonl(tmp_path / "h100.jsonl", synth.make_records(ops=["rms_norm"], max_shapes=1, hw="H100",
                                                                          device="NVIDIA H100"))
    with pytest.raises(ValueError, match="several devices"):
        plot([path, other], tmp_path / "x.png", op="rms_norm")
    with pytest.raises(KeyError, match="unknown hardware"):
        plot([path], tmp_path / "x.png", op="rms_norm", hw="Z9000")
