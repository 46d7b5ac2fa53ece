"""``solbench sass``: what an operator's Triton kernels compile to on sm_90, without a GPU.

Static facts, never a time. For every kernel launch an implementation makes on a shape (ours, or a
candidate file's), the machine code Triton and ptxas produce for an H100/H200 (sm_90):
instructions, registers, shared memory, local memory (spills), global loads and stores by access
width, SFU operations, barriers, cp.async copies and TMA loads (UTMALDG). It is what a kernel engineer, or an agent
without a GPU (shared/seeds/004), can check before spending device time: are the accesses 16-byte
vectors, does a tile spill, did the pipeline happen, what a source change did to the instruction
count. Under the table, each distinct kernel's :func:`findings` (spills, the register cap, shared
memory past a block's limit, loads or stores narrower than 4 bytes) say where to look first.
Whether a kernel is fast is only ever answered by ``solbench run`` on a GPU.

How (Triton's interpreter and its compiler cannot share a process, so two subprocesses):

1. **capture** (``TRITON_INTERPRET=1``): the implementation is called on the shape's CPU inputs;
   each kernel launch is recorded, not executed: the kernel (module and name), every argument's
   type and specialization exactly as Triton's launcher derives it (``native_specialize_impl``:
   16-byte divisibility of pointers and ints, an int equal to 1 made a constant), the constexprs
   as a GPU build chooses them (core/kernels.gpu_codegen: fast math, hardware fp8 conversion),
   ``num_warps`` / ``num_stages`` and the grid. Outputs are therefore left unwritten.
2. **compile** (no interpreter): each distinct launch is compiled for sm_90 (``triton.compile`` of
   an ``ASTSource`` with those facts), disassembled (the wheel's ``nvdisasm``) and its resources
   read (``cuobjdump -res-usage``).

With ``--gpu-table NVIDIA_H200`` the launches use that GPU's packaged tuned table and ``--sms`` SMs
(the few-rows keys and the SM-filling rule depend on it), as they would on that GPU. A candidate
file (``--candidate``) runs on CPU tensors too: where it chooses a code path by device
(``x.is_cuda``), the CPU path is what gets compiled.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from typing import Sequence

TARGET_ARCH = 90


# ---- compile side -----------------------------------------------------------------------------

def _tool(name: str) -> str:
    """A CUDA tool from the Triton wheel (ptxas, nvdisasm, cuobjdump), or a clear error."""
    import triton

    path = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
    if not os.path.exists(path):
        raise RuntimeError(f"this triton ({triton.__version__}) ships no {name} at {path}: "
                           "cannot compile for sm_90 here")
    return path


def opcode(instruction: str) -> str:
    """The opcode of one SASS instruction (its guard predicate skipped)."""
    parts = instruction.split()
    return parts[1] if parts and parts[0].startswith("@") and len(parts) > 1 else (parts[0] if parts else "")


def compile_sm90(fn, signature: dict, constexprs: dict, divisible: Sequence[str] = (), num_warps: int = 4,
                 num_stages: int | None = None, maxnreg: int | None = None) -> tuple[list[str], dict]:
    """(SASS instructions, resource usage) of the ``@triton.jit`` function ``fn`` compiled for
    sm_90. ``signature``: Triton type per runtime argument (``"*bf16"``, ``"i32"``, ...);
    ``divisible``: the arguments known to be multiples of 16 (pointers: 16-byte aligned)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name in divisible}
    options = {"num_warps": num_warps}
    if num_stages is not None:
        options["num_stages"] = num_stages
    if maxnreg:
        options["maxnreg"] = maxnreg
    kernel = triton.compile(ASTSource(fn, signature, constexprs, attrs),
                            target=GPUTarget("cuda", TARGET_ARCH, 32), options=options)
    instructions, resources = disassemble(kernel.asm["cubin"])
    # Triton's shared memory is dynamic (sized at launch), so cuobjdump's static SHARED misses it.
    resources["shared"] = int(getattr(kernel.metadata, "shared", 0) or 0)
    return instructions, resources


