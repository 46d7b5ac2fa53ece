"""mrope: hand-counted cost, the T/H/W plane selection (sectioned and interleaved), and the
reference on a hand-computed example (NeoX and GPT-J pairing, partial rotary)."""
import dataclasses
import math

import torch

from solbench.core.spec import get_spec
from solbench.ops.mrope.spec import section_planes

spec = get_spec("mrope")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_3():
    sh = next(s for s in spec.shapes if s.id == 3)   # 838 tokens, heads 16/4, head 128 = rotary
    c = spec.cost(sh)
    rotated = 838 * (16 + 4) * 128                    # every q and k element: 2,145,280
    assert c.flops == {"fp32": 3 * rotated} == {"fp32": 6_435_840}
    # q, k in bf16, and one plane of cos and of sin (838 · 64 fp32 each).
    assert c.bytes_read == rotated * 2 + 2 * 838 * 64 * 4 == 4_719_616
    assert c.bytes_written == rotated * 2


def test_section_planes():
    p = section_planes([16, 24, 24], 128, False, CPU)
    assert p[:16].eq(0).all() and p[16:40].eq(1).all() and p[40:].eq(2).all()
    # Interleaved (Qwen3-VL [24, 20, 20]): THW THW ... then T for the tail past 3·20.
    q = section_planes([24, 20, 20], 128, True, CPU).tolist()
    assert q[:6] == [0, 1, 2, 0, 1, 2]
    assert q[57:64] == [0, 1, 2, 0, 0, 0, 0]
    assert sum(1 for v in q if v == 1) == 20 and sum(1 for v in q if v == 2) == 20


def _tiny_inputs(neox: bool, interleaved: bool = False):
    # One token, one q head, one k head; head 6 with rotary 4 (dims 4, 5 pass through);
    # section [1, 1, 0]: frequency 0 from the T plane, frequency 1 from the H plane.
    q = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], dtype=torch.bfloat16)
    k = torch.tensor([[0.5, -1.0, 2.0, -0.25, 7.0, 8.0]], dtype=torch.bfloat16)
    ang = torch.tensor([[0.3, 1.1], [0.7, 0.2], [2.0, 2.5]])          # plane x frequency
    cos = ang.cos()[:, None, :].float()
    sin = ang.sin()[:, None, :].float()
    return {"q": q, "k": k, "cos": cos, "sin": sin, "mrope_section": [1, 1, 0], "head_size": 6,
            "rotary_dim": 4, "mrope_interleaved": interleaved, "is_neox_style": neox}


def _rot(a, b, theta):
    return a * math.cos(theta) - b * math.sin(theta), b * math.cos(theta) + a * math.sin(theta)


def test_reference_neox_by_hand():
    x = _tiny_inputs(neox=True)
    q, k = spec.reference(**x)
    th0, th1 = 0.3, 0.2                     # frequency 0 from T (row 0), frequency 1 from H (row 1)
    for got, v in ((q, [1, 2, 3, 4, 5, 6]), (k, [0.5, -1, 2, -0.25, 7, 8])):
        a0, b0 = _rot(v[0], v[2], th0)      # NeoX pairs (0, 2) and (1, 3)
        a1, b1 = _rot(v[1], v[3], th1)
        want = torch.tensor([[a0, a1, b0, b1, v[4], v[5]]]).to(torch.bfloat16)
        assert torch.equal(got, want)


def test_reference_gptj_by_hand():
    x = _tiny_inputs(neox=False)
    q, _ = spec.reference(**x)
    a0, b0 = _rot(1, 2, 0.3)                # GPT-J pairs (0, 1) and (2, 3)
    a1, b1 = _rot(3, 4, 0.2)
    assert torch.equal(q, torch.tensor([[a0, b0, a1, b1, 5, 6]]).to(torch.bfloat16))


def test_make_inputs_match_positions_and_shape():
    sh = dataclasses.replace(spec.shapes[3], id="t", params={**spec.shapes[3].params, "token_count": 5}, smoke=True)
    x = spec.make_inputs(sh, CPU, 0)
    assert x["q"].shape == (5, 16 * 128) and x["k"].shape == (5, 4 * 128)
    assert x["cos"].shape == (3, 5, 64) and x["cos"].dtype == torch.float32
    assert torch.allclose(x["cos"] ** 2 + x["sin"] ** 2, torch.ones(3, 5, 64), atol=1e-6)
    assert not x["mrope_interleaved"] and x["is_neox_style"]


# ---- our kernel (Triton interpreter on CPU, compiled on a GPU) --------------------------------------------------------
import pytest  # noqa: E402

from solbench.core.check import check_impl  # noqa: E402
from solbench.core.rotary import cos_sin  # noqa: E402
from solbench.core.spec import impls_for  # noqa: E402


def _ours():
    impl = impls_for(spec.name)["ours_triton"]
    if not impl.available():
        pytest.skip(impl.available().reason)
    from solbench.kernels.rope import mrope

    return mrope


