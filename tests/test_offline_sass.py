"""The fast-math path really changes the machine code: our GLU kernel compiled for sm_90 on this
machine (no GPU: Triton's wheel ships ptxas and nvdisasm; benchmarks/offline_sass.py) has fewer
instructions with ``FAST`` and the same SFU work (the approximations are still the SFU's)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

ROOT = Path(__file__).resolve().parents[1]


def test_fast_math_removes_the_fixups_not_the_sfu_work():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compile for real
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "offline_sass.py"), "--modes", "silu,gelu",
                        "--block-m", "1", "--block-n", "1024", "--warps", "4", "--json"],
                       capture_output=True, text=True, env=env, timeout=300)
    if p.returncode and ("ptxas" in p.stderr or "nvdisasm" in p.stderr):
        pytest.skip(f"cannot compile for sm_90 here: {p.stderr.strip().splitlines()[-1][:200]}")
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {(r["mode"], r["fast"]): r for r in map(json.loads, p.stdout.splitlines())}  # fast: "as launched"
    for mode in ("silu", "gelu"):
        slow, fast = rows[(mode, False)], rows[(mode, True)]
        # one exp2 per output either way, and reciprocals on the SFU in both (ptxas may add one)
        assert fast["mufu"]["MUFU.EX2"] == slow["mufu"]["MUFU.EX2"] > 0
        assert fast["mufu"]["MUFU.RCP"] > 0 and slow["mufu"]["MUFU.RCP"] > 0
        assert fast["instructions"] < 0.85 * slow["instructions"], (mode, slow, fast)
