"""The import rules of docs/ARCHITECTURE.md, read from the code's import statements (ast, so a
comment or a docstring that names a module does not count): the benchmark (core/, runner, tune)
imports neither the library (kernels/) nor an operator (ops/); the library imports only itself and
solbench.runtime; solbench.runtime imports nothing of solbench but itself. (Operators reach the
benchmark by registering themselves: core/spec.load_all loads their packages by name, as plugins.)
And the library runs a public kernel without the catalog or the registry."""
import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "solbench"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import`` or ``from ... import`` statement of ``path`` names, anywhere in
    the file (functions included), relative imports resolved; ``from a import b`` counts as
    ``a.b`` too, since b may be a module."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _files(*paths: str) -> list[Path]:
    out = []
    for p in paths:
        full = PKG / p
        out += sorted(full.rglob("*.py")) if full.is_dir() else [full]
    assert out, paths
    return out


def _offending(files, forbidden, allowed=None) -> list[str]:
    bad = []
    for f in files:
        for mod in sorted(imported_modules(f)):
            if not mod.startswith("solbench"):
                continue
            if any(mod == p or mod.startswith(p + ".") for p in forbidden) or (
                    allowed is not None and not any(mod == p or mod.startswith(p + ".") for p in allowed)):
                bad.append(f"{f.relative_to(SRC)} imports {mod}")
    return bad


def test_the_import_reader_sees_function_level_relative_and_from_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "solbench" / "core"
    pkg.mkdir(parents=True)
    f = pkg / "x.py"
    f.write_text(textwrap.dedent('''
        """Mentions solbench.kernels only in prose."""
        # import solbench.ops (a comment)
        def g():
            from solbench import kernels
            from ..ops.rms_norm import spec
            import solbench.runtime.tuning
    '''))
    monkeypatch.setattr(sys.modules[__name__], "SRC", tmp_path)
    mods = imported_modules(f)
    assert {"solbench.kernels", "solbench.ops.rms_norm.spec", "solbench.runtime.tuning"} <= mods
    assert _offending([f], ("solbench.kernels", "solbench.ops")) == [
        "solbench/core/x.py imports solbench.kernels", "solbench/core/x.py imports solbench.ops.rms_norm",
        "solbench/core/x.py imports solbench.ops.rms_norm.spec"]


def test_the_benchmark_imports_neither_the_library_nor_an_operator():
    files = _files("core", "runner.py", "tune.py")
    assert _offending(files, ("solbench.kernels", "solbench.ops")) == []


def test_the_library_imports_only_itself_and_the_runtime():
    assert _offending(_files("kernels"), (), allowed=("solbench.kernels", "solbench.runtime")) == []


def test_the_runtime_imports_nothing_of_solbench_but_itself():
    assert _offending(_files("runtime"), (), allowed=("solbench.runtime",)) == []


@pytest.mark.parametrize("module", ["solbench", "solbench.kernels.rownorm"])
def test_a_public_kernel_runs_without_the_catalog_or_the_registry(module):
    code = textwrap.dedent(f"""
        import importlib, sys, torch
        lib = importlib.import_module({module!r})
        x = torch.randn(3, 64, dtype=torch.bfloat16)
        lib.rms_norm(x, torch.randn(64, dtype=torch.bfloat16))
        loaded = sorted(m for m in sys.modules if m.startswith(("solbench.core", "solbench.catalog", "solbench.ops",
                                                                "solbench.runner", "solbench.tune")))
        assert not loaded, loaded
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
