"""The JIT CUDA GLU kernels on a GPU: correct on every catalog shape of the four GLU operators
(fast math on and off), every dtype, both layouts, unaligned views (the scalar path), leading dims,
``out=`` with a row stride, CUDA-graph capture, torch.compile, PDL on and off, int64 offsets.
Skipped without a CUDA device or without NVRTC."""
import json

import pytest
import torch

from solbench.kernels.cuda import jit

if not torch.cuda.is_available():
    pytest.skip("needs a CUDA device", allow_module_level=True)
if jit.nvrtc_unavailable_reason():
    pytest.skip(f"no NVRTC: {jit.nvrtc_unavailable_reason()}", allow_module_level=True)

from solbench.core.spec import get_spec  # noqa: E402
from solbench.kernels.common import OPS  # noqa: E402
from solbench.kernels.cuda import glu as cglu  # noqa: E402
from solbench.kernels.activation import get_activation, reference_glu  # noqa: E402
from solbench.ops.silu_and_mul.spec import GLU_SPECS  # noqa: E402

pytestmark = pytest.mark.gpu
ARCH = 10 * torch.cuda.get_device_capability()[0] + torch.cuda.get_device_capability()[1]


@pytest.fixture(autouse=True, scope="module")
def _unlist_glu_cuda_ops():
    # As in test_jit_cuda.py: glu_cuda is not in test_library's opcheck table yet.
    yield
    for name in ("solbench::glu_cuda.out", "solbench::glu_cuda"):
        OPS.pop(name, None)


@pytest.fixture
def policy(monkeypatch):
    """Set SOLBENCH_CUDA_FAST_MATH / SOLBENCH_CUDA_PDL for one test and forget the loaded kernels."""
    def set_(fast_math=None, pdl=None):
        for env, value in (("SOLBENCH_CUDA_FAST_MATH", fast_math), ("SOLBENCH_CUDA_PDL", pdl)):
            if value is None:
                monkeypatch.delenv(env, raising=False)
            else:
                monkeypatch.setenv(env, value)
        cglu.reset()

    yield set_
    monkeypatch.delenv("SOLBENCH_CUDA_FAST_MATH", raising=False)
    monkeypatch.delenv("SOLBENCH_CUDA_PDL", raising=False)
    cglu.reset()


