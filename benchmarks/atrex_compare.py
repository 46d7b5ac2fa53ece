"""Print the "native / published" and "Atrex mode / published" columns of docs/ROOFLINE.md: per
operator, the range over its catalog shapes of our native SOL and of the `--compat atrex` SOL over
the SOL Atrex-Bench publishes (tests/data/atrex_roofline.json), on H20 (their XPU-B) and XPU-A.
Nothing is measured; rerun it after a cost or contract change to refresh the table.

    PYTHONPATH=src python benchmarks/atrex_compare.py
"""
from __future__ import annotations

import json
from pathlib import Path

from solbench.core import hardware, roofline
from solbench.core.atrex_compat import atrex_cost, atrex_sol_us
from solbench.core.spec import all_specs

PUBLISHED = Path(__file__).resolve().parent.parent / "tests" / "data" / "atrex_roofline.json"
COLUMN = {"H20": 5, "XPU-A": 4}   # sol_ms_XPU-B (= H20), sol_ms_XPU-A


def _range(pairs) -> str:
    lo, hi = min(pairs), max(pairs)
    if hi[0] - lo[0] < 0.005:
        return f"{lo[0]:.2f}"
    return f"{lo[0]:.2g} (#{lo[1]}) – {hi[0]:.2g} (#{hi[1]})"


def main() -> int:
    pub = json.loads(PUBLISHED.read_text())["ops"]
    print("| operator | native / published H20 | Atrex mode / published H20 | native / published XPU-A | "
          "Atrex mode / published XPU-A |")
    print("|---|---|---|---|---|")
    within = total = 0
    for spec in all_specs():
        cells = []
        for sku, col in COLUMN.items():
            hw = hardware.get_sku(sku)
            native, compat = [], []
            for shape in spec.shapes:
                ref_us = pub[spec.name][str(shape.id)][col] * 1e3
                native.append((roofline.roofline(spec.cost(shape), hw).sol_us / ref_us, shape.id))
                r = atrex_sol_us(atrex_cost(spec, shape), hw) / ref_us
                compat.append((r, shape.id))
                within += abs(r - 1) <= 0.10
                total += 1
            cells += [_range(native), _range(compat)]
        print(f"| {spec.name} | " + " | ".join(cells) + " |")
    print(f"\nAtrex mode within 10% of the published SOL: {within} of {total}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