@pytest.mark.parametrize("neox", [True, False])
@pytest.mark.parametrize("interleaved", [False, True])
def test_ours_tiny_by_hand_example(neox, interleaved, device):
    fn = _ours()
    x = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in _tiny_inputs(neox, interleaved).items()}
    want = spec.reference(**{k: (v.clone() if torch.is_tensor(v) else v) for k, v in x.items()})
    q, k = x["q"].clone(), x["k"].clone()
    got = fn(q, k, x["cos"], x["sin"], x["mrope_section"], 6, 4, interleaved, neox)
    assert got[0] is q and got[1] is k                     # in place, as vLLM's triton_mrope
    # Within one bf16 ulp: Triton's CPU interpreter truncates fp32 -> bf16 (a GPU rounds).
    for a, w in ((q, want[0]), (k, want[1])):
        torch.testing.assert_close(a.float(), w.float(), rtol=2 ** -7, atol=0.0)


@pytest.mark.parametrize("t", [0, 1, 9])
def test_ours_out_of_place_views_of_a_fused_qkv(t, device):
    # q and k as column views of a fused [T, q + k + v] tensor; out= leaves them untouched and
    # copies the pass-through dims.
    fn = _ours()
    g = torch.Generator().manual_seed(t)
    hq, hk, hs, rd = 3, 1, 16, 12
    qkv = torch.randn(t, (hq + 2 * hk) * hs, generator=g).bfloat16().to(device)
    q, k = qkv[:, :hq * hs], qkv[:, hq * hs:(hq + hk) * hs]
    cos, sin = cos_sin(torch.randint(0, 8192, (3, t), generator=g).to(device), rd, 1e6)
    want = spec.reference(q.clone(), k.clone(), cos, sin, [2, 2, 2], hs, rd, False, True)
    before = qkv.clone()
    out = (torch.full_like(q, float("nan")), torch.full_like(k, float("nan")))
    got = fn(q, k, cos, sin, [2, 2, 2], hs, rd, out=out)
    assert torch.equal(qkv, before)
    for a, w in zip(got, want):
        torch.testing.assert_close(a.float(), w.float(), atol=2 ** -6, rtol=2 ** -7)


@pytest.mark.parametrize("sid", ["smoke_sections", "smoke_interleaved"])
def test_ours_on_smoke_shapes_via_checker(sid, device):
    _ours()
    sh = next(s for s in spec.smoke_shapes() if s.id == sid)
    res = check_impl(spec, impls_for(spec.name)["ours_triton"], sh, device, seeds=(0, 1))
    assert res.ok, res.reason


def test_ours_rejects_bad_inputs(device):
    fn = _ours()
    x = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in _tiny_inputs(True).items()}
    with pytest.raises(ValueError, match="mrope_section"):
        fn(x["q"], x["k"], x["cos"], x["sin"], [1, 1, 1], 6, 4)
    with pytest.raises(ValueError, match="rotary dim"):
        fn(x["q"], x["k"], x["cos"], x["sin"], [1, 1, 0], 6, 5)
    with pytest.raises(ValueError, match="cos must be float32"):
        fn(x["q"], x["k"], x["cos"].half(), x["sin"], [1, 1, 0], 6, 4)
    with pytest.raises(ValueError, match="heads"):
        fn(x["q"], x["k"], x["cos"], x["sin"], [1, 1, 0], 4, 4)


# ---- the torch formulation (CPU tensors without the interpreter) ------------------------------------

@pytest.mark.parametrize("neox", [True, False])
@pytest.mark.parametrize("interleaved", [False, True])
def test_torch_formulation_off_cuda(neox, interleaved, monkeypatch):
    # In place on views of a fused qkv (v and the pass-through dims untouched), out= leaving q
    # and k as they were, and 0 tokens.
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from solbench.kernels.rope import mrope

    x = _tiny_inputs(neox, interleaved)
    want = spec.reference(**x)
    qkv = torch.cat([x["q"], x["k"], torch.ones(1, 6, dtype=torch.bfloat16)], dim=1)
    before = qkv.clone()
    q, k = qkv[:, :6], qkv[:, 6:12]
    args = (x["cos"], x["sin"], x["mrope_section"], 6, 4, interleaved, neox)
    out = (torch.empty_like(q), torch.empty_like(k))
    got = mrope(q, k, *args, out=out)
    assert got[0] is out[0] and torch.equal(qkv, before)
    assert mrope(q, k, *args)[0] is q and torch.equal(qkv[:, 12:], before[:, 12:])
    for a, b, w in ((q, out[0], want[0]), (k, out[1], want[1])):
        assert torch.equal(a, w) and torch.equal(b, w)
    empty = torch.empty(0, 6, dtype=torch.bfloat16)
    assert mrope(empty, empty.clone(), torch.empty(3, 0, 2), torch.empty(3, 0, 2), [1, 1, 0], 6, 4)[0].shape == (0, 6)