def parse_instructions(text: str) -> list[str]:
    """The instructions of nvdisasm / cuobjdump output: lines ``/*<hex address>*/ <instruction> ;``
    (addresses grow past four hex digits in kernels over 64 KB of code)."""
    return [line.split("*/", 1)[1].split(";", 1)[0].strip() for line in text.splitlines()
            if re.match(r"\s*/\*[0-9a-f]{4,}\*/", line)]


def disassemble(cubin: bytes, function: str | None = None) -> tuple[list[str], dict]:
    """(SASS instructions, resource usage: reg, local, stack) of a cubin, Triton's or NVRTC's;
    ``function``: one kernel's mangled name, for a cubin of several."""
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        if function:
            cmd = [_tool("cuobjdump"), "-sass", "-fun", function, f.name]
        else:
            cmd = [_tool("nvdisasm"), "-c", f.name]
        text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        usage = subprocess.run([_tool("cuobjdump"), "-res-usage", f.name], capture_output=True, text=True,
                               check=True).stdout
    instructions = parse_instructions(text)
    if function:  # cuobjdump lists every kernel's resources: keep the line after the named one
        lines = usage.splitlines()
        at = next((i for i, line in enumerate(lines) if line.strip() == f"Function {function}:"), None)
        if at is None:
            raise ValueError(f"no kernel {function!r} in this cubin")
        usage = lines[at + 1] if at + 1 < len(lines) else ""
    resources = {k.lower(): int(v) for k, v in re.findall(r"\b(REG|LOCAL|STACK):(\d+)", usage)}
    return instructions, resources


def summarize(instructions: Sequence[str], resources: dict) -> dict:
    """The facts of one compiled kernel: counts by kind, and global accesses by width in bytes."""
    ops = Counter(map(opcode, instructions))

    def width(op: str) -> int:
        m = re.search(r"\.(8|16|32|64|128)(?:\.|$)", op[3:])  # LDG.E.128, STG.E.64, LDG.E (32-bit), LDG.E.U16
        if m:
            return int(m.group(1)) // 8
        return 2 if ".U16" in op or ".S16" in op else (1 if ".U8" in op or ".S8" in op else 4)

    loads, stores = Counter(), Counter()
    for op, n in ops.items():
        if op.startswith("LDG"):
            loads[width(op)] += n
        elif op.startswith("STG"):
            stores[width(op)] += n
    return {"instructions": len(instructions), "registers": resources.get("reg"),
            "shared_bytes": resources.get("shared"),
            "spill_bytes": resources.get("local", 0) + resources.get("stack", 0),
            "global_loads": dict(sorted(loads.items())), "global_stores": dict(sorted(stores.items())),
            "cp_async": sum(n for op, n in ops.items() if op.startswith("LDGSTS")),
            "tma_loads": sum(n for op, n in ops.items() if op.startswith("UTMALDG")),
            "sfu": sum(n for op, n in ops.items() if op.startswith("MUFU")),
            "barriers": sum(n for op, n in ops.items() if op.startswith("BAR"))}


def _compile_main() -> int:
    """Read launches (JSON) on stdin, print one facts object per launch on stdout."""
    import importlib

    from solbench.eval.candidate import import_file

    launches = json.load(sys.stdin)
    done: dict[str, dict] = {}
    for launch in launches:
        key = json.dumps({k: launch.get(k) for k in ("module", "kernel", "signature", "constexprs", "divisible",
                                                     "num_warps", "num_stages", "maxnreg")}, sort_keys=True)
        if key not in done:
            try:
                if launch.get("candidate"):
                    mod = import_file(launch["candidate"], launch["module"])
                else:
                    mod = importlib.import_module(launch["module"])
                fn = getattr(mod, launch["kernel"])
                ins, res = compile_sm90(fn, launch["signature"], launch["constexprs"], launch["divisible"],
                                        launch["num_warps"], launch["num_stages"], launch.get("maxnreg"))
                done[key] = summarize(ins, res)
            except Exception as e:  # noqa: BLE001 - reported per launch, the others still compile
                last = str(e).strip().splitlines()[-1][:200] if str(e).strip() else ""
                done[key] = {"error": f"{type(e).__name__}: {last}"}
        print(json.dumps({**launch, **done[key]}))
    return 0


