"""reshape_and_cache: hand-counted cost, the reference against a per-token loop, slot-mapping
structure (no padding on catalog shapes, padding in the smoke shape), the invariant checker
rejecting wrong caches, and our Triton kernel (interpreter) on edge cases."""
import pytest
import torch

from solbench.core.check import check_impl, compare_outputs
from solbench.core.spec import Impl, get_spec, impls_for

spec = get_spec("reshape_and_cache")
CPU = torch.device("cpu")
SHAPE1 = next(s for s in spec.shapes if s.id == 1)    # 144 tokens, 2 heads of 256, block 16
PAD = next(s for s in spec.smoke_shapes() if s.id == "smoke_pad")   # 37 tokens, 5 padding, 2 x 64


def test_cost_by_hand_shape_1():
    c = spec.cost(SHAPE1)
    row = 2 * 256 * 2                     # one token's heads in bf16; every token has a slot
    assert c.flops == {}
    assert c.bytes_read == 2 * 144 * row + 144 * 8 == 296_064   # key, value, int64 slot_mapping
    assert c.bytes_written == 2 * 144 * row == 294_912


def test_cost_by_hand_padded_smoke_shape():
    c = spec.cost(PAD)
    row = 2 * 64 * 2
    assert c.bytes_read == 2 * 32 * row + 37 * 8      # the 5 padding tokens are neither read nor written
    assert c.bytes_written == 2 * 32 * row


@pytest.mark.parametrize("sid", [s.id for s in spec.shapes])
def test_catalog_shapes_map_every_token(sid):
    sh = next(s for s in spec.shapes if s.id == sid)
    assert "padding_tokens" not in sh.params
    t = sh["shape"][0]
    if t <= 1024:                         # the large ones only differ in size
        slots = spec.make_inputs(sh, CPU, 0)["slot_mapping"]
        assert (slots >= 0).all() and slots.unique().numel() == t


