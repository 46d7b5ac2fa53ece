"""per_token_group_quant_fp8: hand-counted cost, the reference against a loop over groups, the
chunked dequantized views the checker uses on multi-GB outputs, the eager memory refusal, and
our kernel on odd sizes, group sizes, strided rows, column-major / TMA-aligned / UE8M0 scales,
0 rows, out= and errors."""
import pytest
import torch

from solbench.core import fp8
from solbench.kernels import fp8_format
from solbench.core.check import compare_outputs
from solbench.core.baselines import triton_support
from solbench.core.spec import get_spec, impls_for

OP = "per_token_group_quant_fp8"
needs_triton = pytest.mark.skipif(not triton_support(), reason="needs a GPU or TRITON_INTERPRET=1")


def _x(t, k, device, seed=0, dtype=torch.bfloat16):
    return fp8.activation_like((t, k), dtype, device, torch.Generator(device).manual_seed(seed))


def test_cost_hand_count():
    spec = get_spec(OP)
    shape = next(s for s in spec.shapes if s.id == 18)  # (58688, 7168), group 128
    c = spec.cost(shape)
    # Read: 58688 * 7168 * 2 = 841,351,168 B. Write: fp8 420,675,584 B + 58688 * 56 groups * 4 B.
    assert c.bytes_read == 841_351_168
    assert c.bytes_written == 420_675_584 + 58688 * 56 * 4 == 433_821_696
    assert c.flops == {"fp32": 5 * 58688 * 7168 + 3 * 58688 * 56}


@pytest.mark.parametrize("ue8m0", [False, True])
def test_reference_against_group_loop(ue8m0):
    x = _x(3, 12, torch.device("cpu"), seed=2)
    x[1, 4:8] = 0  # an all-zero group: eps keeps its scale positive
    q, s = fp8_format.quantize_per_group(x, 4, 1e-10, ue8m0)
    assert q.shape == (3, 12) and s.shape == (3, 3)
    for t in range(3):
        for g in range(3):
            grp = x[t, 4 * g:4 * g + 4].float()
            scale = max(float(grp.abs().max()), 1e-10) / 448.0
            if ue8m0:
                p = 2.0 ** -149
                while p < scale:
                    p *= 2
                scale = p
            assert s[t, g].item() == pytest.approx(scale, rel=1e-7)
            want = torch.tensor([min(max(v / scale, -448.0), 448.0) for v in grp.tolist()]).to(torch.float8_e4m3fn)
            assert torch.equal(q[t, 4 * g:4 * g + 4].view(torch.uint8), want.view(torch.uint8))
    assert q[1, 4:8].float().abs().sum() == 0


def test_chunked_views_match_whole_comparison(device):
    # The checker's views split big outputs into row chunks; a wrong chunk is still found.
    spec = get_spec(OP)
    x = _x(40, 256, device)
    rq, rs = fp8_format.quantize_per_group(x, 128)
    ref = {"quantized": rq, "scales": rs}
    got = {"quantized": rq.clone(), "scales": rs.clone()}
    gv, rv = fp8.dequant_views(got, ref, {"quantized": ("scales", 128)}, max_elems=1024)
    assert len(list(rv)) == 10 and all(k.startswith("quantized[rows") for k in rv)
    shape = spec.smoke_shapes()[0]
    errs, _ = compare_outputs(spec, shape, {"x": x}, got, ref, device)
    assert errs == []
    got["quantized"].view(torch.uint8)[33, 7] ^= 0x08  # one element a few steps off
    gv, rv = fp8.dequant_views(got, ref, {"quantized": ("scales", 128)}, max_elems=1024)
    from solbench.core.check import compare_tensor
    bad = [k for k in rv if compare_tensor(k, gv[k], rv[k], fp8.DEQUANT_TOLERANCE)[0]]
    assert bad == ["quantized[rows 32:36]"]
    got["scales"][5, 1] *= 1.0001
    assert any("scales" in e for e in spec.check_invariants(shape, {"x": x}, got, ref))


def test_eager_refuses_only_the_largest_shapes(device):
    spec = get_spec(OP)
    eager, compiled = impls_for(OP)["torch_eager"], impls_for(OP)["torch_compile"]
    refused = [s.id for s in spec.shapes if not eager.supports(s, device)]
    assert refused == [8, 9]
    assert all(compiled.supports(s, device) for s in spec.shapes)
    assert "GiB" in eager.supports(spec.shapes[-1] if spec.shapes[-1].id == 9 else
                                   next(s for s in spec.shapes if s.id == 9), device).reason


def _check(q, s, x, group, ue8m0=False):
    # Bit for bit against the reference formulated as the kernel computes (reciprocal multiply);
    # the division reference (vLLM) is within the dequantized tolerance (test_impls_pass_checker).
    rq, rs = fp8_format.quantize_per_group(x, group, 1e-10, ue8m0, reciprocal=True)
    assert fp8.check_scales("scales", s.contiguous().view(rs.shape), rs) == []
    assert torch.equal(q.reshape(rq.shape).view(torch.uint8), rq.view(torch.uint8))


