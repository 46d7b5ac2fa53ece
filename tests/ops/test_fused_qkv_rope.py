"""fused_qkv_rope: hand-counted cost (no bias term without a bias), the reference against an
explicit rtp-llm-style loop (bias add, rotate-half pairs (i, i + rope_dim/2) at
base^(-2i/rope_dim), v untouched, [1, heads, T, head_dim] outputs), and our Triton kernel
(interpreter) on edge cases."""
import dataclasses
import math

import pytest
import torch

from solbench.core.check import check_impl
from solbench.core.spec import get_spec, impls_for

spec = get_spec("fused_qkv_rope")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_0():
    sh = next(s for s in spec.shapes if s.id == 0)   # 1 token, heads 32/4, head 128, rope 128, bf16
    c = spec.cost(sh)
    width = (32 + 2 * 4) * 128                         # 5120 elements of qkv per token
    assert c.bytes_read == width * 2 + 4 == 10_244    # qkv, one position; no bias on Qwen3 heads
    assert c.bytes_written == width * 2
    # 3 per rotated element of the 36 q/k heads, cos+sin of 64 angles.
    assert c.flops == {"fp32": 3 * 36 * 128 + 2 * 64} == {"fp32": 13_952}


def test_cost_with_a_bias_adds_its_read_and_add():
    sh = next(s for s in spec.shapes if s.id == 0)
    biased = dataclasses.replace(sh, params={**sh.params, "qkv_bias": True})
    plain, c = spec.cost(sh), spec.cost(biased)
    assert c.bytes_read - plain.bytes_read == 5120 * 2
    assert c.flops["fp32"] - plain.flops["fp32"] == 5120


def test_catalog_shapes_have_no_bias():
    for sh in spec.shapes:
        assert spec.make_inputs(sh, CPU, 0)["qkv_bias"] is None if sh.id == 0 else "qkv_bias" not in sh.params


def test_shape_dtype_is_honoured():
    x = spec.make_inputs(next(s for s in spec.shapes if s.id == 1), CPU, 0)
    assert x["qkv"].dtype == torch.float16 and x["qkv"].shape == (1, (40 + 16) * 128)
    x = spec.make_inputs(next(s for s in spec.shapes if s.id == 0), CPU, 0)
    assert x["qkv"].dtype == torch.bfloat16


