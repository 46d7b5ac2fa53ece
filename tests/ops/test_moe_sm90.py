"""The fused-MoE GEMM kernel compiles for sm_90 on this machine (no GPU: Triton's wheel ships ptxas
and nvdisasm, as `solbench sass` uses) in the three shapes of launch that carry the MoE ops: a
bf16 sorted tile of 128 rows, an fp8 sorted tile of 64 rows with the group requant epilogue, and
the fp8 decode tiles spanning several scale groups. The tensor-core tiles must use the Hopper
warpgroup MMAs and nothing may spill. Launches are captured from tiny calls under the interpreter
(recorded, not run), then compiled in a second process, as `solbench sass` does."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

SRC = str(Path(__file__).resolve().parents[2] / "src")

CAPTURE = r"""
import json
import torch
from triton.runtime import interpreter
from solbench.kernels import common
from solbench.kernels.moe import FusedMoeOptions, GemmConfig, fp8_block_fused_moe, fused_moe
from solbench.sass import _describe

launches = []
interpreter.InterpretedFunction.run = lambda self, *a, grid, warmup, **kw: launches.append(_describe(self, a, kw, grid))
common.EMULATE_GPU_CODEGEN = True
t, h, i, e, k = 40, 256, 256, 4, 2
ids = torch.arange(t * k, dtype=torch.int32).remainder(e).view(t, k)
w = torch.full((t, k), 0.5)
bf = torch.bfloat16
big = FusedMoeOptions(GemmConfig(128, 128, 64, 1, 8, 4), GemmConfig(128, 256, 64, 1, 8, 4))
fused_moe(torch.zeros(t, h, dtype=bf), torch.zeros(e, 2 * i, h, dtype=bf), torch.zeros(e, h, i, dtype=bf), w, ids,
          options=big)
f8 = torch.float8_e4m3fn
x8, w18, w28 = torch.zeros(t, h, dtype=f8), torch.zeros(e, 2 * i, h, dtype=f8), torch.zeros(e, h, i, dtype=f8)
sx, s1, s2 = torch.ones(t, h // 128), torch.ones(e, 2 * i // 128, h // 128), torch.ones(e, h // 128, i // 128)
fp8_block_fused_moe(x8, w18, w28, w, ids, sx, s1, s2,
                    options=FusedMoeOptions(GemmConfig(64, 128, 128, 1, 8, 3), GemmConfig(64, 128, 128, 1, 8, 3)))
fp8_block_fused_moe(x8[:1], w18, w28, w[:1], ids[:1], sx[:1], s1, s2,
                    options=FusedMoeOptions(GemmConfig(1, 32, 256, 1, 8, 3), GemmConfig(1, 16, 256, 1, 4, 3),
                                            direct=True))
print(json.dumps([l for l in launches if l["kernel"] == "_moe_gemm_kernel"], default=str))
"""

COMPILE = r"""
import importlib, json, sys
from collections import Counter
from solbench.sass import compile_sm90, opcode
out = []
for l in json.load(sys.stdin):
    fn = getattr(importlib.import_module(l["module"]), l["kernel"])
    ins, res = compile_sm90(fn, l["signature"], l["constexprs"], l["divisible"], l["num_warps"], l["num_stages"])
    ops = Counter(map(opcode, ins))
    out.append({"block_m": l["constexprs"]["BLOCK_M"], "gated": l["constexprs"]["GATED"],
                "fp8": l["constexprs"]["W_FP8"], "spill": res.get("local", 0) + res.get("stack", 0),
                "mma": sorted(op for op in ops if "MMA" in op)})
print(json.dumps(out))
"""


def test_moe_gemm_compiles_for_sm90_with_warpgroup_mma_and_no_spills():
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cap = subprocess.run([sys.executable, "-c", CAPTURE], capture_output=True, text=True,
                         env={**env, "TRITON_INTERPRET": "1"}, timeout=300)
    assert cap.returncode == 0, cap.stderr[-2000:]
    launches = json.loads(cap.stdout.strip().splitlines()[-1])
    assert len(launches) == 6
    env.pop("TRITON_INTERPRET", None)                        # compile for real
    comp = subprocess.run([sys.executable, "-c", COMPILE], input=json.dumps(launches), capture_output=True,
                          text=True, env=env, timeout=600)
    if comp.returncode and ("ptxas" in comp.stderr or "nvdisasm" in comp.stderr):
        pytest.skip(f"cannot compile for sm_90 here: {comp.stderr.strip().splitlines()[-1][:200]}")
    assert comp.returncode == 0, comp.stderr[-2000:]
    facts = json.loads(comp.stdout.strip().splitlines()[-1])
    assert all(f["spill"] == 0 for f in facts), facts
    for f in facts:
        if f["block_m"] >= 64:
            want = "QGMMA" if f["fp8"] else "HGMMA"
            assert any(op.startswith(want) for op in f["mma"]), f
        else:
            # decode: CUDA-core matrix-vector products, no tensor-core tile instruction
            assert not any(op.startswith(("HMMA", "HGMMA", "QGMMA")) for op in f["mma"]), f
