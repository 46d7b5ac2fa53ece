"""rms_norm: cost model, reference semantics, and our Triton kernel (interpreted on CPU)."""
import math

import pytest
import torch

from _rownorm_testing import assert_close, wide_rows
from solbench.kernels import rowwise
from solbench.core.spec import get_spec
from solbench.kernels.rownorm import rms_norm

SPEC = get_spec("rms_norm")


def test_cost_hand_count():
    # Catalog #52: tokens 1688, hidden 7168, bf16.
    shape = next(s for s in SPEC.shapes if s.id == 52)
    c = SPEC.cost(shape)
    assert c.bytes_read == 1688 * 7168 * 2 + 7168 * 2          # x + weight
    assert c.bytes_written == 1688 * 7168 * 2                  # out
    assert c.flops == {"fp32": 4 * 1688 * 7168 + 4 * 1688}


def test_reference_hand_example():
    # x = [3, 4]: mean(x^2) = 12.5, so out = x / sqrt(12.5 + eps) * w.
    x = torch.tensor([[3.0, 4.0]])
    w = torch.tensor([1.0, 2.0])
    r = math.sqrt(12.5 + 1e-6)
    torch.testing.assert_close(SPEC.reference(x, w, 1e-6), torch.tensor([[3 / r, 8 / r]]))


def _ref(x, w, eps=1e-6):
    return SPEC.reference(x, w, eps)


@pytest.mark.parametrize("n", [1, 7, 129, 300])
def test_odd_hidden_sizes(n, device):
    g = torch.Generator(device=device).manual_seed(n)
    x = torch.randn(5, n, generator=g, device=device).to(torch.bfloat16)
    w = torch.randn(n, generator=g, device=device).to(torch.bfloat16)
    assert_close(rms_norm(x, w, 1e-6), _ref(x, w))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_dtypes(dtype, device):
    x = torch.randn(9, 96, device=device, dtype=dtype)
    w = torch.randn(96, device=device, dtype=dtype)
    assert_close(rms_norm(x, w, 1e-5), _ref(x, w, 1e-5))


def test_zero_tokens_leading_dims_strided_rows_and_out(device):
    w = torch.randn(40, device=device).to(torch.bfloat16)
    empty = torch.empty(0, 40, device=device, dtype=torch.bfloat16)
    assert rms_norm(empty, w).shape == (0, 40)
    x = torch.randn(2, 3, 40, device=device).to(torch.bfloat16)
    assert_close(rms_norm(x, w), _ref(x, w))
    xs = wide_rows(x.reshape(6, 40))
    out = torch.full((6, 40), float("nan"), device=device, dtype=torch.bfloat16)
    assert rms_norm(xs, w, out=out) is out
    assert_close(out, _ref(xs, w))
    # out may have a row stride of its own.
    out_wide = torch.full((6, 48), float("nan"), device=device, dtype=torch.bfloat16)[:, :40]
    rms_norm(xs, w, out=out_wide)
    assert_close(out_wide, _ref(xs, w))


def test_long_rows_take_the_chunked_path(device, monkeypatch):
    monkeypatch.setattr(rowwise, "MAX_WHOLE_ROW", 64)
    monkeypatch.setattr(rowwise, "CHUNK_N", 32)
    x = torch.randn(3, 100, device=device).to(torch.bfloat16)
    w = torch.randn(100, device=device).to(torch.bfloat16)
    assert rowwise.row_options(100, 3).chunked
    assert_close(rms_norm(x, w), _ref(x, w))


def test_errors_name_what_is_supported(device):
    x = torch.randn(4, 16, device=device).to(torch.bfloat16)
    w = torch.randn(16, device=device).to(torch.bfloat16)
    with pytest.raises(TypeError, match="supported: bfloat16, float16, float32"):
        rms_norm(x.to(torch.int32), w)
    with pytest.raises(ValueError, match=r"weight must have shape \(16,\)"):
        rms_norm(x, w[:8])
    with pytest.raises(ValueError, match="out has shape"):
        rms_norm(x, w, out=torch.empty(4, 8, device=device, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="out overlaps x"):
        rms_norm(x, w, out=x)
    with pytest.raises(ValueError, match="contiguous in its last dimension"):
        rms_norm(x.t(), torch.randn(4, device=device).to(torch.bfloat16))
    with pytest.raises(ValueError, match="hidden size 0 is not supported"):
        rms_norm(torch.empty(3, 0, device=device, dtype=torch.bfloat16), torch.empty(0, device=device))


def test_custom_op_passes_opcheck(device):
    x = torch.randn(3, 24, device=device).to(torch.bfloat16)
    w = torch.randn(24, device=device).to(torch.bfloat16)
    out = torch.empty_like(x)
    torch.library.opcheck(torch.ops.solbench.rms_norm.out, (x, w, out, 1e-6),
                          test_utils=("test_schema", "test_faketensor"))


HAS_CUDA = torch.cuda.is_available()


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_under_torch_compile_and_cuda_graph():
    x = torch.randn(100, 1152, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(1152, device="cuda", dtype=torch.bfloat16)

    @torch.compile(fullgraph=True)
    def f(t):
        return rms_norm(t, w) * 2

    assert_close(f(x), _ref(x, w) * 2, scale=2)
    out = torch.empty_like(x)
    rms_norm(x, w, out=out)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        rms_norm(x, w, out=out)
    out.fill_(float("nan"))
    x.copy_(torch.randn_like(x))
    g.replay()
    torch.cuda.synchronize()
    assert_close(out, _ref(x, w))


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_large_offsets_past_int32():
    # 2^31 + change elements: row offsets overflow int32 unless computed in int64.
    rows, n = (1 << 21) + 3, 1024
    x = torch.randn(rows, n, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(n, device="cuda", dtype=torch.bfloat16)
    out = rms_norm(x, w)
    assert x.numel() > 2**31
    assert_close(out[-4:], _ref(x[-4:], w))