def test_reference_matches_explicit_loop():
    sh = next(s for s in spec.smoke_shapes() if s.id == "smoke_7tok")   # 7 tokens, heads 8/2, 128
    x = spec.make_inputs(sh, CPU, 5)
    q, k, v = spec.reference(**x)
    h, hkv, d, rd = 8, 2, 128, 128
    assert q.shape == (1, h, 7, d) and k.shape == (1, hkv, 7, d) and v.shape == (1, hkv, 7, d)
    xb = (x["qkv"].double() + x["qkv_bias"].double()).view(7, h + 2 * hkv, d)
    for t, pos in enumerate(x["positions"].tolist()):
        for head in range(h + 2 * hkv):
            row = xb[t, head].clone()
            if head < h + hkv:                          # q and k heads are rotated
                for i in range(rd // 2):
                    theta = pos / (10000.0 ** (2 * i / rd))
                    a, b = row[i].item(), row[i + rd // 2].item()
                    row[i] = a * math.cos(theta) - b * math.sin(theta)
                    row[i + rd // 2] = b * math.cos(theta) + a * math.sin(theta)
            out = q[0, head] if head < h else (k[0, head - h] if head < h + hkv else v[0, head - h - hkv])
            assert (out[t].double() - row.to(torch.float16).double()).abs().max() <= 2 ** -8 * (1 + row.abs().max())
    assert x["positions"].unique().numel() > 1


def test_reference_without_bias_equals_zero_bias():
    sh = next(s for s in spec.smoke_shapes() if s.id == "smoke_7tok")
    x = spec.make_inputs(sh, CPU, 1)
    zero = {**x, "qkv_bias": torch.zeros_like(x["qkv_bias"])}
    none = {**x, "qkv_bias": None}
    for a, b in zip(spec.reference(**zero), spec.reference(**none)):
        assert torch.equal(a, b)


def test_reference_gptj_pairs_by_hand():
    # One token, one head each of q/k/v, head 4 with rope_dim 2: only pair (0, 1) turns.
    qkv = torch.tensor([[1.0, 2.0, 3.0, 4.0, 0.5, -1.0, 2.0, 8.0, 9.0, 9.5, 10.0, 11.0]], dtype=torch.float16)
    pos = torch.tensor([3], dtype=torch.int32)
    q, k, v = spec.reference(qkv, None, pos, 1, 1, 4, 2, 10000.0, is_neox_style=False)
    c, s = math.cos(3.0), math.sin(3.0)
    want_q = torch.tensor([1 * c - 2 * s, 2 * c + 1 * s, 3.0, 4.0]).half()
    assert torch.equal(q[0, 0, 0], want_q) and torch.equal(v[0, 0, 0], qkv[0, 8:])


# ---- our kernel (Triton interpreter on CPU, compiled on a GPU) --------------------------------------------------------

def _ours():
    impl = impls_for(spec.name)["ours_triton"]
    if not impl.available():
        pytest.skip(impl.available().reason)
    from solbench.kernels.rope import fused_qkv_rope

    return fused_qkv_rope


CASES = pytest.mark.parametrize("t,h,hkv,d,rd,neox,bias,dtype", [
    (0, 2, 1, 16, 16, True, False, torch.float16),     # 0 tokens
    (1, 4, 2, 16, 16, True, True, torch.bfloat16),     # one token (decode)
    (5, 3, 1, 12, 8, True, True, torch.float32),       # head dim not a power of two, partial rotary
    (3, 2, 2, 16, 12, False, False, torch.float16),    # GPT-J pairs, a pass-through tail
])


@CASES
def test_ours_against_reference(t, h, hkv, d, rd, neox, bias, dtype, device):
    _against_reference(_ours(), t, h, hkv, d, rd, neox, bias, dtype, device)


@CASES
def test_torch_formulation_off_cuda(t, h, hkv, d, rd, neox, bias, dtype, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from solbench.kernels.rope import fused_qkv_rope

    _against_reference(fused_qkv_rope, t, h, hkv, d, rd, neox, bias, dtype, CPU)


def _against_reference(fn, t, h, hkv, d, rd, neox, bias, dtype, device):
    g = torch.Generator().manual_seed(t + d)
    width = (h + 2 * hkv) * d
    qkv = torch.randn(t, width, generator=g).to(dtype).to(device)
    b = torch.randn(width, generator=g).to(dtype).to(device) if bias else None
    pos = torch.randint(0, 8192, (t,), generator=g, dtype=torch.int32).to(device)
    want = spec.reference(qkv, b, pos, h, hkv, d, rd, 10000.0, is_neox_style=neox)
    out = tuple(torch.full_like(w, float("nan")) for w in want)
    got = fn(qkv, pos, h, hkv, d, rd, 10000.0, qkv_bias=b, is_neox_style=neox, out=out)
    tol = 1e-5 if dtype == torch.float32 else 2 ** -7
    for a, w in zip(got, want):
        assert a.shape == w.shape
        torch.testing.assert_close(a.float(), w.float(), atol=tol * 4, rtol=tol)


def test_ours_large_positions_stay_accurate(device):
    # fp32 activations at positions near 2^20: the fp64 angle keeps the error at fp32 rounding.
    fn = _ours()
    g = torch.Generator().manual_seed(9)
    qkv = torch.randn(4, 3 * 16, generator=g).to(device)
    pos = torch.tensor([1 << 20, (1 << 20) - 3, 777_777, 12], dtype=torch.int64, device=device)
    want = spec.reference(qkv, None, pos, 1, 1, 16, 16, 1e6)
    for a, w in zip(fn(qkv, pos, 1, 1, 16, 16, 1e6), want):
        torch.testing.assert_close(a, w, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("sid", ["smoke_7tok", "smoke_gptj"])
def test_ours_on_smoke_shapes_via_checker(sid, device):
    _ours()
    sh = next(s for s in spec.smoke_shapes() if s.id == sid)
    res = check_impl(spec, impls_for(spec.name)["ours_triton"], sh, device, seeds=(0, 1))
    assert res.ok, res.reason


def test_ours_rejects_bad_inputs(device):
    fn = _ours()
    qkv = torch.randn(2, 4 * 16, device=device).half()
    pos = torch.zeros(2, dtype=torch.int32, device=device)
    with pytest.raises(ValueError, match=r"\[num_tokens, 96\]"):
        fn(qkv, pos, 4, 1, 16)                       # (4 + 2) heads would be 96 wide
    with pytest.raises(ValueError, match="rotary dim"):
        fn(qkv, pos, 2, 1, 16, rope_dim=7)
    with pytest.raises(ValueError, match="qkv_bias"):
        fn(qkv, pos, 2, 1, 16, qkv_bias=torch.zeros(64, device=device))
    with pytest.raises(ValueError, match="positions"):
        fn(qkv, pos.float(), 2, 1, 16)
    with pytest.raises(TypeError, match="dtype"):
        fn(qkv.double(), pos, 2, 1, 16)
