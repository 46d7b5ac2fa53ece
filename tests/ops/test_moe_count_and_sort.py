"""moe_count_and_sort (compact contract): hand-counted cost, counts/offsets/order against a Python
count, and the exact comparison rejecting unstable or wrong outputs."""
from collections import Counter

import torch

from solbench.core.check import check_impl
from solbench.core.spec import Impl, get_spec

spec = get_spec("moe_count_and_sort")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_4():
    # T=2044 k=8 E=128: sorted ids 16352, counts 128, cumsum 129 int32.
    c = spec.cost(next(s for s in spec.shapes if s.id == 4))
    assert c.flops == {} and c.bytes_read == 2044 * 8 * 4 == 65_408
    assert c.bytes_written == (16_352 + 2 * 128 + 1) * 4 == 66_436


def test_inputs_have_no_block_size():
    sh = next(s for s in spec.shapes if s.id == 1)            # the catalog records no block_size
    assert set(spec.make_inputs(sh, CPU, 0)) == {"topk_ids", "num_experts"}


def test_reference_by_hand():
    sh = next(s for s in spec.shapes if s.id == 1)
    x = spec.make_inputs(sh, CPU, 5)
    s, counts, cumsum = spec.reference(**x)
    flat = x["topk_ids"].flatten().tolist()
    c = Counter(flat)
    assert counts.tolist() == [c.get(e, 0) for e in range(128)]
    off = [0]
    for e in range(128):
        off.append(off[-1] + c.get(e, 0))
    assert cumsum.tolist() == off and off[-1] == 76 * 8
    assert s.tolist() == [i for e in range(128) for i, v in enumerate(flat) if v == e]


def test_unstable_order_is_rejected():
    sh = next(s for s in spec.shapes if s.id == 2)
    swapped = lambda **kw: _swap_within_first_segment(*spec.reference(**kw))  # noqa: E731
    res = check_impl(spec, Impl(spec.name, "unstable", swapped), sh, CPU, seeds=(0,))
    assert not res.ok and "sorted_token_ids" in res.reason


def _swap_within_first_segment(s, counts, cumsum):
    s = s.clone()
    s[[0, 1]] = s[[1, 0]]
    return s, counts, cumsum
