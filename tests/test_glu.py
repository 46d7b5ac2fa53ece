"""The GLU family: every mode and layout against the fp32 reference, edge cases, errors, API."""
import math
from dataclasses import replace

import pytest
import torch

import solbench
from solbench.kernels.common import interpreting
from solbench.kernels.activation import ActivationSpec, get_activation, known_activations, reference_glu, register_activation

MODES = ["silu", "swish", "swiglu", "gelu", "gelu_tanh", "geglu", "reglu"]
TOL = {torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _close(got, ref, dtype):
    tol = TOL[dtype]
    assert got.dtype == dtype and got.shape == ref.shape
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), ref.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("layout", ["halves", "interleaved"])
def test_modes_match_reference(mode, layout, dtype, device):
    spec = replace(get_activation(mode), layout=layout)
    x = (torch.randn(3, 5, 2 * 37, device=device) * 3).to(dtype)  # odd d, several leading dims
    _close(solbench.glu(x, spec), reference_glu(x, spec), dtype)


def test_parameters_change_the_result(device):
    x = torch.randn(4, 64, device=device) * 4
    base = solbench.glu(x, get_activation("swish"))
    for kw in ({"alpha": 1.702}, {"limit": 1.0}, {"up_shift": 1.0}):
        spec = get_activation("swish", **kw)
        out = solbench.glu(x, spec)
        _close(out, reference_glu(x, spec), torch.float32)
        assert not torch.allclose(out, base), kw


def test_swiglu_matches_gpt_oss_formula(device):
    x = torch.randn(6, 2 * 40, device=device) * 6
    spec = replace(get_activation("swiglu"), layout="interleaved")
    g, u = x[..., ::2], x[..., 1::2]
    g = g.clamp(max=7.0)
    u = u.clamp(-7.0, 7.0)
    expected = (u + 1) * g * torch.sigmoid(1.702 * g)
    _close(solbench.glu(x, spec), expected, torch.float32)


def test_silu_and_mul_api_and_reference_formula(device):
    x = torch.randn(2, 3, 16, device=device)
    expected = torch.nn.functional.silu(x[..., :8]) * x[..., 8:]
    _close(solbench.silu_and_mul(x), expected, torch.float32)
    _close(solbench.gelu_and_mul(x), torch.nn.functional.gelu(x[..., :8]) * x[..., 8:], torch.float32)
    _close(solbench.gelu_tanh_and_mul(x),
           torch.nn.functional.gelu(x[..., :8], approximate="tanh") * x[..., 8:], torch.float32)


def test_gelu_erf_is_accurate_over_the_whole_range_and_the_tail(device):
    # The kernel's gelu uses a closed-form erfc instead of libdevice's erf (it was issue-bound):
    # fp32 results must stay within a few fp32 ulps of the float64 gelu near 0 and keep their
    # relative accuracy in the negative tail, where 1 + erf(g / sqrt 2) cancels.
    g = torch.linspace(-14.0, 14.0, 8193, dtype=torch.float64)
    x = torch.cat([g, torch.ones_like(g)]).float().to(device)[None, :]
    got = solbench.gelu_and_mul(x)[0].double().cpu()
    want = g * 0.5 * torch.special.erfc(-g / math.sqrt(2.0))
    assert torch.isfinite(got).all()
    assert ((got - want).abs() <= 4e-7 * g.abs().clamp_min(1.0)).all()
    tail = (g < -2.0) & (want.abs() > 1e-35)
    assert tail.sum() > 1000
    rel = ((got - want).abs() / want.abs())[tail]
    assert rel.max() < 3e-5, float(rel.max())
    assert rel[g[tail] > -6.0].max() < 5e-6


def _exact_glu(mode: str, g, u):
    """The GLU in float64, from the formulas (not the fp32 reference)."""
    if mode == "gelu":
        return g * 0.5 * torch.special.erfc(-g / math.sqrt(2.0)) * u
    if mode == "gelu_tanh":
        # 0.5 (1 + tanh z) as sigmoid(2 z): the same value without float64's cancellation in the tail
        return g * torch.sigmoid(2.0 * math.sqrt(2.0 / math.pi) * (g + 0.044715 * g**3)) * u
    if mode == "swiglu":  # gpt-oss: alpha 1.702, limit 7
        g, u = g.clamp(max=7.0), u.clamp(-7.0, 7.0)
        return (u + 1.0) * g * torch.sigmoid(1.702 * g)
    return g * torch.sigmoid(g) * u


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")  # the interpreter's sigmoid at |g| = 100
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mode", ["silu", "gelu", "gelu_tanh", "swiglu"])
def test_16bit_outputs_are_one_rounding_of_the_exact_value(mode, dtype, device):
    # 16-bit outputs take shortcuts: a shorter erfc fit for gelu (relative error <= 1e-5) and, on
    # the GPU, reciprocal / exp2 without subnormal fix-ups (kernels/_fastmath_triton.py). The result must still
    # be the correctly rounded exact value but for rare one-ulp flips at rounding midpoints, over
    # the whole range: both tails, values whose sigmoid under- or overflows, and tiny inputs.
    gen = torch.Generator().manual_seed(3)
    g = torch.cat([torch.linspace(-9.0, 9.0, 4001), 2.5 * torch.randn(4000, generator=gen),
                   torch.tensor([-100.0, -60.0, -30.0, -1e-3, -1e-6, 0.0, 1e-6, 1e-3, 30.0, 60.0, 100.0])]).to(dtype)
    u = (1.0 + torch.rand(g.shape, generator=gen)).to(dtype)
    spec = get_activation(mode)
    got = solbench.glu(torch.cat([g, u]).to(device)[None, :], spec)[0].cpu()
    want = _exact_glu(mode, g.double(), u.double()).to(dtype)
    assert torch.isfinite(got).all()
    differ = got != want
    if not (interpreting() and dtype == torch.bfloat16):  # the interpreter truncates fp32 -> bf16
        assert differ.float().mean() < 1e-2, int(differ.sum())
    ulp = torch.finfo(dtype).eps * want.double().abs().clamp_min(torch.finfo(dtype).tiny)
    assert ((got.double() - want.double()).abs()[differ] <= 1.01 * ulp[differ]).all()


