"""linear_sigmoid_mul: the production gate (Linear(H, 1), post_mul and out [T, hidden_size]) and the
Atrex-compatible GEMM variant: hand-computed gate, an independent per-row formulation,
hand-counted costs, and our Triton kernels (interpreter) on edge cases."""
import math

import pytest
import torch

from solbench.core.check import check_impl
from solbench.core.spec import get_spec, impls_for

spec = get_spec("linear_sigmoid_mul")
atrex = get_spec("linear_sigmoid_mul_atrex")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_5():
    c = spec.cost(next(s for s in spec.shapes if s.id == 5))    # T=1 H=2048 (out_features 4096 is Atrex's)
    assert c.bytes_read == (2048 + 2048 + 1 + 2048) * 2 == 12_290   # x, weight, bias, post_mul [1, H]
    assert c.bytes_written == 2048 * 2
    assert c.flops == {"fp32": 2 * 2048 + 5 + 2048}


def test_atrex_cost_by_hand_shape_0():
    c = atrex.cost(next(s for s in atrex.shapes if s.id == 0))  # T=8037 H=4096 N=4096
    t, h, n = 8037, 4096, 4096
    assert c.flops == {"bf16_tc": 2 * t * h * n, "fp32": 6 * t * n}
    assert c.flops["bf16_tc"] == pytest.approx(270e9, rel=0.01)   # the GEMM the production gate is not
    assert c.bytes_read == (t * h + n * h + n + t * n) * 2
    assert c.bytes_written == t * n * 2


def test_production_and_atrex_input_shapes():
    sh = next(s for s in spec.shapes if s.id == 7)               # T=13 H=2048 out_features=4096
    x = spec.make_inputs(sh, CPU, 0)
    assert x["weight"].shape == (1, 2048) and x["bias"].shape == (1,)
    assert x["post_mul_mat"].shape == (13, 2048) == spec.reference(**x).shape
    y = atrex.make_inputs(next(s for s in atrex.shapes if s.id == 7), CPU, 0)
    assert y["weight"].shape == (4096, 2048) and y["bias"].shape == (4096,)
    assert y["post_mul_mat"].shape == (13, 4096)
    assert not atrex.catalog and atrex.importance == 0.0


def test_hand_example():
    bf = torch.bfloat16
    x = torch.tensor([[1.0, 2.0], [2.0, 0.0]], dtype=bf)
    w = torch.tensor([[0.5, -0.25]], dtype=bf)
    b = torch.tensor([0.5], dtype=bf)
    post = torch.tensor([[2.0, -4.0], [1.0, -1.0]], dtype=bf)
    out = spec.reference(x, w, b, post)
    g0, g1 = 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(-1.5))   # logits 0 + 0.5 and 1 + 0.5
    want = torch.tensor([[2 * g0, -4 * g0], [g1, -g1]]).to(bf)
    assert out.dtype == bf and torch.equal(out, want)


def test_atrex_hand_example():
    bf = torch.bfloat16
    x = torch.tensor([[1.0, 2.0]], dtype=bf)
    w = torch.tensor([[0.5, -0.25], [1.0, 1.0], [0.0, 0.0]], dtype=bf)
    b = torch.tensor([0.5, -3.0, 0.0], dtype=bf)
    post = torch.tensor([[2.0, 4.0, 8.0]], dtype=bf)
    s = [1 / (1 + math.exp(-v)) for v in (0.5, 0.0, 0.0)]       # logits 0 + 0.5, 3 - 3, 0
    want = torch.tensor([[2 * s[0], 4 * s[1], 8 * s[2]]]).to(bf)
    assert torch.equal(atrex.reference(x, w, b, post), want)


def test_reference_matches_row_loop():
    sh = next(s for s in spec.shapes if s.id == 7)              # 13 tokens
    x = spec.make_inputs(sh, CPU, 2)
    out = spec.reference(**x)
    for t in range(13):
        logit = float((x["hidden_states"][t].double() * x["weight"][0].double()).sum())
        gate = 1 / (1 + math.exp(-(logit + float(x["bias"][0]))))
        torch.testing.assert_close(out[t].float(), (gate * x["post_mul_mat"][t].double()).to(torch.bfloat16).float(),
                                   rtol=8e-3, atol=1e-3)


# ---- our kernels (Triton interpreter on CPU, compiled on a GPU) -------------------------------------------------------

def _ours():
    impl = impls_for(spec.name)["ours_triton"]
    if not impl.available():
        pytest.skip(impl.available().reason)
    from solbench.kernels.gate import linear_sigmoid_mul

    return linear_sigmoid_mul


