"""moe_align_block_size: vLLM's docstring example, hand-counted cost, and the invariant checker
accepting any order inside a segment while rejecting wrong layouts."""
from dataclasses import replace

import pytest
import torch

from solbench.core.check import check_impl
from solbench.core.moe_routing import expected_padded_slots, padded_capacity
from solbench.core.spec import Impl, get_spec

spec = get_spec("moe_align_block_size")
CPU = torch.device("cpu")
IDS = torch.tensor([[2, 3, 4], [1, 2, 4], [1, 3, 4], [1, 2, 3]], dtype=torch.int32)


def test_vllm_docstring_example():
    # vLLM's example: 12 slots, block 4; experts 1-4 get 3 slots each, padded by one sentinel (12).
    sorted_ids, expert_ids, ntpp = spec.reference(IDS, 5, 4)
    assert sorted_ids.dtype == torch.int32 and sorted_ids.numel() == 12 + 5 * 3
    assert sorted_ids[:16].tolist() == [3, 6, 9, 12, 0, 4, 10, 12, 1, 7, 11, 12, 2, 5, 8, 12]
    assert (sorted_ids[16:] == 12).all()
    assert expert_ids.tolist() == [1, 2, 3, 4, 0, 0, 0]
    assert ntpp.tolist() == [16]


def test_cost_counts_the_used_layout():
    # T=8192 k=8 E=128 block 128: each expert gets Binomial(8192, 1/16) slots, mean 512 (exactly 4
    # blocks) and sd 23.7, so about half the experts spill into a 5th block: ~4.5 blocks each,
    # ~73.5k ids and ~575 blocks, not the 81792-slot buffer: the cost counts what a kernel must
    # write.
    c = spec.cost(next(s for s in spec.shapes if s.id == 6))
    assert c.flops == {} and c.bytes_read == 8192 * 8 * 4
    used = expected_padded_slots(8192, 128, 8, 128)
    assert 128 * 4.4 * 128 < used < 128 * 4.6 * 128
    assert c.bytes_written == pytest.approx((used + used / 128 + 1) * 4)
    # Decode: one token, 8 experts of one padded block each.
    c0 = spec.cost(next(s for s in spec.shapes if s.id == 0))
    assert c0.bytes_written == pytest.approx((8 * 128 + 8 + 1) * 4)


def test_expected_padded_slots_by_simulation():
    # The binomial formula against a Monte-Carlo estimate of the seeded routing.
    import torch

    t, e, k, bs = 40, 16, 4, 8
    sims = []
    for seed in range(200):
        ids = spec.make_inputs(replace(spec.shapes[0], params=dict(token_count=t, num_experts=e, top_k=k,
                                                                 block_size=bs)), CPU, seed)["topk_ids"]
        c = torch.bincount(ids.flatten().long(), minlength=e)
        sims.append(int(((c + bs - 1) // bs * bs).sum()))
    assert abs(sum(sims) / len(sims) - expected_padded_slots(t, e, k, bs)) < 2.0


def test_capacity_is_vllms_cap():
    # min(T*k*bs, T*k + E*(bs-1)): one token, top-8 of 128, block 128 needs at most 8 blocks.
    assert padded_capacity(8, 128, 128) == 8 * 128
    assert padded_capacity(65536, 128, 128) == 65536 + 128 * 127


def _inputs():
    sh = next(s for s in spec.shapes if s.id == 2)          # 520 tokens, top-8 of 128, block 128
    return sh, spec.make_inputs(sh, CPU, 0)


def _check(sh, x, got):
    ref = spec.normalize_outputs(spec.reference(**x))
    return spec.check_invariants(sh, x, spec.normalize_outputs(got), ref)


def _shuffled(x):
    s, e, n = spec.reference(**x)
    s = s.clone()
    for b in range(int(n) // x["block_size"]):                # reverse every block: a valid order
        s[b * 128:(b + 1) * 128] = s[b * 128:(b + 1) * 128].flip(0)
    return s, e, n


def test_any_order_inside_segments_passes():
    sh, x = _inputs()
    assert _check(sh, x, _shuffled(x)) == []
    res = check_impl(spec, Impl(spec.name, "shuffled", lambda **kw: _shuffled(kw)), sh, CPU, seeds=(0, 1))
    assert res.ok, res.reason


def test_wrong_layouts_are_rejected():
    sh, x = _inputs()
    s, e, n = spec.reference(**x)
    nume = x["topk_ids"].numel()
    real = (s != nume).nonzero().flatten()
    pad = (s[: int(n)] == nume).nonzero().flatten()
    moved = s.clone()
    moved[pad[-1]], moved[real[0]] = moved[real[0]], nume    # first expert's token into the last segment's padding
    assert any("segment" in m for m in _check(sh, x, (moved, e, n)))
    dup = s.clone()
    dup[pad[0]] = s[real[0]]
    assert any("exactly once" in m for m in _check(sh, x, (dup, e, n)))
    tail = s.clone()
    tail[int(n):] = -5                                        # past num_tokens_post_pad: free
    e_tail = e.clone()
    e_tail[int(n) // 128:] = 77
    assert _check(sh, x, (tail, e_tail, n)) == []
    garbage = s.clone()
    garbage[int(n) - 1] = 0                                   # padding before it must be the sentinel
    assert _check(sh, x, (garbage, e, n))
    assert any("num_tokens_post_pad" in m for m in _check(sh, x, (s, e, n + 128)))
    bad_e = e.clone()
    bad_e[0] += 1
    assert any("expert_ids" in m for m in _check(sh, x, (s, bad_e, n)))
