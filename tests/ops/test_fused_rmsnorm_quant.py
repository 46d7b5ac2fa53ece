"""fused_rmsnorm_quant: hand-counted cost, the reference against a per-token loop written from
aiter's formula, and our kernel (with and without the residual) on odd sizes, strided rows,
the chunked long-row path, 0 rows, out= and errors."""
import math

import pytest
import torch

from solbench.core import fp8
from solbench.kernels import fp8_format
from solbench.core.check import check_impl
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, get_spec

OP = "fused_rmsnorm_quant"
needs_triton = pytest.mark.skipif(not triton_support(), reason="needs a GPU or TRITON_INTERPRET=1")


def _inputs(t, n, device, seed=0, dtype=torch.bfloat16):
    g = torch.Generator(device).manual_seed(seed)
    x = fp8.activation_like((t, n), dtype, device, g)
    r = fp8.activation_like((t, n), dtype, device, g)
    w = (torch.randn(n, generator=g, device=device) * 0.25 + 1).to(dtype)
    return x, r, w


def test_cost_hand_count():
    spec = get_spec(OP)
    shape = next(s for s in spec.shapes if s.id == 10)  # (8208, 4096)
    c = spec.cost(shape)
    # Read: x and residual 2 * 8208 * 4096 * 2 B = 134,479,872 B, weight 4096 * 2 = 8,192 B.
    assert c.bytes_read == 134_479_872 + 8_192
    # Write: fp8 8208 * 4096 = 33,619,968 B, scales 8208 * 4 = 32,832 B, residual 67,239,936 B.
    assert c.bytes_written == 33_619_968 + 32_832 + 67_239_936
    assert c.flops == {"fp32": 10 * 8208 * 4096 + 6 * 8208}


def test_reference_against_token_loop():
    spec = get_spec(OP)
    x, r, w = _inputs(4, 24, torch.device("cpu"), seed=5)
    eps = 1e-5
    q, s, res = spec.reference(x, r, w, eps)
    assert q.dtype == torch.float8_e4m3fn and s.shape == (4, 1) and res.dtype == torch.bfloat16
    for t in range(4):
        v = [a + b for a, b in zip(x[t].float().tolist(), r[t].float().tolist())]
        rstd = 1.0 / math.sqrt(sum(e * e for e in v) / len(v) + eps)
        y = [e * rstd * wi for e, wi in zip(v, w.float().tolist())]
        scale = max(abs(e) for e in y) / 448.0
        assert s[t, 0].item() == pytest.approx(scale, rel=1e-6)
        assert torch.equal(res[t], torch.tensor(v).to(torch.bfloat16))
        want = torch.tensor([min(max(e / scale, -448.0), 448.0) for e in y]).to(torch.float8_e4m3fn)
        # fp32 summation order may move a value across a rounding midpoint: allow one step.
        assert (q[t].float() - want.float()).abs().le(want.float().abs() / 8 + 2 ** -9).all()
    # The sum is normalized unrounded (aiter), not the bf16-rounded residual_out.
    assert torch.all(q.float().abs().amax(-1) == 448)


def test_checker_rejects_rounded_sum_norm(device):
    # Normalizing the bf16-rounded sum changes the scales by ~1e-3: the tight scale check sees it.
    spec = get_spec(OP)
    from solbench.ops.fused_rmsnorm_quant.impls import eager_add_rmsnorm_quant

    def rounded(x, residual, weight, eps):  # normalizes the stored bf16 sum and rounds y to bf16
        s = x + residual
        y = (s.float() * torch.rsqrt(s.float().pow(2).mean(-1, keepdim=True) + eps) * weight.float()).to(x.dtype)
        q, sc = fp8_format.quantize_per_token(y.float().reshape(-1, y.shape[-1]))
        return q.view(x.shape), sc.view(*x.shape[:-1], 1), s

    def bad_residual(x, residual, weight, eps):
        q, sc, res = eager_add_rmsnorm_quant(x, residual, weight, eps)
        return q, sc, res * 1.02

    shape = spec.smoke_shapes()[0]
    res = check_impl(spec, Impl(OP, "rounded", rounded), shape, device, seeds=(0,))
    assert not res.ok and "scale" in res.reason, res.reason
    res = check_impl(spec, Impl(OP, "bad", bad_residual), shape, device, seeds=(0,))
    assert not res.ok and "residual_out" in res.reason, res.reason


def _assert_close_to_reference(q, s, res, x, r, w, eps):
    rq, rs, rres = get_spec(OP).reference(x.reshape(-1, x.shape[-1]), r.reshape(-1, x.shape[-1]), w, eps)
    assert fp8.check_scales("scale", s.reshape(-1, 1), rs) == []
    # The kernel's fp32 sum of squares runs in another order than torch's: rstd, and with it a
    # row's scale, may differ by an ulp, which moves values near a rounding midpoint by one fp8
    # step. So: rare differences (the H200 showed 0.17% of elements), each exactly one step.
    got = q.reshape(-1, x.shape[-1]).view(torch.uint8).int()
    want = rq.view(torch.uint8).int()
    differ = got != want
    assert differ.float().mean() < 1e-2
    # e4m3fn codes are sign | magnitude, and magnitudes are ordered: one step is a code +-1.
    assert ((got - want).abs()[differ] == 1).all() and ((got ^ want)[differ] & 0x80 == 0).all()
    if res is not None:
        if res.is_cuda:
            assert torch.equal(res.reshape(rres.shape), rres)
        else:  # the interpreter rounds fp32 -> bf16 toward zero: one bf16 step apart at most
            torch.testing.assert_close(res.reshape(rres.shape), rres, atol=0, rtol=2 ** -7)


