"""``solbench task export OP DIR``: a self-contained task folder for a person or an agent.

What goes in (and why this form):

* ``reference.py``: the entry point, torch only: ``SHAPES``, ``make_inputs(shape, device, seed)``,
  ``reference(**inputs)``, ``tolerance(shape)``, and ``python reference.py check CANDIDATE.py``, a
  local correctness check.
* ``_reference/``: the operator's own ``spec.py`` and the solbench helpers it imports, copied
  verbatim with their ``solbench`` imports renamed. Copying the source (rather than re-generating
  it) keeps the task's reference the very code the evaluator runs, docstrings and comments
  included; the closure is found by reading the imports, and a test imports every exported
  operator with solbench and triton blocked. The catalog is replaced by a stub that holds only
  the shapes' kwargs and dtypes.
* ``shapes.json``, ``TASK.md`` (interface, dtypes, tolerance rule, local check, scoring rule) and a
  ``candidate.py`` starting point that calls the reference.

What stays out: SOL and roofline numbers, deployed times, provenance (frameworks, traces, call
counts, weights), importance, and (unless ``--with-hints``) the cost model: ``cost()`` methods
are removed from the copied operator modules. ``--with-hints`` keeps them and writes
``hints.json`` (FLOPs per dtype path and bytes per shape) and the SOL formula, but still no
device's SOL numbers.
"""
from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import re
import shutil
from pathlib import Path
from typing import Sequence

from solbench.core.spec import OpSpec, get_spec
from solbench.eval.edge import edge_shapes

BUNDLE = "_reference"
# Modules a task never carries: the evaluator, the hardware model and everything about results.
_EXCLUDED = ("solbench.catalog", "solbench.eval", "solbench.runner", "solbench.cli", "solbench.report",
             "solbench.profiles", "solbench.core.hardware", "solbench.core.roofline", "solbench.core.score",
             "solbench.core.env", "solbench.core.calibration", "solbench.core.timing")
_ENTRY_KEYS = ("name", "dtype", "input_dtypes", "output_dtypes")


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _imports(mod_name: str) -> set[str]:
    """solbench modules ``mod_name`` imports anywhere in its source (lazy imports included)."""
    path = importlib.util.find_spec(mod_name).origin
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    pkg = mod_name if path.endswith("__init__.py") else mod_name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.add(sub if _is_module(sub) else base)
    return {f for f in found if f == "solbench" or f.startswith("solbench.")}


def module_closure(start: str) -> list[str]:
    """``start`` and the solbench modules it needs, transitively, minus the excluded ones."""
    todo, seen = [start], []
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.append(m)
        for dep in sorted(_imports(m)):
            if dep in ("solbench", "solbench.ops") or dep.startswith(_EXCLUDED):
                continue
            if importlib.util.find_spec(dep).origin.endswith("__init__.py"):
                continue  # package inits (they import implementations); empty ones are written instead
            todo.append(dep)
    return sorted(seen)


def _rename_imports(source: str) -> str:
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            i = node.lineno - 1
            lines[i] = re.sub(r"\b(from|import)(\s+)solbench\b", rf"\1\2{BUNDLE}", lines[i])
    return "".join(lines)