@needs_triton
@pytest.mark.parametrize("t,k,group", [(1, 2048, 128), (3, 384, 128), (5, 96, 32), (2, 60, 12), (7, 64, 64)])
def test_kernel_odd_shapes(device, t, k, group):
    from solbench.kernels.fp8_quant import per_token_group_quant_fp8

    x = _x(t, k, device, seed=k)
    q, s = per_token_group_quant_fp8(x, group)
    assert s.shape == (t, k // group) and s.is_contiguous()
    _check(q, s, x, group)


@needs_triton
def test_kernel_scale_layouts_ue8m0_strides_out(device):
    from solbench.kernels.fp8_quant import per_token_group_quant_fp8

    base = _x(9, 320, device, seed=4)
    x = base[:, :256]  # strided rows
    q, s = per_token_group_quant_fp8(x, 64, column_major_scales=True)
    assert s.shape == (9, 4) and s.stride() == (1, 9)
    _check(q, s, x, 64)
    q, s = per_token_group_quant_fp8(x, 64, column_major_scales=True, tma_aligned_scales=True)
    assert s.stride() == (1, 12)
    _check(q, s, x, 64)
    q, s = per_token_group_quant_fp8(x, 64, use_ue8m0=True)
    assert torch.all(torch.log2(s) == torch.round(torch.log2(s)))
    _check(q, s, x, 64, ue8m0=True)
    x3 = _x(6, 256, device, seed=8).view(2, 3, 256)
    out = (torch.empty((2, 3, 256), dtype=torch.float8_e4m3fn, device=device),
           torch.empty((2, 3, 2), device=device))
    got = per_token_group_quant_fp8(x3, 128, out=out)
    assert got[0] is out[0] and got[1] is out[1]
    _check(out[0], out[1], x3.reshape(6, 256), 128)


@needs_triton
def test_kernel_zero_rows_and_errors(device):
    from solbench.kernels.fp8_quant import per_token_group_quant_fp8

    q, s = per_token_group_quant_fp8(torch.empty((0, 256), dtype=torch.bfloat16, device=device))
    assert q.shape == (0, 256) and s.shape == (0, 2)
    x = _x(2, 256, device)
    with pytest.raises(ValueError, match="divisible"):
        per_token_group_quant_fp8(x, 96)
    with pytest.raises(ValueError, match="group_size"):
        per_token_group_quant_fp8(x, 0)
    with pytest.raises(ValueError, match="2-D"):
        per_token_group_quant_fp8(x.view(1, 2, 256), 128, column_major_scales=True)
    with pytest.raises(TypeError, match="supported"):
        per_token_group_quant_fp8(x.to(torch.int16), 128)
    with pytest.raises(ValueError, match="shape"):
        per_token_group_quant_fp8(x, 128, out=(torch.empty((2, 256), dtype=torch.float8_e4m3fn, device=device),
                                              torch.empty((2, 3), device=device)))
    with pytest.raises(ValueError, match="supported"):
        per_token_group_quant_fp8(_x(1, 32768, device), 32768)


@needs_triton
def test_custom_op_fake(device):
    from solbench.kernels.fp8_quant import per_token_group_quant_fp8  # noqa: F401

    x = _x(2, 256, device)
    args = (x, torch.empty((2, 256), dtype=torch.float8_e4m3fn, device=device), torch.empty((2, 2), device=device),
            128, 1e-10, False)
    torch.library.opcheck(torch.ops.solbench.per_token_group_quant_fp8.out, args,
                          test_utils=("test_faketensor",))  # test_schema cannot compare fp8 on CPU


HAS_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_gpu_compile_graph_and_int64_offsets():
    from solbench.kernels.fp8_quant import per_token_group_quant_fp8

    dev = torch.device("cuda")
    x = _x(100, 2048, dev)

    @torch.compile(fullgraph=True)
    def f(t):
        return per_token_group_quant_fp8(t, 128)

    _check(*f(x), x, 128)
    out = per_token_group_quant_fp8(x, 128)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        per_token_group_quant_fp8(x, 128, out=out)
    out[1].fill_(float("nan"))
    x.copy_(_x(100, 2048, dev, seed=9))
    g.replay()
    torch.cuda.synchronize()
    _check(*out, x, 128)
    big = torch.randn((1 << 21) + 3, 1024, device="cuda", dtype=torch.bfloat16)  # > 2^31 elements
    q, s = per_token_group_quant_fp8(big, 128)
    _check(q[-4:], s[-4:], big[-4:], 128)


@needs_triton
def test_ue8m0_colmajor_variant(device):
    spec = get_spec("per_token_group_quant_fp8_ue8m0_colmajor")
    assert not spec.catalog and len(spec.shapes) == len(get_spec(OP).shapes)
    shape = spec.smoke_shapes()[0]
    inputs = spec.make_inputs(shape, device, 0)
    q, s = spec.make_outputs(shape, inputs)
    assert s.stride() == (1, s.shape[0])
    impls_for(spec.name)["ours_triton"].fn(**inputs, out=(q, s))
    rq, rs = spec.reference(**inputs)
    assert torch.equal(s, rs) and torch.all(torch.log2(s) == torch.round(torch.log2(s)))
    assert torch.equal(q.view(torch.uint8), rq.view(torch.uint8))  # power-of-two scales: division is exact
