"""Programmatic dependent launch, measured: a chain of two dependent GLU kernels (as an MLP's
activation feeding the next layer), ``x [T, 4d] -> h [T, 2d] -> y [T, d]``, repeated ``pairs``
times in one CUDA graph, replayed with and without PDL. With PDL the second kernel's blocks are
scheduled while the first one's last wave drains, and wait on the device (``griddepcontrol.wait``)
rather than behind a full launch gap.

    python -m solbench.kernels.cuda.pdl_chain [--tokens 1,16,128,1024,8192] [--d 4096] [--pairs 20]

Prints one JSON object per token count: microseconds per pair of kernels with and without PDL
(median of the replays) and the gain. Needs an sm_90+ GPU.
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch

from solbench.kernels.cuda.glu import launch_glu


def time_chain(tokens: int, d: int, pairs: int, pdl: bool, replays: int = 30, dtype=torch.bfloat16) -> float:
    """Median microseconds per (first, dependent) pair, from ``replays`` replays of a graph of
    ``pairs`` pairs."""
    x = torch.randn(tokens, 4 * d, device="cuda", dtype=dtype)
    h = torch.empty(tokens, 2 * d, device="cuda", dtype=dtype)
    y = torch.empty(tokens, d, device="cuda", dtype=dtype)

    def chain():
        for _ in range(pairs):
            launch_glu(x, h, 0, 1.0, None, 0.0, False, pdl=pdl)
            launch_glu(h, y, 0, 1.0, None, 0.0, False, pdl=pdl)

    chain()  # compile, load and warm up outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        chain()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0 / pairs)
    return statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", default="1,16,128,1024,8192")
    ap.add_argument("--d", type=int, default=4096, help="output width of the second kernel")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--replays", type=int, default=30)
    args = ap.parse_args(argv)
    major, minor = torch.cuda.get_device_capability()
    if major < 9:
        raise SystemExit(f"PDL needs sm_90+; this GPU is sm_{major}{minor}")
    for tokens in (int(t) for t in args.tokens.split(",")):
        off = time_chain(tokens, args.d, args.pairs, False, args.replays)
        on = time_chain(tokens, args.d, args.pairs, True, args.replays)
        print(json.dumps({"gpu": torch.cuda.get_device_name(), "tokens": tokens, "d": args.d, "pairs": args.pairs,
                          "us_per_pair_no_pdl": round(off, 3), "us_per_pair_pdl": round(on, 3),
                          "gain_pct": round(100.0 * (off - on) / off, 2)}), flush=True)


if __name__ == "__main__":
    main()