def _strip_cost(source: str) -> str:
    """Remove ``cost`` methods from the classes of an operator module (the cost model is a hint)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    spans = []
    for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]:
        for fn in cls.body:
            if isinstance(fn, ast.FunctionDef) and fn.name == "cost":
                start = min([fn.lineno] + [d.lineno for d in fn.decorator_list]) - 1
                spans.append((start, fn.end_lineno, fn.col_offset))
    for start, end, col in sorted(spans, reverse=True):
        lines[start:end] = [" " * col + "# cost(): the cost model is left out of this task "
                                        "(`solbench task export --with-hints` includes it)\n"]
    return "".join(lines)


def _scrub_entry(entry: dict) -> dict:
    out = {k: entry[k] for k in _ENTRY_KEYS if k in entry}
    out["shapes"] = [{"id": s.get("id", i), "init_kwargs": s.get("init_kwargs"), "input_kwargs": s.get("input_kwargs")}
                     for i, s in enumerate(entry.get("shapes", []))]
    return out


_CATALOG_STUB = '''"""The shapes this task's operator modules read at import: the solbench catalog reduced to shape
kwargs and dtypes (no timings, no provenance, no importance)."""
from __future__ import annotations

import json

from {bundle}.core.spec import Shape

_ENTRIES = json.loads({entries!r})


def operator_entries(path=None) -> dict:
    return _ENTRIES


def make_shapes(entry) -> list:
    return [Shape(op=entry["name"], id=s["id"],
                  params={{**(s.get("init_kwargs") or {{}}), **(s.get("input_kwargs") or {{}})}},
                  init_kwargs=s.get("init_kwargs"), input_kwargs=s.get("input_kwargs"))
            for s in entry["shapes"]]
'''


def write_bundle(spec: OpSpec, dest: Path, with_hints: bool) -> list[str]:
    """Copy the spec's module closure under ``dest/_reference``; returns the module names."""
    from solbench.catalog import operator_entries

    mods = module_closure(type(spec).__module__)
    root = dest / BUNDLE
    for m in mods:
        rel = Path(*m.split(".")[1:]).with_suffix(".py")
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        src = Path(importlib.util.find_spec(m).origin).read_text(encoding="utf-8")
        if m.startswith("solbench.ops.") and not with_hints:
            src = _strip_cost(src)
        target.write_text(_rename_imports(src), encoding="utf-8")
    # Package inits: empty, so importing a spec never pulls in kernels or implementations.
    for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        init = d / "__init__.py"
        if not init.exists():
            init.write_text('"""Part of an exported solbench task (see ../reference.py)."""\n', encoding="utf-8")
    entries = operator_entries()
    used = {m.split(".")[2] for m in mods if m.startswith("solbench.ops.")}
    stub = {name: _scrub_entry(e) for name, e in entries.items() if name in used or name == spec.name}
    (root / "catalog").mkdir(exist_ok=True)
    (root / "catalog" / "__init__.py").write_text(
        _CATALOG_STUB.format(bundle=BUNDLE, entries=json.dumps(stub, separators=(",", ":"))), encoding="utf-8")
    return mods


def _tensor_desc(t) -> str:
    import torch

    if isinstance(t, torch.Tensor):
        return f"tensor {list(t.shape)} {str(t.dtype).replace('torch.', '')}"
    return f"{type(t).__name__} = {t!r}"[:80]


def _interface(spec: OpSpec, shape) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    import torch

    inputs = spec.make_inputs(shape, torch.device("cpu"), 0)
    with torch.no_grad():
        outs = spec.normalize_outputs(spec.reference(**{k: (v.clone() if isinstance(v, torch.Tensor) else v)
                                                         for k, v in inputs.items()}))
    return [(k, _tensor_desc(v)) for k, v in inputs.items()], [(k, _tensor_desc(v)) for k, v in outs.items()]


def export_task(op: str, dest: str | Path, shapes: Sequence[str] | None = None, with_hints: bool = False,
                edge: bool = True, force: bool = False) -> dict:
    spec = get_spec(op)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()) and not force:
        raise ValueError(f"{dest} is not empty (use --force to write into it)")
    if force and (dest / BUNDLE).exists():
        shutil.rmtree(dest / BUNDLE)
    dest.mkdir(parents=True, exist_ok=True)
    chosen = list(spec.shapes)
    if shapes:
        by_id = {str(s.id): s for s in spec.shapes}
        unknown = [s for s in shapes if str(s) not in by_id]
        if unknown:
            raise ValueError(f"{op}: unknown shape ids {unknown}")
        chosen = [by_id[str(s)] for s in shapes]
    edges = edge_shapes(spec) if edge else []
    mods = write_bundle(spec, dest, with_hints)
    spec_module = type(spec).__module__.replace("solbench.", f"{BUNDLE}.", 1)

    shape_rows = [{"id": s.id, "params": dict(s.params), "edge": False} for s in chosen]
    # The local check on a CPU takes the shapes eval takes there (the smoke shapes, "cpu": true):
    # catalog rows where they are catalog shapes, else extra reduced rows.
    by_id = {str(r["id"]): r for r in shape_rows}
    for sm in spec.smoke_shapes():
        row = by_id.get(str(sm.id))
        if row is not None and row["params"] == dict(sm.params):
            row["cpu"] = True
        elif not shapes:
            sid = sm.id if row is None else f"reduced-{sm.id}"
            shape_rows.append({"id": sid, "params": dict(sm.params), "edge": False, "reduced": True, "cpu": True})
    shape_rows += [{"id": s.id, "params": dict(s.params), "edge": True, "description": s.description} for s in edges]
    (dest / "shapes.json").write_text(json.dumps({"op": spec.name, "dtype": spec.dtype,
                                                  "output_names": list(spec.output_names), "shapes": shape_rows},
                                                 indent=1), encoding="utf-8")
    smallest = min(chosen, key=lambda s: spec.cost(s).total_bytes)
    ins, outs = _interface(spec, smallest)
    (dest / "reference.py").write_text(_REFERENCE_PY.format(op=spec.name, bundle=BUNDLE, spec_module=spec_module),
                                       encoding="utf-8")
    args = ", ".join(k for k, _ in ins)
    (dest / "candidate.py").write_text(_CANDIDATE_PY.format(op=spec.name, args=args,
                                                            kwargs=", ".join(f"{k}={k}" for k, _ in ins)),
                                       encoding="utf-8")
    if with_hints:
        hints = [{"id": s.id, **spec.cost(s).to_record()} for s in chosen + edges]
        (dest / "hints.json").write_text(json.dumps({"op": spec.name, "cost": hints}, indent=1), encoding="utf-8")
    (dest / "TASK.md").write_text(_task_md(spec, chosen, edges, ins, outs, smallest, with_hints), encoding="utf-8")
    return {"dir": str(dest), "shapes": len(chosen), "edge_shapes": len(edges), "modules": mods}


