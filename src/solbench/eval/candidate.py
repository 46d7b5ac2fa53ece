"""What a candidate is and how it is called.

A candidate is one Python file. It defines either

* a **function** taking the operator's inputs as keyword arguments (the keys of the task's
  ``make_inputs``) and returning its outputs (one tensor, or a tuple in the operator's
  ``output_names`` order, or a dict keyed by those names). The function is found by name: the
  operator's name (``def silu_and_mul(x): ...``), else ``kernel``, else the one public function
  the file itself defines; or
* a ``Model`` class, a ``torch.nn.Module`` built with no arguments whose ``forward`` takes the same
  keyword arguments. It is moved to the device under test once.

A file may also set ``OP = "silu_and_mul"`` to name its operator (``eval --batch`` reads it
without importing the file).
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable


class CandidateError(Exception):
    """The file does not define a usable candidate (the message says what was found)."""


def declared_op(path: str | Path) -> str | None:
    """``OP = "..."`` at module level, read from the source without importing it."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id == "OP" and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            return node.value.value
    return None


def import_file(path: str | Path, module_name: str = "solbench_candidate",
                extra_path: str | None = None) -> ModuleType:
    """Import a candidate file as a fresh module (its folder is put first on ``sys.path``, and
    ``extra_path`` after it: the evaluator imports a copy and passes the original's folder, so
    the candidate can still import files beside it)."""
    p = Path(path).resolve()
    if not p.is_file():
        raise CandidateError(f"candidate file {p} does not exist")
    spec = importlib.util.spec_from_file_location(module_name, p)
    if spec is None or spec.loader is None:
        raise CandidateError(f"cannot import {p} as a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = mod
    if str(p.parent) not in sys.path:
        sys.path.insert(0, str(p.parent))
    if extra_path and extra_path not in sys.path:
        sys.path.insert(1, extra_path)
    spec.loader.exec_module(mod)
    return mod


def _own_functions(mod: ModuleType) -> list[str]:
    return [n for n, v in vars(mod).items() if inspect.isfunction(v) and not n.startswith("_")
            and getattr(v, "__module__", None) == mod.__name__]


def resolve(mod: ModuleType, op: str, device) -> tuple[Callable[..., Any], str]:
    """The callable to evaluate and a one-line description of what was found."""
    import torch

    model_cls = getattr(mod, "Model", None)
    if inspect.isclass(model_cls):
        if not issubclass(model_cls, torch.nn.Module):
            raise CandidateError("Model is defined but is not a torch.nn.Module subclass")
        try:
            model = model_cls()
        except TypeError as e:
            raise CandidateError(f"Model() must be constructible with no arguments: {e}") from None
        model = model.to(device).eval()

        def call(**inputs):
            return model(**inputs)

        call.__wrapped__ = model.forward  # so that check_signature reads forward's signature
        return call, "Model().forward"
    for name in (op, "kernel"):
        fn = getattr(mod, name, None)
        if callable(fn):
            return fn, f"function {name}()"
    own = _own_functions(mod)
    if len(own) == 1:
        return getattr(mod, own[0]), f"function {own[0]}()"
    found = ", ".join(own) or "none"
    raise CandidateError(f"no candidate found: define `def {op}(...)`, `def kernel(...)` or a `class Model(nn.Module)`"
                         f" (public functions defined in the file: {found})")


def check_signature(fn: Callable, input_names: list[str]) -> str | None:
    """A readable error when ``fn`` cannot take the inputs as keywords, else None."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # builtins, C extensions: let the call itself decide
    params = sig.parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    names = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [n for n in input_names if n not in names]
    required = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in input_names]
    if missing or required:
        return (f"signature {sig} does not match the inputs {input_names}"
                + (f" (missing {missing})" if missing else "") + (f" (extra required {required})" if required else ""))
    return None