def test_fast_math_only_for_16bit_outputs_on_a_compiled_gpu_kernel():
    from solbench.kernels._fastmath_triton import ptx_fast_math

    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert not ptx_fast_math(torch.empty(1, dtype=dtype))  # a CPU tensor: never
    if torch.cuda.is_available() and not interpreting():
        assert ptx_fast_math(torch.empty(1, dtype=torch.bfloat16, device="cuda"))
        assert not ptx_fast_math(torch.empty(1, dtype=torch.float32, device="cuda"))


def test_zero_tokens(device):
    x = torch.empty(0, 64, device=device, dtype=torch.bfloat16)
    out = solbench.silu_and_mul(x)
    assert out.shape == (0, 32)
    x3 = torch.empty(2, 0, 64, device=device)
    assert solbench.silu_and_mul(x3).shape == (2, 0, 32)


def test_non_contiguous_rows_and_out(device):
    wide = torch.randn(7, 100, device=device, dtype=torch.bfloat16)
    x = wide[:, :66]  # row stride 100, last dim contiguous
    assert not x.is_contiguous()
    out_wide = torch.full((7, 50), float("nan"), device=device, dtype=torch.bfloat16)
    out = out_wide[:, :33]
    ret = solbench.silu_and_mul(x, out=out)
    assert ret.data_ptr() == out.data_ptr()
    _close(out, reference_glu(x, get_activation("silu")), torch.bfloat16)
    assert torch.isnan(out_wide[:, 33:]).all(), "wrote outside out's view"


def test_int64_offsets_are_used():
    # The kernel must index rows with 64-bit offsets: a row stride times row count past 2^31.
    import inspect

    from solbench.kernels import _glu_triton as kernel

    src = inspect.getsource(kernel._glu_kernel.fn if hasattr(kernel._glu_kernel, "fn") else kernel._glu_kernel)
    assert "to(tl.int64)" in src


def test_errors_name_what_is_supported(device):
    with pytest.raises(ValueError, match="even"):
        solbench.silu_and_mul(torch.randn(2, 7, device=device))
    with pytest.raises(TypeError, match="supported: bfloat16, float16, float32"):
        solbench.silu_and_mul(torch.randn(2, 8, device=device).to(torch.float64))
    with pytest.raises(ValueError, match="shape"):
        solbench.silu_and_mul(torch.randn(2, 8, device=device), out=torch.empty(2, 8, device=device))
    with pytest.raises(TypeError, match="dtype"):
        solbench.silu_and_mul(torch.randn(2, 8, device=device),
                              out=torch.empty(2, 4, device=device, dtype=torch.float16))
    with pytest.raises(ValueError, match="contiguous in its last dimension"):
        solbench.silu_and_mul(torch.randn(8, 4, device=device).t())
    with pytest.raises(ValueError, match="unknown activation 'mish'; known: .*silu"):
        get_activation("mish")