def _case(t, h, n, d, device, seed=0, bias=True, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, h, generator=g).to(dtype)
    w = (torch.randn(n, h, generator=g) * h ** -0.5).to(dtype)
    b = (torch.randn(n, generator=g) * 0.5).to(dtype) if bias else None
    p = torch.randn(t, d, generator=g).to(dtype)
    return tuple(v.to(device) if v is not None else None for v in (x, w, b, p))


def _want(x, w, b, p):
    logit = x.float() @ w.float().T + (b.float() if b is not None else 0.0)
    return (torch.sigmoid(logit) * p.float()).to(p.dtype)


@pytest.mark.parametrize("t,h,d,bias", [(0, 64, 64, True), (1, 100, 100, True), (3, 64, 40, False), (9, 300, 300, True)])
def test_ours_gate_vector(t, h, d, bias, device):
    fn = _ours()
    x, w, b, p = _case(t, h, 1, d, device, seed=t + h, bias=bias)
    out = torch.full_like(p, float("nan"))
    assert fn(x, w, b, p, out=out) is out
    torch.testing.assert_close(out.float(), _want(x, w, b, p).float(), atol=1e-2, rtol=1.6e-2)


def test_gate_vector_rows_per_program():
    from solbench.kernels.gate import vector_rows

    assert vector_rows(8038, 2048, 132) == 4       # thousands of tokens: the full tile, programs to spare
    assert vector_rows(1, 2048, 132) == 4          # one token: halving adds no program
    assert vector_rows(13, 2048, 132) == 1         # catalog #7: 13 one-row programs, not 4 of four rows
    assert vector_rows(300, 2048, 132) == 2        # 150 programs of two rows fill the 132 SMs
    assert vector_rows(13, 2048, None) == 4        # off CUDA: the tile as it is
    assert vector_rows(5, 16384, 132) == 1


def test_ours_gate_vector_one_row_programs(device, monkeypatch):
    # The few-token launch (one row a program) and the full tile agree with the reference.
    from solbench.kernels import _gate_triton

    fn = _ours()
    x, w, b, p = _case(13, 256, 1, 256, device, seed=5)
    for sms in (None, 132):
        monkeypatch.setattr(_gate_triton, "sm_count", lambda t, sms=sms: sms)
        out = fn(x, w, b, p)
        torch.testing.assert_close(out.float(), _want(x, w, b, p).float(), atol=1e-2, rtol=1.6e-2)


@pytest.mark.parametrize("t,h,n,bias,dtype", [(0, 32, 16, True, torch.bfloat16), (1, 136, 48, True, torch.bfloat16),
                                              (70, 96, 80, False, torch.float16)])
def test_ours_gemm(t, h, n, bias, dtype, device):
    fn = _ours()
    x, w, b, p = _case(t, h, n, n, device, seed=n, bias=bias, dtype=dtype)
    out = fn(x, w, b, p)
    torch.testing.assert_close(out.float(), _want(x, w, b, p).float(), atol=1e-2, rtol=1.6e-2)


def test_ours_strided_rows(device):
    fn = _ours()
    x, w, b, p = _case(4, 64, 1, 64, device)
    wide = torch.randn(4, 200, device=device).bfloat16()
    wide[:, 8:72] = x
    torch.testing.assert_close(fn(wide[:, 8:72], w, b, p).float(), _want(x, w, b, p).float(), atol=1e-2, rtol=1.6e-2)


@pytest.mark.parametrize("op", ["linear_sigmoid_mul", "linear_sigmoid_mul_atrex"])
def test_ours_on_smoke_shapes_via_checker(op, device):
    _ours()
    s = get_spec(op)
    sh = min(s.smoke_shapes(), key=lambda x: s.cost(x).total_bytes)
    res = check_impl(s, impls_for(op)["ours_triton"], sh, device, seeds=(0,))
    assert res.ok, res.reason


def test_ours_rejects_bad_inputs(device):
    fn = _ours()
    x, w, b, p = _case(3, 64, 4, 4, device)
    with pytest.raises(ValueError, match=r"post_mul must be \[rows, 4\]"):
        fn(x, w, b, p[:, :3])
    with pytest.raises(ValueError, match="bias"):
        fn(x, w, b[:2], p)
    with pytest.raises(TypeError, match="dtype"):
        fn(x.float(), w, b, p)
    with pytest.raises(ValueError, match="weight"):
        fn(x, w[:, :10], b, p)


# ---- the torch formulation (CPU tensors without the interpreter) ------------------------------------

@pytest.mark.parametrize("t,h,n,d,bias", [(0, 64, 1, 64, True), (3, 64, 1, 40, False), (5, 40, 24, 24, True)])
def test_torch_formulation_off_cuda(t, h, n, d, bias, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from solbench.kernels.gate import linear_sigmoid_mul

    x, w, b, p = _case(t, h, n, d, CPU, seed=t + n, bias=bias)
    assert torch.equal(linear_sigmoid_mul(x, w, b, p), _want(x, w, b, p))
