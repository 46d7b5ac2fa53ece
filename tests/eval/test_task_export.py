"""``solbench task export``: self-contained (torch only), complete, and without the answers."""
from __future__ import annotations

import json
import subprocess
import sys

from solbench.cli import main

# Strings that would leak answers or provenance: deployed times and their SKU, trace provenance,
# importance, the roofline's fields.
LEAKS = ("deployed_us", "XPU-A", "call_count", "total_duration_us", "source_framework", "importance_num_profiles",
         "sol_us", "sol_achievable", "time_us")


def _texts(folder):
    return {p: p.read_text() for p in folder.rglob("*") if p.is_file() and p.suffix in (".py", ".md", ".json")}


def test_export_is_self_contained_checkable_and_leaves_out_the_answers(tmp_path, capsys):
    task = tmp_path / "silu"
    assert main(["task", "export", "silu_and_mul", str(task)]) == 0
    assert "37 shapes" in capsys.readouterr().out
    names = {p.name for p in task.iterdir()}
    assert {"TASK.md", "reference.py", "shapes.json", "candidate.py", "_reference"} <= names
    assert "hints.json" not in names
    for path, text in _texts(task).items():
        for leak in LEAKS:
            assert leak not in text, f"{leak} in {path}"
    spec_src = (task / "_reference" / "ops" / "silu_and_mul" / "spec.py").read_text()
    assert "def cost(" not in spec_src and "def reference(" in spec_src and "def make_inputs(" in spec_src
    shapes = json.loads((task / "shapes.json").read_text())
    assert shapes["output_names"] == ["out"] and len([s for s in shapes["shapes"] if not s["edge"]]) == 37
    assert any(s["edge"] and s["params"]["shape"][0] == 0 for s in shapes["shapes"])
    md = (task / "TASK.md").read_text()
    for section in ("## Interface", "## Correctness", "## Scoring", "python reference.py check", "atol = 0.01"):
        assert section in md

    # With solbench and triton made unimportable, the task still imports, generates inputs, computes
    # the reference and checks its own starting-point candidate.
    script = (
        "import sys; sys.modules['solbench'] = None; sys.modules['triton'] = None\n"
        f"sys.path.insert(0, {str(task)!r})\n"
        "import reference, torch\n"
        "x = reference.make_inputs(reference.SHAPES[0], 'cpu', 0)\n"
        "out, = reference.reference(**x)\n"
        "assert out.shape == (1, 768) and out.dtype == torch.bfloat16\n"
        "res = reference.check(__import__('candidate').silu_and_mul, [s for s in reference.SHAPES if s['edge']])\n"
        "assert res and all(err is None for _, err in res), res\n"
        "bad = reference.check(lambda x: torch.zeros(*x.shape[:-1], x.shape[-1] // 2, dtype=x.dtype), "
        "reference.SHAPES[:1])\n"
        "assert bad[0][1] is not None\n"
        "print('ok')\n")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=task, timeout=120)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_local_check_on_cpu_defaults_to_the_small_shapes_eval_takes_there(tmp_path, capsys):
    from solbench.core.spec import get_spec

    task = tmp_path / "silu"
    assert main(["task", "export", "silu_and_mul", str(task)]) == 0
    rows = json.loads((task / "shapes.json").read_text())["shapes"]
    small = {str(s.id) for s in get_spec("silu_and_mul").smoke_shapes()}
    assert {str(r["id"]) for r in rows if r.get("cpu")} == small
    n_cpu = len([r for r in rows if r.get("cpu") or r["edge"]])
    r = subprocess.run([sys.executable, "reference.py", "check", "candidate.py"], capture_output=True, text=True,
                       cwd=task, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"CPU: checking the {n_cpu} small shapes of {len(rows)}" in r.stdout
    assert f"{n_cpu}/{n_cpu} shapes correct" in r.stdout


def test_with_hints_adds_the_cost_model_only(tmp_path):
    from solbench.eval.task import export_task

    info = export_task("rms_norm", tmp_path / "rms", shapes=["0", "1"], with_hints=True, edge=False)
    assert info["shapes"] == 2
    hints = json.loads((tmp_path / "rms" / "hints.json").read_text())
    assert [h["id"] for h in hints["cost"]] == [0, 1] and all(h["bytes_read"] > 0 for h in hints["cost"])
    assert "def cost(" in (tmp_path / "rms" / "_reference" / "ops" / "rms_norm" / "spec.py").read_text()
    assert "## Hints" in (tmp_path / "rms" / "TASK.md").read_text()
    for path, text in _texts(tmp_path / "rms").items():
        for leak in LEAKS:
            assert leak not in text, f"{leak} in {path}"
