"""moe_align_block_size: vLLM's docstring example, hand-counted cost, and the invariant checker
accepting any order inside a segment while rejecting wrong layouts."""
import torch

from solbench.core.check import check_impl
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


def test_cost_by_hand_shape_6():
    # T=8192 k=8 E=128 block 128: buffer 65536 + 128*127 = 81792 int32, 639 blocks.
    c = spec.cost(next(s for s in spec.shapes if s.id == 6))
    assert c.flops == {} and c.bytes_read == 8192 * 8 * 4
    assert c.bytes_written == (81_792 + 639 + 1) * 4


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
    garbage = s.clone()
    garbage[-1] = 0                                           # tail must stay the sentinel
    assert _check(sh, x, (garbage, e, n))
    assert any("num_tokens_post_pad" in m for m in _check(sh, x, (s, e, n + 128)))
    bad_e = e.clone()
    bad_e[0] += 1
    assert any("expert_ids" in m for m in _check(sh, x, (s, bad_e, n)))
