"""Device sweep of the block-fp8 GEMM's launch candidates: ``python benchmarks/block_fp8_sweep.py``.

For each shape, every candidate of :func:`~solbench.kernels.gemm.block_fp8.candidates` (the
heuristic's launch first) is checked against an fp32 product and timed with
the measurement core's graph timer (L2 flushed before every call, median), beside cuBLASLt's per-tensor
fp8 GEMM (``torch._scaled_mm``) as the upper reference. It prints one line per candidate and the
best; ``--json F`` writes the rows. A ranking for choosing the heuristic's configs: the
benchmark's figures come from ``solbench run``.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from solbench.kernels.gemm.block_fp8 import candidates, launch, sm_count

#: (M, N, K): block_scaled_mm's catalog sizes (a few of each N, K) and decode sizes.
DEFAULT_SHAPES = ((1, 4096, 4096), (16, 4096, 4096), (64, 2048, 2048), (237, 4096, 4096), (349, 2048, 2048),
                  (1024, 2048, 2048), (3072, 4096, 4096), (4533, 2048, 2048), (4096, 4096, 4096),
                  (20480, 2048, 2048), (16384, 4096, 4096), (65536, 4096, 4096))


def _operands(m, n, k, dev, g=128):
    a = torch.randn(m, k, device=dev).mul_(64).clamp_(-448, 448).to(torch.float8_e4m3fn)
    b = torch.randn(n, k, device=dev).mul_(64).clamp_(-448, 448).to(torch.float8_e4m3fn)
    sa = torch.rand(m, -(-k // g), device=dev).add_(0.5).div_(64)
    sb = torch.rand(-(-n // g), -(-k // g), device=dev).add_(0.5).div_(64 * k ** 0.5)
    return a, b, sa, sb


def _reference(a, b, sa, sb, g=128):
    k = a.shape[1]
    af = a.float() * sa.repeat_interleave(g, 1)[:, :k]
    bf = b.float() * sb.repeat_interleave(g, 0)[: b.shape[0]].repeat_interleave(g, 1)[:, :k]
    return af @ bf.T


def sweep(shapes, progress=print) -> list[dict]:
    from solbench.core.timing import time_gpu

    def bench(fn) -> float:  # milliseconds
        return time_gpu(lambda i: fn(), 1, flush=True).median_us * 1e-3

    dev = torch.device("cuda")
    sms = sm_count(dev)
    rows = []
    for m, n, k in shapes:
        a, b, sa, sb = _operands(m, n, k, dev)
        ref = _reference(a, b, sa, sb)
        out = torch.empty(m, n, device=dev)
        flops, weight = 2.0 * m * n * k, n * k
        one = torch.ones((), device=dev)
        t_ref = bench(lambda a=a, b=b, one=one: torch._scaled_mm(a, b.t(), scale_a=one, scale_b=one,
                                                                 out_dtype=torch.float32))
        progress(f"M={m} N={n} K={k}: per-tensor torch._scaled_mm {t_ref * 1e3:.1f} us "
                 f"({flops / t_ref / 1e9:.0f} TFLOP/s)")
        best = None
        for i, opt in enumerate(candidates(m, n, k, sms=sms)):
            row = {"m": m, "n": n, "k": k, "options": opt.__dict__, "heuristic": i == 0,
                   "per_tensor_us": t_ref * 1e3}
            try:
                fn = lambda a=a, b=b, sa=sa, sb=sb, out=out, opt=opt: launch(a, b, sa, sb, out, 128, 128, opt)  # noqa: E731
                out.fill_(float("nan"))
                fn()
                err = float((out - ref).norm() / ref.norm())
                if not err < 1e-3:
                    raise AssertionError(f"relative error {err:.3g}")
                t = bench(fn)
                row.update(us=t * 1e3, tflops=flops / t / 1e9, weight_gbs=weight / t / 1e6)
                if best is None or t < best[0]:
                    best = (t, i)
            except Exception as e:  # noqa: BLE001 - one candidate failing does not stop the sweep
                row["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:160] if str(e).strip() else ''}"
            rows.append(row)
            o = opt
            desc = (f"{o.block_m}x{o.block_n} w{o.num_warps} s{o.num_stages} g{o.group_m} split{o.split_k} "
                    f"p{o.programs_per_sm} tma={o.tma}")
            progress(f"  {'*' if i == 0 else ' '} {desc:<44} " + (
                f"{row['us']:9.1f} us {row['tflops']:7.0f} TFLOP/s {row['weight_gbs']:7.0f} GB/s of weight"
                if "us" in row else row["error"]))
        if best:
            progress(f"  best: candidate {best[1]} ({best[0] * 1e3:.1f} us)")
        del a, b, sa, sb, ref, out
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/block_fp8_sweep.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes", help="M,N,K;M,N,K... (default: catalog and decode sizes)")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("the sweep times on a CUDA device; none here", file=sys.stderr)
        return 2
    shapes = DEFAULT_SHAPES if not args.shapes else [tuple(int(v) for v in s.split(","))
                                                     for s in args.shapes.split(";")]
    rows = sweep(shapes)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