def _close(out, x, spec, what):
    ref = reference_glu(x, spec)
    tol = GLU_SPECS["silu_and_mul"].tolerance(None)
    assert torch.isfinite(out).all(), what
    torch.testing.assert_close(out.float(), ref.float(), atol=tol.atol, rtol=tol.rtol, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("fast_math", ["1", "0"])
@pytest.mark.parametrize("op", sorted(GLU_SPECS))
def test_every_catalog_shape(op, fast_math, policy):
    policy(fast_math=fast_math)
    spec = get_spec(op)
    for i, shape in enumerate(spec.shapes):
        x = spec.make_inputs(shape, torch.device("cuda"), seed=i)["x"]
        out = torch.full((*x.shape[:-1], x.shape[-1] // 2), float("nan"), dtype=x.dtype, device="cuda")
        cglu.glu(x, spec.activation, out=out)
        _close(out, x, spec.activation, f"{op} #{shape.id} {tuple(x.shape)} fast_math={fast_math}")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("name,layout", [("silu", "halves"), ("gelu", "halves"), ("gelu_tanh", "halves"),
                                         ("swiglu", "interleaved"), ("relu", "halves"), ("swiglu", "halves")])
def test_dtypes_layouts_and_alignments(dtype, name, layout):
    spec = get_activation(name, layout=layout)
    for shape, offset in (((7, 2 * 16), 0), ((83, 2 * 1024), 0), ((3, 5, 2 * 24), 0), ((1, 2 * 4100), 0),
                          ((9, 2 * 100), 1), ((4, 2 * 6), 2)):
        big = torch.randn(*shape[:-1], shape[-1] + 8, device="cuda").mul(3).to(dtype)
        x = big[..., offset:offset + shape[-1]]  # offset: misaligned rows take a narrower (or scalar) path
        out = cglu.glu(x, spec)
        _close(out, x, spec, f"{name}/{layout} {dtype} {shape} offset {offset}")


def test_out_with_row_stride_leading_dims_and_zero_tokens():
    x = torch.randn(2, 3, 256, device="cuda", dtype=torch.bfloat16)
    big = torch.full((2, 3, 200), float("nan"), device="cuda", dtype=torch.bfloat16)
    out = big[..., :128]
    assert cglu.silu_and_mul(x, out=out) is out
    _close(out, x, get_activation("silu"), "row-strided out")
    assert torch.isnan(big[..., 128:]).all()  # nothing written past each row
    empty = torch.empty(0, 256, device="cuda", dtype=torch.bfloat16)
    assert cglu.gelu_and_mul(empty).shape == (0, 128)


@pytest.mark.parametrize("pdl", ["1", "0"] if ARCH >= 90 else ["0"])
def test_cuda_graph_capture_and_pdl(pdl, policy):
    policy(pdl=pdl)
    x = torch.randn(64, 1024, device="cuda", dtype=torch.bfloat16)
    h = torch.empty(64, 512, device="cuda", dtype=torch.bfloat16)
    y = torch.empty(64, 256, device="cuda", dtype=torch.bfloat16)
    cglu.silu_and_mul(x, out=h)  # compile and load both before capture
    cglu.gelu_tanh_and_mul(h, out=y)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        cglu.silu_and_mul(x, out=h)
        cglu.gelu_tanh_and_mul(h, out=y)  # depends on the first: PDL must keep the order
    for _ in range(3):
        x.normal_()
        h.fill_(float("nan"))
        y.fill_(float("nan"))
        g.replay()
        torch.cuda.synchronize()
        _close(h, x, get_activation("silu"), "graph, first kernel")
        _close(y, h, get_activation("gelu_tanh"), "graph, dependent kernel")


@pytest.mark.skipif(ARCH < 90, reason="PDL needs sm_90+")
def test_pdl_chain_in_one_stream_keeps_dependencies():
    x = torch.randn(512, 4096, device="cuda", dtype=torch.bfloat16)
    for pdl in (True, False):
        h = torch.empty(512, 2048, device="cuda", dtype=torch.bfloat16)
        y = torch.empty(512, 1024, device="cuda", dtype=torch.bfloat16)
        for _ in range(5):
            h.fill_(float("nan"))
            cglu.launch_glu(x, h, 0, 1.0, None, 0.0, False, pdl=pdl)
            cglu.launch_glu(h, y, 0, 1.0, None, 0.0, False, pdl=pdl)
        torch.cuda.synchronize()
        _close(y, h, get_activation("silu"), f"chain pdl={pdl}")


def test_torch_compile_fullgraph():
    x = torch.randn(33, 512, device="cuda", dtype=torch.bfloat16)
    f = torch.compile(lambda t: cglu.glu(t, "silu") * 2, fullgraph=True, dynamic=True)
    torch.testing.assert_close(f(x), reference_glu(x, get_activation("silu")) * 2, atol=2e-2, rtol=2e-2)


def test_prepare_reports_first_use_and_cache(policy, tmp_path, monkeypatch):
    monkeypatch.setenv("SOLBENCH_CUDA_CACHE", str(tmp_path))
    policy()
    first = cglu.prepare(torch.bfloat16, "gelu", device="cuda")
    assert first["jit_cache"] == "miss" and first["jit_first_use_s"] > 0
    assert first["arch"] == f"sm_{ARCH}" and first["fast_math"] == (80 <= ARCH < 100) and first["pdl"] == (ARCH >= 90)
    assert cglu.prepare(torch.bfloat16, "gelu", device="cuda")["jit_cache"] == "memory"
    cglu.reset()
    assert cglu.prepare(torch.bfloat16, "gelu", device="cuda")["jit_cache"] == "disk"


@pytest.mark.slow
def test_int64_offsets_past_2_31_elements():
    if torch.cuda.get_device_properties(0).total_memory < 24 * 2**30:
        pytest.skip("needs 24 GiB of GPU memory")
    rows, d = (1 << 31) // 4096 + 3, 2048  # x holds more than 2^31 elements
    x = torch.randn(rows, 2 * d, device="cuda", dtype=torch.bfloat16)
    out = cglu.silu_and_mul(x)
    tail = slice(rows - 5, rows)
    _close(out[tail], x[tail], get_activation("silu"), "rows past 2^31 elements")
    del x, out
    torch.cuda.empty_cache()


@pytest.mark.skipif(ARCH < 90, reason="PDL needs sm_90+")
def test_pdl_chain_tool_writes_both_timings(tmp_path):
    from solbench import pdl_chain

    out = tmp_path / "pdl.jsonl"
    pdl_chain.main(["--tokens", "1,64", "--d", "1024", "--out", str(out)])
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["tokens"] for r in rows] == [1, 64]
    for r in rows:
        assert r["us_per_pair_no_pdl"] > 0 and r["us_per_pair_pdl"] > 0
        assert r["timing_pdl"]["mode"] == "graph" and r["timing_no_pdl"]["mode"] == "graph"


def test_public_glu_backends_agree_on_the_gpu():
    import solbench

    x = torch.randn(300, 2 * 1000, device="cuda", dtype=torch.bfloat16)
    ref = reference_glu(x, get_activation("gelu_tanh"))
    for backend in ("auto", "triton", "cuda"):
        torch.testing.assert_close(solbench.glu(x, "gelu_tanh", backend=backend), ref, atol=2e-2, rtol=2e-2)
