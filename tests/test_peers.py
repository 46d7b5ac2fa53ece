"""solbench.peers: one optional-import helper for every peer, and no operator reaching into
another operator's implementations for it."""
import re
from pathlib import Path

import pytest

from solbench import peers
from solbench.core.spec import Support

OPS = Path(peers.__file__).resolve().parents[1] / "ops"


def test_optional_import_gives_the_object_or_the_reason():
    import json

    obj, support = peers.optional_import("json", "dumps")
    assert obj is json.dumps and support == Support.yes()
    mod, support = peers.optional_import("json")
    assert mod is json and support
    obj, support = peers.optional_import("solbench_no_such_pkg.ops", "Fn")
    assert obj is None and not support
    assert support.reason.startswith("solbench_no_such_pkg is not importable (ModuleNotFoundError: ")
    obj, support = peers.optional_import("json", "no_such_attr", package="json-lib")
    assert obj is None and support.reason.startswith("json-lib is not importable (AttributeError: ")


def test_library_support_needs_the_import_then_a_cuda_device(monkeypatch):
    import torch

    lib = peers.Library("json-lib", "json-lib's kernels need a CUDA device")
    missing = lib.support("solbench_no_such_pkg", "Fn")
    assert not missing and "json-lib is not importable" in missing.reason
    with pytest.raises(RuntimeError, match="json-lib is not importable"):
        lib.get("solbench_no_such_pkg", "Fn")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert lib.support("json", "dumps") == Support.no("json-lib's kernels need a CUDA device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert lib.support("json", "dumps") and lib.get("json", "dumps") is __import__("json").dumps


def test_no_operator_imports_another_operators_implementations():
    pattern = re.compile(r"solbench\.ops\.(\w+)\.impls")
    wrong = []
    for path in OPS.glob("*/*.py"):
        for other in pattern.findall(path.read_text(encoding="utf-8")):
            if other != path.parent.name:
                wrong.append(f"{path.parent.name}/{path.name} -> {other}")
    assert not wrong, wrong
