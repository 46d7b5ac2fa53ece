"""Programmatic dependent launch, measured: a chain of two dependent GLU kernels (as an MLP's
activation feeding the next layer), ``x [T, 4d] -> h [T, 2d] -> y [T, d]``, timed with and
without PDL by the measurement core's graph timer (the pairs of one replay are back to back in
one CUDA graph, and inputs rotate or are flushed by the same cold-L2 rule as ``solbench run``).
With PDL the second kernel's blocks are scheduled while the first one's last wave drains, and
wait on the device (``griddepcontrol.wait``) rather than behind a full launch gap.

    python -m solbench.pdl_chain [--tokens 1,16,128,1024,8192] [--d 4096] [--out F.jsonl]

Prints one JSON object per token count (and appends it to ``--out``): the median and p20/p80
microseconds per pair of kernels with and without PDL, and the gain. Needs an sm_90+ GPU.
"""
from __future__ import annotations

import argparse
import json

import torch

from solbench.core import timing
from solbench.kernels.cuda.glu import launch_glu


def pair_bytes(tokens: int, d: int, itemsize: int) -> int:
    """HBM bytes of one pair: x read, h written and read back, y written."""
    return tokens * (4 * d + 2 * d + 2 * d + d) * itemsize


def time_chain(tokens: int, d: int, pdl: bool, dtype=torch.bfloat16) -> timing.Timing:
    """The core timer's result for one (first, dependent) pair, launched with or without PDL."""
    device = torch.device("cuda")
    itemsize = torch.empty((), dtype=dtype).element_size()
    n_sets, flush = timing.plan_sets(pair_bytes(tokens, d, itemsize), timing.l2_bytes_of(device))

    def make(i):
        g = torch.Generator(device=device).manual_seed(i)
        return (torch.randn(tokens, 4 * d, device=device, dtype=dtype, generator=g),
                torch.empty(tokens, 2 * d, device=device, dtype=dtype),
                torch.empty(tokens, d, device=device, dtype=dtype))

    sets, flush = timing.make_sets(n_sets, flush, make)

    def pair(i):
        x, h, y = sets[i]
        launch_glu(x, h, 0, 1.0, None, 0.0, False, pdl=pdl)
        launch_glu(h, y, 0, 1.0, None, 0.0, False, pdl=pdl)

    return timing.time_gpu(pair, len(sets), flush=flush, device=device)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", default="1,16,128,1024,8192")
    ap.add_argument("--d", type=int, default=4096, help="output width of the second kernel")
    ap.add_argument("--out", default=None, help="append one JSON line per token count here")
    args = ap.parse_args(argv)
    tokens_list = [int(t) for t in args.tokens.split(",")]
    if any(t <= 0 for t in tokens_list) or args.d <= 0:
        raise SystemExit("--tokens and --d must be positive")
    if not torch.cuda.is_available():
        raise SystemExit("the PDL chain needs a CUDA GPU")
    major, minor = torch.cuda.get_device_capability()
    if major < 9:
        raise SystemExit(f"PDL needs sm_90+; this GPU is sm_{major}{minor}")
    for tokens in tokens_list:
        off = time_chain(tokens, args.d, False)
        on = time_chain(tokens, args.d, True)
        record = {"kind": "pdl_chain", "device": torch.cuda.get_device_name(), "tokens": tokens, "d": args.d,
                  "dtype": "bf16", "us_per_pair_no_pdl": round(off.median_us, 3),
                  "us_per_pair_pdl": round(on.median_us, 3),
                  "gain_pct": round(100.0 * (off.median_us - on.median_us) / off.median_us, 2),
                  "timing_no_pdl": off.to_record(), "timing_pdl": on.to_record()}
        print(json.dumps({k: v for k, v in record.items() if not k.startswith("timing")}), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
