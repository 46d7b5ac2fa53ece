"""fp8_dynamic_per_token_quant and the shared fp8 mechanics (kernels/fp8_format.py, core/fp8.py): the
software e4m3fn encoder against torch's conversion, UE8M0 rounding, the hand-counted cost, the
reference against a per-token loop, and our kernel on odd sizes, strides, 0 rows, out= and errors."""
import pytest
import torch

from solbench.core import fp8
from solbench.kernels import fp8_format
from solbench.core.check import check_impl
from solbench.core.baselines import triton_support
from solbench.core.spec import get_spec

OP = "fp8_dynamic_per_token_quant"
needs_triton = pytest.mark.skipif(not triton_support(), reason="needs a GPU or TRITON_INTERPRET=1")


def _encode(v, device):
    """Our in-kernel encoder (software path under the interpreter) on a 1-D fp32 tensor."""
    import triton
    import triton.language as tl

    from solbench.kernels import _fp8_quant_triton

    @triton.jit
    def k(v_ptr, o_ptr, n, SOFT: tl.constexpr, BLOCK: tl.constexpr):
        c = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        tl.store(o_ptr + c, fp8e4m3_bits(tl.load(v_ptr + c, mask=c < n, other=0.0), SOFT), mask=c < n)

    k.fn.__globals__["fp8e4m3_bits"] = _fp8_quant_triton.fp8e4m3_bits
    out = torch.empty(v.shape, dtype=torch.uint8, device=device)
    k[(triton.cdiv(v.numel(), 1024),)](v, out, v.numel(), SOFT=device.type == "cpu", BLOCK=1024)
    return out


@needs_triton
def test_encoder_matches_torch_rne(device):
    # Every finite e4m3fn value, every midpoint between neighbours (ties to even), points just
    # beside the midpoints, and random values across the whole range, both signs.
    codes = torch.arange(0, 0x7F, dtype=torch.uint8)  # 0x7F is NaN
    vals = codes.view(torch.float8_e4m3fn).float()
    mids = (vals[:-1] + vals[1:]) / 2
    eps = torch.nextafter(mids, torch.full_like(mids, 1e9)) - mids
    rand = torch.exp2(torch.rand(4000) * 20 - 12).clamp(max=448)
    v = torch.cat([vals, mids, mids + eps, mids - eps, rand, torch.tensor([448.0, 2.0 ** -10, 2.0 ** -9 * 0.5])])
    v = torch.cat([v, -v]).to(device)
    got = _encode(v, device)
    want = v.to(torch.float8_e4m3fn).view(torch.uint8)
    bad = (got != want).nonzero()
    assert bad.numel() == 0, f"{bad.numel()} codes differ, e.g. v={v[bad[0]].item()!r}: {got[bad[0]].item():#x} vs {want[bad[0]].item():#x}"


def test_ue8m0_ceil():
    s = torch.tensor([1.0, 1.0000001, 0.75, 2.0 ** -20 * 1.5, 3.0, 0.0, 448.0 / 448])
    assert fp8_format.ue8m0_ceil(s).tolist() == [1.0, 2.0, 1.0, 2.0 ** -19, 4.0, 0.0, 1.0]


def test_cost_hand_count():
    spec = get_spec(OP)
    shape = next(s for s in spec.shapes if s.id == 20)  # (3804, 7168)
    c = spec.cost(shape)
    # Read: 3804 * 7168 bf16 = 54,534,144 B. Write: 3804 * 7168 fp8 = 27,267,072 B + 3804 fp32 scales.
    assert c.bytes_read == 3804 * 7168 * 2 == 54_534_144
    assert c.bytes_written == 27_267_072 + 3804 * 4 == 27_282_288
    assert c.flops == {"fp32": 5 * 3804 * 7168 + 3 * 3804}