# ---- capture side -----------------------------------------------------------------------------

def _describe(interp, args, kwargs, grid) -> dict:
    """One launch as the launcher would specialize it (see the module docstring)."""
    import inspect

    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend

    fn = interp.fn
    params = list(inspect.signature(fn).parameters.values())
    bound = dict(zip([p.name for p in params], args))
    bound.update({k: v for k, v in kwargs.items() if k in {p.name for p in params}})
    options = {k: v for k, v in kwargs.items() if k not in bound}
    dont = set(interp.kwargs.get("do_not_specialize") or ())
    signature, constexprs, divisible = {}, {}, []
    for i, p in enumerate(params):
        value = bound.get(p.name, p.default)
        if "constexpr" in str(p.annotation):
            constexprs[p.name] = value
            continue
        specialize = p.name not in dont and i not in dont
        kind, spec = native_specialize_impl(BaseBackend, value, False, specialize, True)
        if kind == "constexpr":
            constexprs[p.name] = spec
            continue
        signature[p.name] = kind
        if spec == "D":
            divisible.append(p.name)
    if callable(grid):
        grid = grid({**bound, **options})
    module = fn.__module__
    importable = "<locals>" not in fn.__qualname__
    return {"module": module, "kernel": fn.__name__ if importable else fn.__qualname__, "importable": importable,
            "signature": signature, "constexprs": constexprs, "divisible": divisible,
            "num_warps": int(options.get("num_warps", 4)), "num_stages": options.get("num_stages"),
            "maxnreg": options.get("maxnreg"),
            "grid": [int(g) for g in (grid if isinstance(grid, (tuple, list)) else (grid,))]}


def _capture_main(argv: Sequence[str]) -> int:
    import argparse

    import torch

    p = argparse.ArgumentParser()
    p.add_argument("--op", required=True)
    p.add_argument("--shapes")
    p.add_argument("--impl", default="ours_triton")
    p.add_argument("--candidate")
    p.add_argument("--gpu-table")
    p.add_argument("--sms", type=int)
    a = p.parse_args(argv)

    from triton.runtime import interpreter

    from solbench.core.check import run_impl
    from solbench.core.spec import get_spec, impls_for
    from solbench.kernels import common as kernels
    from solbench.runtime import tuning

    if a.gpu_table:
        tuning.reload()
        tuning._current_device_key = lambda: a.gpu_table  # the packaged table of that GPU
        tuning.sm_count = lambda: a.sms
    spec = get_spec(a.op)
    wanted = set(a.shapes.split(",")) if a.shapes else None
    shapes = [s for s in spec.shapes if wanted is None or str(s.id) in wanted]
    if wanted is not None and {str(s.id) for s in shapes} != wanted:
        missing = sorted(wanted - {str(s.id) for s in shapes})
        raise SystemExit(f"solbench sass: {a.op} has no shape {', '.join(missing)} (ids 0-{len(spec.shapes) - 1})")
    if a.candidate:
        from solbench.eval.candidate import import_file, resolve

        fn, _ = resolve(import_file(a.candidate, "solbench_sass_candidate"), a.op, torch.device("cpu"))
        call = lambda shape, inputs: fn(**inputs)  # noqa: E731
    else:
        impl = impls_for(a.op).get(a.impl)
        if impl is None:
            raise SystemExit(f"solbench sass: {a.op} has no implementation {a.impl!r} "
                             f"(known: {', '.join(sorted(impls_for(a.op)))})")

        def call(shape, inputs):
            outs = spec.make_outputs(shape, inputs) if impl.takes_out else None
            run_impl(spec, impl, shape, inputs, tuple(outs) if outs is not None else None)

    launches, current = [], {}
    original = interpreter.InterpretedFunction.run

    def record(self, *args, grid, warmup, **kwargs):
        launches.append({**current, **_describe(self, args, kwargs, grid),
                         **({"candidate": a.candidate, "module": "solbench_sass_candidate"}
                            if a.candidate and self.fn.__module__ == "solbench_sass_candidate" else {})})

    interpreter.InterpretedFunction.run = record
    kernels.EMULATE_GPU_CODEGEN = True  # constexprs as a GPU build chooses them (fast math, hardware fp8)
    try:
        with torch.no_grad():
            for shape in shapes:
                current = {"op": a.op, "shape_id": shape.id, "params": {k: v for k, v in shape.params.items()}}
                call(shape, spec.make_inputs(shape, torch.device("cpu"), 0))
    finally:
        interpreter.InterpretedFunction.run = original
        kernels.EMULATE_GPU_CODEGEN = False
    print(json.dumps(launches, default=str))
    return 0


