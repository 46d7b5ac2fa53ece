"""The committed results agree with today's operator contracts and cost models: every record's
cost fields and datasheet SOL are what the spec computes now, except the (file, operator) pairs
that benchmarks/results/STALE.json declares, with the reason, until they are measured again. A
contract or cost change without a re-measure (or a declaration) fails here, not in a reader's head."""
import json
from pathlib import Path

import pytest

from solbench.core import hardware, roofline
from solbench.core.spec import get_spec

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
STALE = json.loads((RESULTS / "STALE.json").read_text(encoding="utf-8"))


def _records():
    for path in sorted(RESULTS.glob("*/*.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            rec = json.loads(line)
            if "op" in rec and "cost" in rec:  # runs of the catalog (not the PDL chain or compile times)
                yield f"{path.parent.name}/{path.name}:{n}", rec


def test_every_committed_record_matches_todays_cost_model():
    stale, checked, declared_seen = [], 0, set()
    shapes = {}
    for where, rec in _records():
        if rec.get("smoke"):
            continue
        spec = get_spec(rec["op"])
        if spec.name not in shapes:
            shapes[spec.name] = {str(s.id): s for s in spec.shapes}
        shape = shapes[spec.name].get(str(rec["shape_id"]))
        assert shape is not None, f"{where}: {rec['op']} has no catalog shape {rec['shape_id']}"
        cost = spec.cost(shape)
        sol = roofline.roofline(cost, hardware.get_sku(rec["hw"])).sol_us
        # Expected-layout costs (moe_align_block_size) are float sums: equal up to their rounding.
        same_bytes = (rec["cost"]["bytes_read"], rec["cost"]["bytes_written"]) == pytest.approx(
            (cost.bytes_read, cost.bytes_written), rel=1e-9)
        if not same_bytes or rec["sol_us"] != pytest.approx(sol, rel=1e-3):
            file = where.rsplit(":", 1)[0]
            if rec["op"] in STALE.get(file, {}).get("ops", ()):
                declared_seen.add((file, rec["op"]))
                continue
            stale.append(f"{where} {rec['op']}#{rec['shape_id']} {rec['impl']}: recorded {rec['cost']['bytes_read']:.6g} B "
                         f"read, {rec['cost']['bytes_written']:.6g} B written, SOL {rec['sol_us']:.4g} us; today "
                         f"{cost.bytes_read:.6g}, {cost.bytes_written:.6g}, {sol:.4g}")
        checked += 1
    assert checked > 1000
    assert not stale, f"{len(stale)} records measured under another contract or cost model:\n" + "\n".join(stale[:20])
    declared = {(file, op) for file, entry in STALE.items() for op in entry["ops"]}
    assert declared == declared_seen, f"STALE.json declares pairs with no stale record left: {sorted(declared - declared_seen)}"
    assert all(entry["why"] for entry in STALE.values())