def test_reference_against_token_loop():
    spec = get_spec(OP)
    x = torch.randn(7, 33) * torch.linspace(0.1, 30, 7)[:, None]
    x[3] = 0  # an all-zero row: aiter's 1e-10 floor keeps the scale finite and q zero
    x = x.to(torch.bfloat16)
    q, s = spec.reference(x)
    assert q.dtype == torch.float8_e4m3fn and s.shape == (7, 1) and s.dtype == torch.float32
    for t in range(7):
        row = x[t].float()
        scale = max(float(row.abs().max()), 1e-10) / 448.0
        assert s[t, 0].item() == pytest.approx(scale, rel=1e-7)
        # aiter multiplies by the fp32 reciprocal of the scale.
        inv = torch.tensor(1.0) / s[t, 0]
        want = (row * inv).clamp(-448, 448).to(torch.float8_e4m3fn)
        assert torch.equal(q[t].view(torch.uint8), want.view(torch.uint8))
        assert (q[t].float() - (row / scale).clamp(-448, 448)).abs().le((row / scale).abs() / 16 + 2 ** -10).all()
    assert q[3].float().abs().sum() == 0 and s[3, 0] > 0
    # The largest element of each nonzero row maps to +-448.
    assert torch.all(q.float().abs().amax(-1)[[0, 1, 2, 4, 5, 6]] == 448)


def test_checker_rejects_wrong_scale_and_values(device):
    from solbench.core.spec import Impl

    spec = get_spec(OP)
    shape = spec.smoke_shapes()[1]
    from solbench.ops.fp8_dynamic_per_token_quant.impls import eager_per_token_quant

    def bad_scale(x):
        q, s = eager_per_token_quant(x)
        return q, s * 1.001

    def truncating(x):  # right scale, values rounded toward zero instead of to nearest
        q, s = eager_per_token_quant(x)
        v = x.float() / s
        mag = v.abs().clamp(max=448).to(torch.float8_e4m3fn).float()
        over = mag > v.abs()
        down = torch.where(over, torch.nextafter(mag, torch.zeros_like(mag)).to(torch.float8_e4m3fn).float(), mag)
        # one e4m3 step below where rounding went up
        prev = (mag.to(torch.float8_e4m3fn).view(torch.uint8) - over.to(torch.uint8)).view(torch.float8_e4m3fn).float()
        return (torch.sign(v) * torch.where(over, prev, down)).to(torch.float8_e4m3fn), s

    for fn, what in ((bad_scale, "scale"), (truncating, "q")):
        res = check_impl(spec, Impl(OP, "bad", fn), shape, device, seeds=(0,))
        assert not res.ok and what in res.reason, res.reason


@needs_triton
@pytest.mark.parametrize("t,n", [(1, 1), (3, 17), (5, 200), (2, 2048), (9, 96)])
def test_kernel_odd_shapes(device, t, n):
    from solbench.kernels.fp8_quant import dynamic_per_token_quant_fp8

    spec = get_spec(OP)
    x = fp8.activation_like((t, n), torch.bfloat16, device, torch.Generator(device).manual_seed(t * n))
    q, s = dynamic_per_token_quant_fp8(x)
    rq, rs = spec.reference(x)
    assert fp8.check_scales("scale", s, rs) == []
    assert torch.equal(q.view(torch.uint8), rq.view(torch.uint8))


@needs_triton
def test_kernel_strided_rows_leading_dims_out_and_chunked(device, monkeypatch):
    from solbench.kernels import rowwise
    from solbench.kernels.fp8_quant import dynamic_per_token_quant_fp8

    spec = get_spec(OP)
    g = torch.Generator(device).manual_seed(3)
    base = fp8.activation_like((6, 160), torch.float16, device, g)
    x = base[:, :150].reshape(2, 3, 150)  # rows strided by 160, two leading dims
    q = torch.empty((2, 3, 150), dtype=torch.float8_e4m3fn, device=device)
    s = torch.empty((2, 3, 1), dtype=torch.float32, device=device)
    rq, rs = spec.reference(x)
    rq, rs = rq.view(2, 3, 150), rs.view(2, 3, 1)
    got = dynamic_per_token_quant_fp8(x, out=(q, s))
    assert got[0] is q and got[1] is s
    assert fp8.check_scales("scale", s, rs) == [] and torch.equal(q.view(torch.uint8), rq.view(torch.uint8))
    # Rows longer than the whole-row limit take the chunked two-pass path.
    monkeypatch.setattr(rowwise, "MAX_WHOLE_ROW", 64)
    monkeypatch.setattr(rowwise, "CHUNK_N", 32)
    q2, s2 = dynamic_per_token_quant_fp8(x)
    assert torch.equal(s2, s) and torch.equal(q2.view(torch.uint8), q.view(torch.uint8))