def _task_md(spec: OpSpec, chosen, edges, ins, outs, smallest, with_hints: bool) -> str:
    ref_src = inspect.getsource(type(spec).reference)
    doc = inspect.getdoc(type(spec).reference) or ""
    tols = {}
    for s in chosen + edges:
        t = spec.tolerance(s)
        tols.setdefault((t.atol, t.rtol, t.rms_rtol), []).append(str(s.id))
    tol_lines = "\n".join(f"- atol = {a:g}, rtol = {r:g}, RMS-relative <= {m if m is None else format(m, 'g')}"
                          + (f" (shapes {', '.join(ids)})" if len(tols) > 1 else "") for (a, r, m), ids in tols.items())
    params = sorted({k for s in chosen for k in s.params})
    edge_lines = "\n".join(f"- `{s.id}`: {s.description.replace('edge case: ', '')} ({json.dumps(dict(s.params))})"
                           for s in edges) or "- none"
    structural = ("\nThis operator is **structural**: its integer outputs are judged by invariants (the reference's "
                  "order is not the only correct one), see `check_invariants` in `_reference/`.\n"
                  ) if spec.structural else ""
    hints = ""
    if with_hints:
        hints = """
## Hints: the cost model

`hints.json` lists, per shape, the FLOPs per dtype path and the bytes read and written once (the
`cost()` method in `_reference/`, which says what is counted). The speed of light on a device is
SOL = max(Σ_path FLOPs_path / peak_path, (bytes_read + bytes_written) / bandwidth); the score uses
the device's calibrated (achievable) ceilings.
"""
    return f"""# Task: `{spec.name}`

Write a faster implementation of `{spec.name}` ({spec.dtype}) that is correct on every shape below.

## Meaning

{doc}

```python
{ref_src.rstrip()}
```

The full reference, input generator and tolerance live in `_reference/` (a copy of the code the
evaluator runs); `reference.py` is the entry point and imports torch only.

## Interface

One Python file that defines either a function

```python
def {spec.name}({", ".join(k for k, _ in ins)}):
    ...
    return {", ".join(k for k, _ in outs)}
```

taking the inputs as keyword arguments and returning the outputs (a tensor, a tuple in this
order, or a dict with these names), or a `class Model(torch.nn.Module)` built with no arguments
whose `forward` takes the same keywords. `candidate.py` is a working starting point.

On the smallest shape (`{smallest.id}`: `{json.dumps(dict(smallest.params))}`):

| input | value |
|---|---|
{chr(10).join(f"| `{k}` | {v} |" for k, v in ins)}

| output | value |
|---|---|
{chr(10).join(f"| `{k}` | {v} |" for k, v in outs)}

Outputs must be plain dense tensors (no subclasses, no lazy wrappers) on the inputs' device, in
the dtypes above, freshly produced by each call. Inputs may have any values the generator can
produce; do not assume zeros or a fixed seed.

## Shapes

`shapes.json` lists {len(chosen)} shapes (kwargs: {", ".join(f"`{p}`" for p in params)}) and these edge
cases, which are checked for correctness but not timed:

{edge_lines}
{structural}
## Correctness

Per shape, on fresh random inputs from several seeds, with outputs poisoned (NaN) beforehand,
each floating output must satisfy |got - ref| <= atol + rtol * |ref| element-wise and have an
RMS-relative error under the bound; NaN/Inf fails; integer outputs must match exactly; an output
that is constant where the reference varies fails.

{tol_lines}

Local check (not the official verdict):

```
python reference.py check candidate.py            # CPU (Triton kernels: TRITON_INTERPRET=1, small shapes)
python reference.py check candidate.py --device cuda --shapes {chosen[0].id}
```

## Scoring

`solbench eval candidate.py --op {spec.name}` runs the candidate in a subprocess, with a time limit
per stage (import, correctness, timing) and a memory cap:

1. **correctness** on every shape and edge case, plus an audit: the candidate is called
   repeatedly on inputs with distinct addresses, and one call chosen at random gets its inputs
   refilled in place first; its outputs must match. Outputs of different calls must not share
   memory.
2. **performance** (GPU only): CUDA-graph replay with rotating inputs and a cold L2, against the
   speed of light of the device and against `torch.compile`; the outputs of one randomly chosen
   timed call are audited on freshly refilled inputs. Work on a stream the caller does not wait
   for, patched timers or evaluator functions, and times below the achievable speed of light
   fail or are flagged and never scored.

Per task: fraction of shapes correct; geometric-mean speedup over `torch.compile` on the correct
shapes; median S = SOL / time (shapes weighted by their production weight, which is not part of
the task). Without a GPU only correctness is reported.
{hints}"""


