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
