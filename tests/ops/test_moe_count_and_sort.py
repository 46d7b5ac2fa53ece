"""moe_count_and_sort: hand-counted cost, counts/offsets against a Python count, default block size,
and the invariant checker."""
from collections import Counter

import torch

from solbench.core.spec import get_spec

spec = get_spec("moe_count_and_sort")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_4():
    # T=2044 k=8 E=128 block 128: buffer 16352 + 128*127 = 32608 int32, counts 128, cumsum 129.
    c = spec.cost(next(s for s in spec.shapes if s.id == 4))
    assert c.flops == {} and c.bytes_read == 2044 * 8 * 4 == 65_408
    assert c.bytes_written == (32_608 + 128 + 129) * 4 == 131_460


def test_shape_without_block_size_uses_128():
    sh = next(s for s in spec.shapes if s.id == 1)            # the catalog records no block_size
    assert sh.get("block_size") is None
    assert spec.make_inputs(sh, CPU, 0)["block_size"] == 128


def test_counts_and_offsets_by_hand():
    sh = next(s for s in spec.shapes if s.id == 1)
    x = spec.make_inputs(sh, CPU, 5)
    s, counts, cumsum = spec.reference(**x)
    c = Counter(x["topk_ids"].flatten().tolist())
    assert counts.tolist() == [c.get(e, 0) for e in range(128)]
    off = [0]
    for e in range(128):
        off.append(off[-1] + -(-c.get(e, 0) // 128) * 128)
    assert cumsum.tolist() == off
    for e in range(128):                                       # each segment: its slots, then sentinels
        seg = s[off[e]:off[e + 1]]
        got = sorted(v for v in seg.tolist() if v != 76 * 8)
        assert got == [i for i, v in enumerate(x["topk_ids"].flatten().tolist()) if v == e]


def test_invariants_reject_wrong_outputs():
    sh = next(s for s in spec.shapes if s.id == 2)
    x = spec.make_inputs(sh, CPU, 0)
    ref = spec.normalize_outputs(spec.reference(**x))

    def errs(**over):
        return spec.check_invariants(sh, x, dict(ref, **over), ref)

    assert errs() == []
    bad_counts = ref["expert_token_counts"].clone()
    bad_counts[3] += 1
    assert errs(expert_token_counts=bad_counts)
    bad_cum = ref["cumsum"].clone()
    bad_cum[-1] -= 128
    assert errs(cumsum=bad_cum)
    s = ref["sorted_token_ids"].clone()
    s[[0, int(ref["cumsum"][-1]) - 1]] = s[[int(ref["cumsum"][-1]) - 1, 0]]   # swap across segments
    assert errs(sorted_token_ids=s)
