"""Write a copy of a tuned-config table with some entries set or removed, for an A/B of those
entries on the device (``SOLBENCH_TUNED_TABLE=<the copy> solbench run ...`` against the table
itself; ``benchmarks/device.sh tableab`` does both).

    python3 benchmarks/table_variant.py --base src/solbench/runtime/tuned/NVIDIA_H200.json \\
        --set 'rms_norm:1152={"block_m": 2, "block_n": 2048, "num_warps": 4, "chunked": false}' \\
        --drop 'rms_norm@few_rows:1280' --out /tmp/variant.json

Why not ``solbench tune``: tune adopts an entry only when it wins by 3% on the geomean of its
representatives; an entry whose gain sits on the large shapes (rms_norm 1152: 5.7% on the largest,
level on the smallest) needs every shape of the key timed with and without it to decide.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from solbench.runtime import tuning  # noqa: E402


def parse_key(text: str) -> tuple[str, str]:
    kernel, sep, n = text.partition(":")
    if not sep or not kernel or not n.isdigit():
        raise SystemExit(f"table_variant: key {text!r} must be KERNEL:N, e.g. rms_norm:1152 or rms_norm@few_rows:1280")
    return kernel, n


def variant(table: dict, sets: list[str], drops: list[str]) -> dict:
    out = json.loads(json.dumps(table))
    entries = out["entries"]
    for item in sets:
        key, sep, cfg_text = item.partition("=")
        if not sep:
            raise SystemExit(f"table_variant: --set {item!r} must be KERNEL:N=JSON_CONFIG")
        kernel, n = parse_key(key)
        try:
            cfg = json.loads(cfg_text)
        except json.JSONDecodeError as e:
            raise SystemExit(f"table_variant: --set {key}: config is not JSON ({e})") from None
        if not isinstance(cfg, dict):
            raise SystemExit(f"table_variant: --set {key}: config must be a JSON object")
        entries.setdefault(kernel, {})[n] = {"config": cfg, "variant": True}
    for key in drops:
        kernel, n = parse_key(key)
        if n not in entries.get(kernel, {}):
            raise SystemExit(f"table_variant: --drop {key}: the table has no such entry")
        del entries[kernel][n]
        if not entries[kernel]:
            del entries[kernel]
    out["variant_of"] = {"set": sets, "drop": drops}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the tuned table to copy")
    ap.add_argument("--set", action="append", default=[], metavar="KERNEL:N=JSON", help="set an entry's config")
    ap.add_argument("--drop", action="append", default=[], metavar="KERNEL:N", help="remove an entry")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if not args.set and not args.drop:
        raise SystemExit("table_variant: nothing to change (pass --set or --drop)")
    table = variant(tuning.read_table(args.base), args.set, args.drop)
    Path(args.out).write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tuning.read_table(args.out)  # the copy must load as a table
    print(f"wrote {args.out}: {len(args.set)} set, {len(args.drop)} dropped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
