"""Every environment switch a kernel reads is documented: the README's table of kernel switches,
where the row-wise tile rule's fields share one row and the JIT CUDA backend's cache directory
is in docs/JIT_CUDA.md."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_kernel_switch_is_in_the_readme_table():
    used = set()
    for path in (ROOT / "src" / "solbench" / "kernels").rglob("*.py"):
        used |= set(re.findall(r'"(SOLBENCH_[A-Z0-9_]+)"', path.read_text(encoding="utf-8")))
    assert {"SOLBENCH_ATTENTION_TILES", "SOLBENCH_CONV", "SOLBENCH_TOPK_SOFTMAX"} <= used  # the scan sees them
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("Kernel switches for device A/B runs", 1)[1].split("\n## ", 1)[0]
    elsewhere = {"SOLBENCH_CUDA_CACHE": ROOT / "docs" / "JIT_CUDA.md"}
    for name, doc in elsewhere.items():
        assert name in doc.read_text(encoding="utf-8"), f"{name} is not in {doc.name}"
    missing = sorted(v for v in used - set(elsewhere) if v not in table and not v.startswith("SOLBENCH_ROW_"))
    assert not missing, f"kernel switches missing from the README's table: {missing}"