# ---- orchestration ----------------------------------------------------------------------------

def inspect_op(op: str, shapes: Sequence[str] | None = None, impl: str = "ours_triton", candidate: str | None = None,
               gpu_table: str | None = None, sms: int | None = None, timeout: float = 900) -> list[dict]:
    """Capture then compile (see the module docstring); one dict per launch: the launch and its
    facts (or an ``error``)."""
    base = [sys.executable, "-m", "solbench.sass"]
    env = {**os.environ}
    src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cap = base + ["capture", "--op", op, "--impl", impl]
    for flag, value in (("--shapes", ",".join(map(str, shapes)) if shapes else None), ("--candidate", candidate),
                        ("--gpu-table", gpu_table), ("--sms", str(sms) if sms else None)):
        if value:
            cap += [flag, value]
    p = subprocess.run(cap, env={**env, "TRITON_INTERPRET": "1"}, capture_output=True, text=True, timeout=timeout)
    if p.returncode:
        raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"capture exited {p.returncode}")
    launches = json.loads(p.stdout.strip().splitlines()[-1])
    if not launches:
        return []
    compile_env = {k: v for k, v in env.items() if k != "TRITON_INTERPRET"}
    c = subprocess.run(base + ["compile"], input=json.dumps(launches), env=compile_env, capture_output=True,
                       text=True, timeout=timeout)
    if c.returncode:
        raise RuntimeError(c.stderr.strip().splitlines()[-1] if c.stderr.strip() else f"compile exited {c.returncode}")
    return [json.loads(line) for line in c.stdout.splitlines() if line.startswith("{")]


#: Registers a thread can hold on sm_90, and shared memory a block can (227 KB of the SM's 228).
MAX_REGISTERS = 255
MAX_SHARED_BYTES = 227 * 1024


def findings(row: dict) -> list[str]:
    """What in one compiled launch is worth a look before spending device time (static facts, never
    a verdict on speed): local-memory spills, a thread at the register cap, shared memory past
    what an SM gives one block, and global loads or stores narrower than 4 bytes (one or two
    bytes an instruction: a tile the compiler could not prove contiguous or aligned, or scalars
    such as a page index; fp8 data loads one byte an element where nothing wider is proven)."""
    if "error" in row:
        return [f"did not compile: {row['error']}"]
    out = []
    if row.get("spill_bytes"):
        out.append(f"spills {row['spill_bytes']} B a thread to local memory")
    if (row.get("registers") or 0) >= MAX_REGISTERS:
        out.append(f"{row['registers']} registers a thread: at the cap")
    if (row.get("shared_bytes") or 0) > MAX_SHARED_BYTES:
        out.append(f"{row['shared_bytes']} B of shared memory: more than a block may have ({MAX_SHARED_BYTES})")
    for kind in ("global_loads", "global_stores"):
        narrow = {w: n for w, n in (row.get(kind) or {}).items() if int(w) < 4}
        if narrow:
            out.append(f"{kind.replace('global_', '')} of {_widths(narrow)} (narrower than 4 bytes)")
    return out