@needs_triton
def test_kernel_zero_rows_and_errors(device):
    from solbench.kernels.fp8_quant import dynamic_per_token_quant_fp8

    q, s = dynamic_per_token_quant_fp8(torch.empty((0, 64), dtype=torch.bfloat16, device=device))
    assert q.shape == (0, 64) and s.shape == (0, 1)
    z = torch.zeros((2, 8), dtype=torch.bfloat16, device=device)
    q, s = dynamic_per_token_quant_fp8(z)
    assert torch.all(q.float() == 0) and torch.all(s == 1e-10 / 448)
    x = torch.ones((2, 8), dtype=torch.bfloat16, device=device)
    with pytest.raises(TypeError, match="supported"):
        dynamic_per_token_quant_fp8(x.to(torch.int32))
    with pytest.raises(ValueError, match="contiguous"):
        dynamic_per_token_quant_fp8(torch.ones((8, 2), dtype=torch.bfloat16, device=device).t())
    with pytest.raises(ValueError, match="pair"):
        dynamic_per_token_quant_fp8(x, out=torch.empty_like(x))
    with pytest.raises(ValueError, match="shape"):
        dynamic_per_token_quant_fp8(x, out=(torch.empty((2, 8), dtype=torch.float8_e4m3fn, device=device),
                                            torch.empty((2,), device=device)))
    with pytest.raises(TypeError, match="dtype"):
        dynamic_per_token_quant_fp8(x, out=(torch.empty((2, 8), dtype=torch.bfloat16, device=device),
                                            torch.empty((2, 1), device=device)))


@needs_triton
def test_custom_op_opcheck(device):
    from solbench.kernels.fp8_quant import dynamic_per_token_quant_fp8  # noqa: F401

    x = torch.randn(4, 48, device=device).to(torch.bfloat16)
    q = torch.empty((4, 48), dtype=torch.float8_e4m3fn, device=device)
    s = torch.empty((4, 1), device=device)
    torch.library.opcheck(torch.ops.solbench.dynamic_per_token_quant_fp8.out, (x, q, s, 1e-10),
                          test_utils=("test_faketensor",))  # test_schema cannot compare fp8 on CPU


HAS_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_gpu_compile_graph_and_int64_offsets():
    from solbench.kernels.fp8_quant import dynamic_per_token_quant_fp8

    spec = get_spec(OP)
    x = torch.randn(100, 1536, device="cuda", dtype=torch.bfloat16)

    @torch.compile(fullgraph=True)
    def f(t):
        q, s = dynamic_per_token_quant_fp8(t * 2)
        return q, s

    q, s = f(x)
    rq, rs = spec.reference(x * 2)
    assert fp8.check_scales("scale", s, rs) == [] and torch.equal(q.view(torch.uint8), rq.view(torch.uint8))
    out = (torch.empty_like(q), torch.empty_like(s))
    dynamic_per_token_quant_fp8(x, out=out)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        dynamic_per_token_quant_fp8(x, out=out)
    out[1].fill_(float("nan"))
    x.copy_(torch.randn_like(x))
    g.replay()
    torch.cuda.synchronize()
    rq, rs = spec.reference(x)
    assert fp8.check_scales("scale", out[1], rs) == [] and torch.equal(out[0].view(torch.uint8), rq.view(torch.uint8))
    big = torch.randn((1 << 21) + 3, 1024, device="cuda", dtype=torch.bfloat16)  # > 2^31 elements
    q, s = dynamic_per_token_quant_fp8(big)
    rq, rs = spec.reference(big[-4:])
    assert fp8.check_scales("scale", s[-4:], rs) == [] and torch.equal(q[-4:].view(torch.uint8), rq.view(torch.uint8))