_REFERENCE_PY = '''"""Task `{op}`: the reference and its input generator (written by `solbench task export`).

Imports torch only. The operator's code is in `{bundle}/` (a copy of the solbench spec module and
the helpers it uses, imports renamed).

    import reference
    shape = reference.SHAPES[0]
    inputs = reference.make_inputs(shape, device="cpu", seed=0)
    expected = reference.reference(**inputs)          # a tuple in OUTPUT_NAMES order

    python reference.py check candidate.py [--device cuda] [--shapes 0,3] [--seeds 0,1,2]
"""
from __future__ import annotations

import importlib
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import torch  # noqa: E402

from {bundle}.core import spec as _core  # noqa: E402

_core._LOADED = True  # the task carries one operator: never scan for the others
importlib.import_module("{spec_module}")
SPEC = _core._SPECS["{op}"]
OUTPUT_NAMES = tuple(SPEC.output_names)
with open(os.path.join(HERE, "shapes.json"), encoding="utf-8") as _f:
    SHAPES = json.load(_f)["shapes"]


def shape(entry) -> "_core.Shape":
    """A shapes.json entry (or its id) as the spec's Shape."""
    if not isinstance(entry, dict):
        entry = next(s for s in SHAPES if str(s["id"]) == str(entry))
    return _core.Shape(op=SPEC.name, id=entry["id"], params=entry["params"], smoke=bool(entry.get("edge")))


def make_inputs(entry, device="cpu", seed=0) -> dict:
    """Fresh random inputs (keyword arguments of the operator) for one shape."""
    return SPEC.make_inputs(shape(entry), torch.device(device), seed)


def reference(**inputs) -> tuple:
    """The reference outputs, in OUTPUT_NAMES order."""
    out = SPEC.normalize_outputs(SPEC.reference(**inputs))
    return tuple(out[n] for n in OUTPUT_NAMES)


def tolerance(entry) -> dict:
    t = SPEC.tolerance(shape(entry))
    return {{"atol": t.atol, "rtol": t.rtol, "rms_rtol": t.rms_rtol}}


def _compare(name, got, ref, tol) -> str | None:
    if not isinstance(got, torch.Tensor) or type(got) is not torch.Tensor:
        return f"{{name}}: not a plain torch.Tensor ({{type(got).__name__}})"
    if tuple(got.shape) != tuple(ref.shape) or got.dtype != ref.dtype:
        return f"{{name}}: {{tuple(got.shape)}} {{got.dtype}}, expected {{tuple(ref.shape)}} {{ref.dtype}}"
    if got.numel() == 0:
        return None
    if not ref.is_floating_point():
        bad = int((got.to(torch.int64) != ref.to(torch.int64)).sum())
        return f"{{name}}: {{bad}} integers differ" if bad else None
    g, r = got.double().cpu(), ref.double().cpu()
    if not torch.isfinite(g).all():
        return f"{{name}}: NaN/Inf in the output"
    diff = (g - r).abs()
    over = int((diff > tol.atol + tol.rtol * r.abs()).sum())
    if over:
        return f"{{name}}: {{over}} of {{g.numel()}} elements outside atol={{tol.atol:g}} rtol={{tol.rtol:g}}"
    norm = float(r.norm())
    rms = float(diff.norm()) / norm if norm else 0.0
    if tol.rms_rtol is not None and rms > tol.rms_rtol:
        return f"{{name}}: RMS-relative error {{rms:.3g}} > {{tol.rms_rtol:g}}"
    if g.numel() > 1 and float(r.max() - r.min()) > 0 and float(g.max() - g.min()) == 0:
        return f"{{name}}: constant output where the reference varies"
    return None


def check(fn, shapes=None, device="cpu", seeds=(0, 1, 2)) -> list:
    """[(shape id, error or None)] for ``fn(**inputs)`` against the reference."""
    results = []
    for entry in shapes or SHAPES:
        sh = shape(entry)
        err = None
        for seed in seeds:
            inputs = SPEC.make_inputs(sh, torch.device(device), seed)
            with torch.no_grad():
                ref = SPEC.normalize_outputs(SPEC.reference(**{{k: v.clone() if isinstance(v, torch.Tensor) else v
                                                              for k, v in inputs.items()}}))
                try:
                    got = SPEC.normalize_outputs(fn(**inputs))
                except Exception as e:  # noqa: BLE001
                    err = f"seed {{seed}}: raised {{type(e).__name__}}: {{e}}"
                    break
            missing = [n for n in ref if n not in got]
            if missing:
                err = f"seed {{seed}}: missing outputs {{missing}}"
                break
            errs = list(SPEC.check_invariants(sh, inputs, got, ref)) if SPEC.structural else []
            tol = SPEC.tolerance(sh)
            try:
                gv, rv = SPEC.compare_views(sh, inputs, got, ref)
                for n in rv:
                    if SPEC.structural and not rv[n].is_floating_point():
                        continue
                    e = _compare(n, gv[n], rv[n], tol)
                    if e:
                        errs.append(e)
            except Exception as e:  # noqa: BLE001 - outputs the comparison cannot even read
                errs.append(f"comparing the outputs raised {{type(e).__name__}}: {{e}}")
            if errs:
                err = f"seed {{seed}}: " + "; ".join(errs[:3])
                break
        results.append((sh.id, err))
    return results


def _main(argv) -> int:
    import argparse
    import importlib.util

    p = argparse.ArgumentParser(description="local correctness check of a candidate (not the official verdict)")
    p.add_argument("command", choices=["check"])
    p.add_argument("candidate")
    p.add_argument("--device", default="cpu")
    p.add_argument("--shapes", help="comma-separated shape ids, or 'all' (default: on a GPU the catalog shapes and "
                   "the edge cases; on the CPU the small ones, as solbench eval takes there)")
    p.add_argument("--seeds", default="0,1,2")
    a = p.parse_args(argv)
    mspec = importlib.util.spec_from_file_location("candidate", os.path.abspath(a.candidate))
    mod = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(mod)
    if isinstance(getattr(mod, "Model", None), type):
        model = mod.Model().to(a.device)
        fn = lambda **kw: model(**kw)  # noqa: E731
    else:
        fn = getattr(mod, "{op}", None) or getattr(mod, "kernel")
    ids = a.shapes.split(",") if a.shapes and a.shapes != "all" else None
    if ids is not None:
        chosen = [s for s in SHAPES if str(s["id"]) in ids]
    elif a.shapes == "all":
        chosen = list(SHAPES)
    elif a.device == "cpu" and any(s.get("cpu") for s in SHAPES):
        chosen = [s for s in SHAPES if s.get("cpu") or s.get("edge")]
        print(f"CPU: checking the {{len(chosen)}} small shapes of {{len(SHAPES)}} (--shapes all for every one)")
    else:
        chosen = [s for s in SHAPES if not s.get("reduced")]
    failed = 0
    for sid, err in check(fn, chosen, a.device, tuple(int(s) for s in a.seeds.split(","))):
        print(f"shape {{sid}}: {{'ok' if err is None else 'FAIL ' + err}}")
        failed += err is not None
    print(f"{{len(chosen) - failed}}/{{len(chosen)}} shapes correct")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
'''

_CANDIDATE_PY = '''"""A starting point for task `{op}`: correct (it calls the reference), not fast.

Replace the body with your kernel. Evaluate with
    solbench eval candidate.py --op {op}
"""
import torch  # noqa: F401

OP = "{op}"


def {op}({args}):
    from reference import reference

    out = reference({kwargs})
    return out if len(out) > 1 else out[0]
'''
