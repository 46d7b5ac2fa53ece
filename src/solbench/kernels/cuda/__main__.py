"""First-use compile time and cache-hit time of the JIT CUDA kernels.

    python -m solbench.kernels.cuda [--arch 90] [--dtype bf16]

For each GLU variant of the benchmark (silu, gelu, gelu_tanh, swiglu interleaved), in a fresh
cache folder: the NVRTC compile (a miss), then the same request again (a disk hit); on a GPU also
the module load. One JSON object per variant. Without a GPU, ``--arch``
(default 90) says what to compile for.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from solbench.kernels.cuda import glu, jit

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_VARIANTS = (("silu", False, False), ("gelu", False, False), ("gelu_tanh", False, False), ("swiglu", True, True))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", type=int, default=None, help="sm_XY as XY (default: the GPU's, else 90)")
    ap.add_argument("--dtype", default="bf16", choices=sorted(_DTYPES))
    args = ap.parse_args(argv)
    dtype = _DTYPES[args.dtype]
    gpu = torch.cuda.is_available()
    if args.arch is None:
        major, minor = torch.cuda.get_device_capability() if gpu else (9, 0)
        args.arch = 10 * major + minor
    fast_math, pdl = glu.fast_math_policy(args.arch), args.arch >= 90
    with tempfile.TemporaryDirectory() as cache:
        for name, interleaved, has_limit in _VARIANTS:
            variant = glu.Variant(dtype, glu.ACTIVATIONS["silu" if name == "swiglu" else name], interleaved,
                                  has_limit, args.arch, pdl, fast_math)
            miss = glu.compile_variant(variant, "cubin", cache)
            hit = glu.compile_variant(variant, "cubin", cache)
            rec = {"variant": name, "dtype": args.dtype, "arch": f"sm_{args.arch}", "fast_math": fast_math,
                   "nvrtc": ".".join(map(str, jit.nvrtc_version())), "kernels": len(variant.names),
                   "compile_miss_s": round(miss.seconds, 4), "disk_hit_s": round(hit.seconds, 5)}
            if gpu:
                rec["device"] = torch.cuda.get_device_name()
                t0 = time.perf_counter()
                loaded = jit.load(hit, torch.cuda.current_device())
                rec["load_s"] = round(time.perf_counter() - t0, 5)
                del loaded
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
