"""reshape_and_cache: hand-counted cost, the reference against a per-token loop, slot-mapping
structure, and the invariant checker rejecting wrong caches."""
import torch

from solbench.core.check import check_impl, compare_outputs
from solbench.core.spec import Impl, get_spec, impls_for

spec = get_spec("reshape_and_cache")
CPU = torch.device("cpu")
SHAPE1 = next(s for s in spec.shapes if s.id == 1)    # 144 tokens, 2 heads of 256, block 16


def test_cost_by_hand_shape_1():
    c = spec.cost(SHAPE1)
    kept = 144 - 144 // 16                # 9 trailing padding tokens are skipped
    row = 2 * 256 * 2                     # one token's heads in bf16
    assert c.flops == {}
    assert c.bytes_read == 2 * kept * row + 144 * 8 == 277_632   # key, value, int64 slot_mapping
    assert c.bytes_written == 2 * kept * row == 276_480


def test_slot_mapping_structure():
    x = spec.make_inputs(SHAPE1, CPU, 0)
    slots = x["slot_mapping"]
    assert slots.dtype == torch.int64
    assert (slots[-9:] == -1).all() and (slots[:-9] >= 0).all()
    kept = slots[:-9]
    assert kept.unique().numel() == kept.numel()
    nb, bs = x["key_cache"].shape[:2]
    assert int(kept.max()) < nb * bs
    # Tokens fill blocks in order; the blocks themselves are a random choice.
    assert torch.equal(kept % bs, torch.arange(135) % bs)
    assert not torch.equal(kept // bs, torch.arange(135) // bs)


def test_reference_matches_token_loop():
    x = spec.make_inputs(SHAPE1, CPU, 1)
    kc, vc = spec.reference(**{k: (v.clone() if torch.is_tensor(v) else v) for k, v in x.items()})
    want_k, want_v = x["key_cache"].clone(), x["value_cache"].clone()
    bs = want_k.shape[1]
    for t, s in enumerate(x["slot_mapping"].tolist()):
        if s >= 0:
            want_k[s // bs, s % bs] = x["key"][t]
            want_v[s // bs, s % bs] = x["value"][t]
    assert torch.equal(kc, want_k) and torch.equal(vc, want_v)
    assert not torch.equal(kc, x["key_cache"])      # something was written


def _errors(x, kc, vc):
    ref = dict(zip(spec.output_names, spec.reference(**{k: (v.clone() if torch.is_tensor(v) else v)
                                                       for k, v in x.items()})))
    errs, _ = compare_outputs(spec, SHAPE1, x, {"key_cache": kc, "value_cache": vc}, ref, CPU)
    return errs


def test_invariants_accept_the_right_caches():
    x = spec.make_inputs(SHAPE1, CPU, 2)
    kc, vc = spec.reference(**{k: (v.clone() if torch.is_tensor(v) else v) for k, v in x.items()})
    assert spec.check_invariants(SHAPE1, x, {"key_cache": kc, "value_cache": vc}, {}) == []


def test_invariants_reject_a_padding_token_written():
    x = spec.make_inputs(SHAPE1, CPU, 2)
    kc, vc = spec.reference(**{k: (v.clone() if torch.is_tensor(v) else v) for k, v in x.items()})
    # A kernel that writes a padding token (slot -1) somewhere: into a slot no token maps to.
    used = set(x["slot_mapping"].tolist())
    free = next(s for s in range(kc.shape[0] * kc.shape[1]) if s not in used)
    kc.view(-1, 2, 256)[free] = x["key"][-1]
    errs = spec.check_invariants(SHAPE1, x, {"key_cache": kc, "value_cache": vc}, {})
    assert any("no token maps to were modified" in e for e in errs)
    assert _errors(x, kc, vc)


def test_invariants_reject_swapped_tokens():
    x = spec.make_inputs(SHAPE1, CPU, 3)
    kc, vc = spec.reference(**{k: (v.clone() if torch.is_tensor(v) else v) for k, v in x.items()})
    s0, s1 = x["slot_mapping"][:2].tolist()
    flat = vc.view(-1, 2, 256)
    flat[s0], flat[s1] = x["value"][1], x["value"][0]
    errs = spec.check_invariants(SHAPE1, x, {"key_cache": kc, "value_cache": vc}, {})
    assert any("value_cache: 2 of 135 tokens not found" in e for e in errs)


def test_eager_skips_everything_when_all_slots_are_padding():
    x = spec.make_inputs(SHAPE1, CPU, 4)
    x["slot_mapping"][:] = -1
    kc, vc = impls_for(spec.name)["torch_eager"].fn(**{k: (v.clone() if torch.is_tensor(v) else v)
                                                      for k, v in x.items()})
    assert torch.equal(kc, x["key_cache"]) and torch.equal(vc, x["value_cache"])


def test_checker_fails_an_impl_that_writes_out_of_place_wrongly():
    def shifted(key, value, key_cache, value_cache, slot_mapping):
        # Off by one block: every token lands one block too far.
        bs = key_cache.shape[1]
        kc, vc = key_cache.clone(), value_cache.clone()
        keep = slot_mapping >= 0
        nslots = kc.shape[0] * bs
        s = (slot_mapping[keep] + bs) % nslots
        kc.view(nslots, *kc.shape[2:])[s] = key[keep]
        vc.view(nslots, *vc.shape[2:])[s] = value[keep]
        return kc, vc

    res = check_impl(spec, Impl(spec.name, "shifted", shifted), SHAPE1, CPU, seeds=(0,))
    assert not res.ok and "not found in their slot" in res.reason
