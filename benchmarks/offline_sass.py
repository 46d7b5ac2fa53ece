"""Instruction counts of our GLU kernel, compiled for sm_90 on a machine without a GPU.

    python benchmarks/offline_sass.py [--block-m 2 --block-n 2048 --warps 8]

Triton compiles for a named target without a device, and its wheel ships ptxas and nvdisasm, so
the SASS a kernel would run on an H100/H200 can be read anywhere (``solbench sass`` does it for
every launch an operator makes; this script compares two builds of one kernel). Static counts say
nothing about time; they show what a source change does to the instruction stream
(kernels/_fastmath_triton.py quotes them). Each GLU mode is compiled for bf16 without fast math
("exact") and as it is launched now ("as launched": the ``FAST`` reciprocal/exp2 without subnormal
fix-ups, and alpha = 1 / up_shift = 0 known at compile time), with the divisibility-by-16
specialization a launch on aligned tensors gets.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
warnings.filterwarnings("ignore")


def sass_of(fn, signature: dict, constexprs: dict, divisible_by_16=(), num_warps: int = 4) -> list[str]:
    """The SASS instructions of ``fn`` compiled for sm_90 (solbench.sass.compile_sm90)."""
    from solbench.sass import compile_sm90

    return compile_sm90(fn, signature, constexprs, divisible_by_16, num_warps)[0]


def main(argv=None) -> int:
    import triton

    from solbench.kernels._glu_triton import _glu_kernel
    from solbench.kernels.activation import ACT_MODES
    from solbench.sass import opcode

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--block-m", type=int, default=2)
    p.add_argument("--block-n", type=int, default=2048)
    p.add_argument("--warps", type=int, default=8)
    p.add_argument("--modes", default="silu,gelu,gelu_tanh", help="comma-separated GLU modes")
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of the table")
    a = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("offline_sass: unset TRITON_INTERPRET (the interpreter compiles nothing)")
    signature = {"x_ptr": "*bf16", "out_ptr": "*bf16", "rows": "i32", "d": "i32", "x_row_stride": "i32",
                 "out_row_stride": "i32", "alpha": "fp32", "limit": "fp32", "up_shift": "fp32"}
    aligned = ("x_ptr", "out_ptr", "d", "x_row_stride", "out_row_stride")
    per_thread = a.block_m * a.block_n // (32 * a.warps)
    if not a.json:
        print(f"triton {triton.__version__}, sm_90, bf16, tile {a.block_m}x{a.block_n}, {a.warps} warps "
              f"({per_thread} outputs per thread)")
        print(f"{'mode':<10} {'kernel':<32} {'instructions':>12} {'per output':>10}  MUFU")
    # "exact": exact transcendentals, alpha and up_shift applied at run time (how the committed H200
    # figures' kernel was built; it also had the erf GELU's select form: 30.5 per output there);
    # "as launched": what launch_glu compiles today for a 16-bit output with alpha = 1 and
    # up_shift = 0 (every mode here but swiglu).
    variants = (("exact", {"FAST": False, "SCALED": True, "SHIFTED": True}),
                ("as launched", {"FAST": True, "SCALED": False, "SHIFTED": False}))
    for mode in a.modes.split(","):
        for label, flags in variants:
            ins = sass_of(_glu_kernel, signature,
                          {"ACT": ACT_MODES[mode], "HAS_LIMIT": False, "INTERLEAVED": False,
                           "BLOCK_M": a.block_m, "BLOCK_N": a.block_n, **flags},
                          divisible_by_16=aligned, num_warps=a.warps)
            mufu = Counter(op for op in map(opcode, ins) if op.startswith("MUFU"))
            if a.json:
                print(json.dumps({"triton": triton.__version__, "mode": mode, "variant": label, "fast": flags["FAST"],
                                  "instructions": len(ins), "per_output": len(ins) / per_thread, "mufu": dict(mufu)}))
                continue
            print(f"{mode:<10} {label:<32} {len(ins):>12} {len(ins) / per_thread:>10.1f}  "
                  + " ".join(f"{k}={v}" for k, v in sorted(mufu.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