def _widths(by_width: dict) -> str:
    return " ".join(f"{n}x{w}B" for w, n in sorted(by_width.items(), key=lambda kv: int(kv[0]))) or "-"


def cmd_sass(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from solbench.cli import split_csv

    try:
        rows = inspect_op(args.op, split_csv(args.shapes), impl=args.impl, candidate=args.candidate,
                          gpu_table=args.gpu_table, sms=args.sms)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        raise SystemExit(f"solbench sass: {e}") from e
    if args.json:
        for r in rows:
            print(json.dumps(r))
        return 0
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    t = Table(title=f"{args.op}: sm_90 code of each kernel launch (static facts, not timings)")
    for col in ("shape", "kernel", "grid", "warps", "instr", "regs", "smem B", "spill B", "loads", "stores",
                "cp.async", "TMA", "SFU", "bar"):
        t.add_column(col, justify="left" if col in ("shape", "kernel", "loads", "stores") else "right")
    for r in rows:
        if "error" in r:
            t.add_row(str(r["shape_id"]), r["kernel"], "x".join(map(str, r["grid"])), str(r["num_warps"]),
                      f"[red]{r['error'][:60]}[/]", *[""] * 9)
            continue
        t.add_row(str(r["shape_id"]), r["kernel"], "x".join(map(str, r["grid"])), str(r["num_warps"]),
                  str(r["instructions"]), str(r["registers"]), str(r["shared_bytes"]),
                  f"[red]{r['spill_bytes']}[/]" if r["spill_bytes"] else "0",
                  _widths(r["global_loads"]), _widths(r["global_stores"]), str(r["cp_async"]), str(r["tma_loads"]),
                  str(r["sfu"]),
                  str(r["barriers"]))
    console.print(t)
    notes, seen = [], set()
    for r in rows:  # once per distinct compiled kernel
        key = (r["kernel"], json.dumps(r.get("constexprs"), sort_keys=True, default=str), r.get("num_warps"),
               r.get("num_stages"))
        if key not in seen:
            seen.add(key)
            notes += [f"#{r['shape_id']} {r['kernel']}: {f}" for f in findings(r)]
    if notes:
        console.print("Worth a look before device time (static; the timer decides):")
        for n in notes:
            console.print(f"  {n}")
    if args.candidate:
        console.print("The candidate ran on CPU tensors: where it picks a code path by device (x.is_cuda), "
                      "what is shown is its CPU path.")
    if not rows:
        console.print("no Triton kernel launched (the implementation is not a Triton kernel here)")
    return 0


def register(sub) -> None:
    q = sub.add_parser("sass", help="the sm_90 machine code of an operator's Triton kernels per shape, "
                                    "compiled without a GPU (static facts, never a time)")
    q.add_argument("--op", required=True)
    q.add_argument("--shapes", action="append", help="catalog shape ids (default: all)")
    q.add_argument("--impl", default="ours_triton", help="the implementation whose launches are compiled")
    q.add_argument("--candidate", help="a candidate file (as for `solbench eval`) instead of --impl")
    q.add_argument("--gpu-table", help="launch as on this GPU: its packaged tuned table, e.g. NVIDIA_H200")
    q.add_argument("--sms", type=int, default=None, help="with --gpu-table: its SM count (H100/H200: 132)")
    q.add_argument("--json", action="store_true", help="one JSON object per launch")
    q.set_defaults(func=cmd_sass)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "capture":
        raise SystemExit(_capture_main(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "compile":
        raise SystemExit(_compile_main())
    raise SystemExit("usage: python -m solbench.sass capture ... | compile < launches.json")