@needs_triton
@pytest.mark.parametrize("t,n", [(1, 7), (3, 130), (5, 2048), (2, 1000)])
def test_kernel_odd_shapes(device, t, n):
    from solbench.kernels.fp8_quant import fused_add_rms_norm_quant

    x, r, w = _inputs(t, n, device, seed=t + n)
    q, s, res = fused_add_rms_norm_quant(x, r, w, 1e-6)
    _assert_close_to_reference(q, s, res, x, r, w, 1e-6)


@needs_triton
def test_kernel_strided_out_chunked_and_plain(device, monkeypatch):
    from solbench.kernels import rowwise
    from solbench.kernels.fp8_quant import fused_add_rms_norm_quant, rms_norm_quant

    x, r, w = _inputs(6, 200, device, seed=1, dtype=torch.float16)
    xs = torch.empty((6, 256), dtype=x.dtype, device=device)[:, :200]
    xs.copy_(x)
    xs = xs.reshape(2, 3, 200)  # strided rows and two leading dims
    out = (torch.empty((2, 3, 200), dtype=torch.float8_e4m3fn, device=device),
           torch.empty((2, 3, 1), device=device), torch.empty((2, 3, 200), dtype=x.dtype, device=device))
    got = fused_add_rms_norm_quant(xs, r.reshape(2, 3, 200), w, 1e-5, out=out)
    assert all(a is b for a, b in zip(got, out))
    _assert_close_to_reference(*got, xs, r, w, 1e-5)
    monkeypatch.setattr(rowwise, "MAX_WHOLE_ROW", 64)
    monkeypatch.setattr(rowwise, "CHUNK_N", 64)
    q2, s2, res2 = fused_add_rms_norm_quant(xs, r.reshape(2, 3, 200), w, 1e-5)
    _assert_close_to_reference(q2, s2, res2, xs, r, w, 1e-5)
    # Without the residual: rms_norm_quant is the same with residual = 0.
    q3, s3 = rms_norm_quant(x, w, 1e-5)
    _assert_close_to_reference(q3, s3, None, x, torch.zeros_like(x), w, 1e-5)


@needs_triton
def test_kernel_zero_rows_zero_input_and_errors(device):
    from solbench.kernels.fp8_quant import fused_add_rms_norm_quant

    e = torch.empty((0, 32), dtype=torch.bfloat16, device=device)
    w = torch.ones(32, dtype=torch.bfloat16, device=device)
    q, s, res = fused_add_rms_norm_quant(e, e.clone(), w)
    assert q.shape == (0, 32) and s.shape == (0, 1) and res.shape == (0, 32)
    z = torch.zeros((2, 32), dtype=torch.bfloat16, device=device)
    q, s, _ = fused_add_rms_norm_quant(z, z.clone(), w)  # zero row: scale 0, q 0 (aiter)
    assert torch.all(s == 0) and torch.all(q.float() == 0)
    x = torch.ones((2, 32), dtype=torch.bfloat16, device=device)
    with pytest.raises(ValueError, match="residual must match"):
        fused_add_rms_norm_quant(x, x.float(), w)
    with pytest.raises(ValueError, match="weight"):
        fused_add_rms_norm_quant(x, x.clone(), torch.ones(31, dtype=torch.bfloat16, device=device))
    with pytest.raises(ValueError, match="overlaps"):
        fused_add_rms_norm_quant(x, z, w, out=(None, None, z))
    with pytest.raises(ValueError, match="triple"):
        fused_add_rms_norm_quant(x, z, w, out=(x, z))
    with pytest.raises(TypeError, match="supported"):
        fused_add_rms_norm_quant(x.to(torch.int8), z, w)


@needs_triton
def test_custom_op_fake(device):
    from solbench.kernels.fp8_quant import fused_add_rms_norm_quant  # noqa: F401

    x, r, w = _inputs(3, 64, device)
    outs = (torch.empty((3, 64), dtype=torch.float8_e4m3fn, device=device), torch.empty((3, 1), device=device),
            torch.empty_like(x))
    torch.library.opcheck(torch.ops.solbench.fused_add_rms_norm_quant.out, (x, r, w, *outs, 1e-6),
                          test_utils=("test_faketensor",))  # test_schema cannot compare fp8 on CPU


HAS_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_gpu_compile_graph_and_int64_offsets():
    from solbench.kernels.fp8_quant import fused_add_rms_norm_quant

    dev = torch.device("cuda")
    x, r, w = _inputs(100, 2048, dev)

    @torch.compile(fullgraph=True)
    def f(a, b):
        return fused_add_rms_norm_quant(a, b, w, 1e-6)

    _assert_close_to_reference(*f(x, r), x, r, w, 1e-6)
    out = tuple(torch.empty_like(t) for t in fused_add_rms_norm_quant(x, r, w, 1e-6))
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fused_add_rms_norm_quant(x, r, w, 1e-6, out=out)
    out[1].fill_(float("nan"))
    x.copy_(torch.randn_like(x))
    g.replay()
    torch.cuda.synchronize()
    _assert_close_to_reference(*out, x, r, w, 1e-6)
    xb = torch.randn((1 << 21) + 3, 1024, device="cuda", dtype=torch.bfloat16)  # > 2^31 elements
    rb = torch.randn_like(xb)
    wb = torch.ones(1024, device="cuda", dtype=torch.bfloat16)
    q, s, res = fused_add_rms_norm_quant(xb, rb, wb, 1e-6)
    _assert_close_to_reference(q[-4:], s[-4:], res[-4:], xb[-4:], rb[-4:], wb, 1e-6)
