"""docs/PERFORMANCE.md shows today: it is exactly what benchmarks/performance_tables.py prints from
the committed results, and each GPU folder holds only the few files behind it."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def _tables():
    spec = importlib.util.spec_from_file_location("performance_tables", ROOT / "benchmarks" / "performance_tables.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_performance_doc_is_printed_from_the_committed_results():
    doc = _tables().doc(RESULTS)
    gpus = [d for d in RESULTS.iterdir() if d.is_dir() and any(d.glob("*.jsonl"))]
    assert gpus and all(f"(`benchmarks/results/{d.name}/`)" in doc for d in gpus)
    assert (ROOT / "docs" / "PERFORMANCE.md").read_text(encoding="utf-8") == doc, (
        "docs/PERFORMANCE.md is stale: python benchmarks/performance_tables.py --doc > docs/PERFORMANCE.md")


def test_results_folders_hold_only_todays_files():
    for d in (d for d in RESULTS.iterdir() if d.is_dir()):
        files = [p for p in d.iterdir() if p.is_file()]
        assert len(files) < 20, f"{d.name}: {len(files)} files; finished experiments go to ARCHIVE.md"
    assert (RESULTS / "ARCHIVE.md").is_file()


def test_family_scores_before_and_after_our_kernels(capsys):
    # Before: the best runnable peer per operator; after: the best of all, ours included; a
    # reference (dense K/V gathered before the timed call) counts on neither side.
    mod = _tables()

    def rec(op, impl, s, role=None):
        return {"op": op, "shape_id": 0, "impl": impl, "status": "ok", "time_us": 1.0, "s_achievable": s,
                "weight": 1.0, **({"role": role} if role else {})}

    recs = [rec("unified_attention", "ours_triton", 0.6, "ours"), rec("unified_attention", "flag_gems", 0.4, "peer"),
            rec("unified_attention", "sdpa_dense", 0.9, "reference"),
            rec("fused_moe", "torch_eager", 0.2, "peer"), rec("fused_moe", "ours_triton", 0.5, "ours")]
    importance = {"unified_attention": 0.4, "fused_moe": 0.1}
    mod.families(recs, importance)
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ")}
    att = rows["attention (#22)"]
    assert att[3:7] == ["0.40", "0.60", f"{0.4 * 0.4:.4f}", f"{0.4 * 0.6:.4f} |"]
    moe = rows["MoE and fp8 GEMM (#23)"]
    assert moe[3:5] == ["0.20", "0.50"]
    suite = rows["suite"]
    assert suite[5:7] == [f"{0.4 * 0.4 + 0.1 * 0.2:.4f}", f"{0.4 * 0.6 + 0.1 * 0.5:.4f} |"]