def test_registry_and_hf_config():
    assert {"silu", "swish", "swiglu", "gelu", "gelu_tanh", "geglu", "reglu"} <= set(known_activations())
    sw = ActivationSpec.from_hf_config({"hidden_act": "swiglu"})
    assert (sw.alpha, sw.limit, sw.up_shift) == (1.702, 7.0, 1.0)

    class Cfg:
        hidden_act = "swiglu"
        swiglu_limit = 10.0

    assert ActivationSpec.from_hf_config(Cfg()).limit == 10.0
    assert ActivationSpec.from_hf_config({"hidden_activation": "gelu_pytorch_tanh"}).kind == "gelu_tanh"
    with pytest.raises(ValueError, match="known"):
        ActivationSpec.from_hf_config({"hidden_act": "nope"})
    with pytest.raises(ValueError, match="hidden_act"):
        ActivationSpec.from_hf_config({})
    register_activation("my_swish2", lambda **kw: ActivationSpec(name="my_swish2", kind="silu", alpha=2.0, **kw))
    assert get_activation("my_swish2").alpha == 2.0
    with pytest.raises(ValueError):
        ActivationSpec(name="x", kind="silu", limit=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        get_activation("gelu", alpha=2.0)


def test_custom_op_passes_opcheck(device):
    # opcheck runs the op for real and under fake tensors, and checks the schema (mutation of out).
    x = torch.randn(4, 64, dtype=torch.bfloat16, device=device)
    out = torch.empty(4, 32, dtype=torch.bfloat16, device=device)
    torch.library.opcheck(torch.ops.solbench.glu.out, (x, out, 0, 1.0, 0.0, False, 0.0, False),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.gpu
def test_under_torch_compile_and_cuda_graph():
    x = torch.randn(64, 512, device="cuda", dtype=torch.bfloat16)
    ref = reference_glu(x, get_activation("silu"))

    @torch.compile(fullgraph=True)
    def f(t):
        return solbench.silu_and_mul(t) * 2

    _close(f(x), ref * 2, torch.bfloat16)
    out = torch.empty(64, 256, device="cuda", dtype=torch.bfloat16)
    solbench.silu_and_mul(x, out=out)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        solbench.silu_and_mul(x, out=out)
    out.fill_(float("nan"))
    x.copy_(torch.randn_like(x))
    g.replay()
    torch.cuda.synchronize()
    _close(out, reference_glu(x, get_activation("silu")), torch.bfloat16)


@pytest.mark.gpu
def test_large_offsets_past_int32():
    # 2^31 + change elements in x: row offsets overflow int32 unless computed in int64.
    rows, d = (1 << 20) + 3, 1024
    x = torch.randn(rows, 2 * d, device="cuda", dtype=torch.bfloat16)
    out = solbench.silu_and_mul(x)
    tail = x[-4:]
    _close(out[-4:], reference_glu(tail, get_activation("silu")), torch.bfloat16)
    assert math.prod(x.shape) > 2**31


@pytest.mark.gpu
def test_exported_candidate_is_bit_identical_to_ours():
    # examples/candidates/silu_and_mul_ours_triton.py is what `eval` times to reproduce `run`:
    # the same launch rule and math must give the same bits (decode, small and large shapes).
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "candidates" / "silu_and_mul_ours_triton.py"
    spec = importlib.util.spec_from_file_location("exported_candidate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for shape in ((1, 1536), (183, 2048), (128, 4096), (4096, 5120), (3, 7, 2 * 1000)):
        for dtype in (torch.bfloat16, torch.float16, torch.float32):
            x = torch.randn(shape, device="cuda", dtype=dtype) * 4
            assert torch.equal(mod.silu_and_mul(x), solbench.silu_and_mul(x)), (shape, dtype)


def test_a_regular_tuned_glu_tile_still_fills_the_sms(monkeypatch):
    from dataclasses import astuple

    from solbench.kernels import glu
    from solbench.runtime import tuning

    monkeypatch.setattr(tuning, "sm_count", lambda: 132)
    tile = {"block_m": 2, "block_n": 2048, "num_warps": 8}
    with tuning.overriding(glu.KERNEL_ERF, 2048, tile):
        # gelu #10 on the H200: 183 rows of d = 2048 packed 2 per program ran on 92 of 132 SMs
        assert astuple(glu.glu_options(183, 2048, 2, glu.ACT_GELU_ERF)) == (1, 2048, 4)
        assert astuple(glu.glu_options(100_000, 2048, 2, glu.ACT_GELU_ERF)) == (2, 2048, 8)
    with tuning.overriding(glu.KERNEL + tuning.FEW_ROWS_SUFFIX, 2048, tile):
        assert astuple(glu.glu_options(183, 2048, 2, 0)) == (2, 2048, 8)


def test_a_glu_launch_takes_the_options_it_is_given(device):
    # An argument wins over the tuned table and first principles; block_m is still capped by the rows.
    from solbench.kernels import _glu_triton
    from solbench.kernels.glu import GluOptions, glu_options

    assert glu_options(3, 64, options=GluOptions(8, 32, 1)) == GluOptions(4, 32, 1)
    launched = []
    kernel = _glu_triton._glu_kernel

    class Recorder:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                launched.append((grid, kwargs["BLOCK_M"], kwargs["BLOCK_N"], kwargs["num_warps"]))
                return kernel[grid](*args, **kwargs)
            return launch

    x = torch.randn(3, 128, device=device, dtype=torch.bfloat16)
    out = torch.empty(3, 64, device=device, dtype=torch.bfloat16)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_glu_triton, "_glu_kernel", Recorder())
        _glu_triton.launch_glu(x, out, 0, 1.0, None, 0.0, False, options=GluOptions(2, 32, 1))
    assert launched == [((2, 2), 2, 32, 1)]
    _close(out, reference_glu(x, get_activation("silu")), torch.bfloat16)