def test_slot_mapping_structure():
    x = spec.make_inputs(PAD, CPU, 0)
    slots = x["slot_mapping"]
    assert slots.dtype == torch.int64
    assert (slots[-5:] == -1).all() and (slots[:-5] >= 0).all()
    kept = slots[:-5]
    assert kept.unique().numel() == kept.numel()
    nb, bs = x["key_cache"].shape[:2]
    assert int(kept.max()) < nb * bs
    # Tokens fill blocks in order; the blocks themselves are a random choice.
    assert torch.equal(kept % bs, torch.arange(32) % bs)
    assert not torch.equal(kept // bs, torch.arange(32) // bs)


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


def _errors(x, kc, vc, shape=SHAPE1):
    ref = dict(zip(spec.output_names, spec.reference(**{k: (v.clone() if torch.is_tensor(v) else v)
                                                       for k, v in x.items()})))
    errs, _ = compare_outputs(spec, shape, x, {"key_cache": kc, "value_cache": vc}, ref, CPU)
    return errs


def test_invariants_accept_the_right_caches():
    x = spec.make_inputs(SHAPE1, CPU, 2)
    kc, vc = spec.reference(**{k: (v.clone() if torch.is_tensor(v) else v) for k, v in x.items()})
    assert spec.check_invariants(SHAPE1, x, {"key_cache": kc, "value_cache": vc}, {}) == []


def test_invariants_reject_a_padding_token_written():
    x = spec.make_inputs(PAD, CPU, 2)
    kc, vc = spec.reference(**{k: (v.clone() if torch.is_tensor(v) else v) for k, v in x.items()})
    # A kernel that writes a padding token (slot -1) somewhere: into a slot no token maps to.
    used = set(x["slot_mapping"].tolist())
    free = next(s for s in range(kc.shape[0] * kc.shape[1]) if s not in used)
    kc.view(-1, 2, 64)[free] = x["key"][-1]
    errs = spec.check_invariants(PAD, x, {"key_cache": kc, "value_cache": vc}, {})
    assert any("no token maps to were modified" in e for e in errs)
    assert _errors(x, kc, vc, PAD)


def test_invariants_reject_swapped_tokens():
    x = spec.make_inputs(SHAPE1, CPU, 3)
    kc, vc = spec.reference(**{k: (v.clone() if torch.is_tensor(v) else v) for k, v in x.items()})
    s0, s1 = x["slot_mapping"][:2].tolist()
    flat = vc.view(-1, 2, 256)
    flat[s0], flat[s1] = x["value"][1], x["value"][0]
    errs = spec.check_invariants(SHAPE1, x, {"key_cache": kc, "value_cache": vc}, {})
    assert any("value_cache: 2 of 144 tokens not found" in e for e in errs)


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


# ---- our kernel (Triton interpreter on CPU, compiled on a GPU) ---------------------------------------

def _ours():
    impl = impls_for(spec.name)["ours_triton"]
    if not impl.available():
        pytest.skip(impl.available().reason)
    from solbench.kernels.kv_cache import reshape_and_cache

    return reshape_and_cache


def _case(t, h, d, bs, nb, slots, device, dtype=torch.bfloat16, seed=0):
    g = torch.Generator().manual_seed(seed)
    key, value = (torch.randn(t, h, d, generator=g).to(dtype) for _ in range(2))
    kc, vc = (torch.randn(nb, bs, h, d, generator=g).to(dtype) for _ in range(2))
    return tuple(x.to(device) for x in (key, value, kc, vc, torch.tensor(slots, dtype=torch.int64)))


@pytest.mark.parametrize("slots", [[], [5], [-1], [3, -1, 17, 0, -1, 30], [-1, -1, -1]],
                         ids=["0_tokens", "1_token", "1_padding", "mixed_padding", "all_padding"])
def test_ours_edge_cases(slots, device):
    fn = _ours()
    key, value, kc, vc, sm = _case(len(slots), 2, 8, 4, 8, slots, device)
    want_k, want_v = spec.reference(key, value, kc, vc, sm)
    got_k, got_v = fn(key, value, kc, vc, sm)
    assert got_k is kc and got_v is vc
    assert torch.equal(kc, want_k) and torch.equal(vc, want_v)


def test_ours_strided_views_and_int32_slots(device):
    # key/value as column views of a fused [T, q + k + v] tensor, the caches as the halves of a
    # [num_blocks, 2, block_size, H, D] pool (vLLM's flash layout), fp16, int32 slots.
    fn = _ours()
    t, h, d, bs, nb = 6, 2, 16, 4, 5
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(t, 3 * h * d + 8, generator=g).half().to(device)
    key = qkv[:, h * d:2 * h * d].view(t, h, d)
    value = qkv[:, 2 * h * d:3 * h * d].view(t, h, d)
    pool = torch.randn(nb, 2, bs, h, d, generator=g).half().to(device)
    sm = torch.tensor([19, 2, 7, -1, 8, 0], dtype=torch.int32, device=device)
    before = pool.clone()
    want_k, want_v = spec.reference(key.contiguous(), value.contiguous(), before[:, 0].contiguous(),
                                    before[:, 1].contiguous(), sm.long())
    fn(key, value, pool[:, 0], pool[:, 1], sm)
    assert torch.equal(pool[:, 0], want_k) and torch.equal(pool[:, 1], want_v)


def test_ours_padded_smoke_shape_via_checker(device):
    _ours()
    res = check_impl(spec, impls_for(spec.name)["ours_triton"], PAD, device, seeds=(0, 1))
    assert res.ok, res.reason


def test_ours_rejects_bad_inputs(device):
    fn = _ours()
    key, value, kc, vc, sm = _case(3, 2, 8, 4, 8, [0, 1, 2], device)
    with pytest.raises(TypeError, match="dtype"):
        fn(key.float(), value, kc, vc, sm)
    with pytest.raises(ValueError, match="NHD"):
        fn(key, value, kc.view(8, 4, 16, 1), vc, sm)
    with pytest.raises(ValueError, match="slot_mapping"):
        fn(key, value, kc, vc, sm[:2])
    with pytest.raises(ValueError, match="slot_mapping"):
        fn(key, value, kc, vc, sm.float())
    with pytest.raises(ValueError, match="contiguous"):
        fn(key.transpose(1, 2).contiguous().transpose(1, 2), value, kc, vc, sm)


# ---- the torch formulation (CPU tensors without the interpreter) ------------------------------------

@pytest.mark.parametrize("slots", [[], [3, -1, 17, 0, -1, 30], [-1, -1]], ids=["0_tokens", "mixed", "all_padding"])
def test_torch_formulation_off_cuda(slots, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from solbench.kernels.kv_cache import reshape_and_cache

    key, value, kc, vc, sm = _case(len(slots), 2, 8, 4, 8, slots, CPU)
    want = spec.reference(key, value, kc, vc, sm)
    pool = torch.stack([kc, vc], dim=1)                  # the halves of one [blocks, 2, ...] pool
    reshape_and_cache(key, value, pool[:, 0], pool[:, 1], sm.int())
    assert torch.equal(pool[:, 0], want[0]) and torch.equal(pool[:, 1], want[1])
