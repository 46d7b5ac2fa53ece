"""layer_norm: cost model (x plus the affine weight and bias), reference against F.layer_norm in
float64, our kernel including the three-pass chunked path."""
import pytest
import torch
import torch.nn.functional as F

from _rownorm_testing import assert_close, wide_rows
from solbench.kernels import rowwise
from solbench.core.spec import get_spec
from solbench.kernels.rownorm import layer_norm

SPEC = get_spec("layer_norm")


def test_cost_hand_count():
    # Catalog #0: shape (276, 1, 1152) -> 276 rows of 1152. Read x, weight, bias; write out.
    shape = next(s for s in SPEC.shapes if s.id == 0)
    c = SPEC.cost(shape)
    assert c.bytes_read == (276 * 1152 + 2 * 1152) * 2
    assert c.bytes_written == 276 * 1152 * 2
    assert c.flops == {"fp32": 7 * 276 * 1152 + 5 * 276}


def test_reference_hand_example_and_float64_layer_norm():
    # x = [1, 3]: mean 2, biased var 1 -> (x - 2) / sqrt(1 + eps) = [-1, 1] (eps 0).
    x = torch.tensor([[1.0, 3.0]])
    w, b = torch.tensor([2.0, 3.0]), torch.tensor([0.5, -0.5])
    torch.testing.assert_close(SPEC.reference(x, w, b, 0.0), torch.tensor([[-1.5, 2.5]]))
    x = torch.randn(4, 33) * 3 + 1
    w, b = torch.randn(33), torch.randn(33)
    expect = F.layer_norm(x.double(), (33,), w.double(), b.double(), 1e-5).float()
    torch.testing.assert_close(SPEC.reference(x, w, b, 1e-5), expect)


@pytest.mark.parametrize("n", [1, 2, 131, 300])
def test_odd_sizes(n, device):
    x = (torch.randn(5, n, device=device) * 2 + 1.5).to(torch.bfloat16)
    w = torch.randn(n, device=device).to(torch.bfloat16)
    b = torch.randn(n, device=device).to(torch.bfloat16)
    assert_close(layer_norm(x, w, b, 1e-5), SPEC.reference(x, w, b, 1e-5))


def test_no_affine_strided_out_zero_tokens_and_chunked(device, monkeypatch):
    x = (torch.randn(4, 1, 100, device=device) * 3 - 2).to(torch.bfloat16)
    ones = torch.ones(100, device=device, dtype=torch.bfloat16)
    zeros = torch.zeros(100, device=device, dtype=torch.bfloat16)
    ref = SPEC.reference(x, ones, zeros, 1e-5)
    assert_close(layer_norm(x), ref)
    out = torch.full((4, 100), float("nan"), device=device, dtype=torch.bfloat16)
    layer_norm(wide_rows(x.reshape(4, 100)), out=out)
    assert_close(out, ref.reshape(4, 100))
    assert layer_norm(torch.empty(0, 1, 100, device=device, dtype=torch.bfloat16)).shape == (0, 1, 100)
    monkeypatch.setattr(rowwise, "MAX_WHOLE_ROW", 64)
    monkeypatch.setattr(rowwise, "CHUNK_N", 32)
    assert_close(layer_norm(x), ref)


def test_errors(device):
    x = torch.randn(2, 8, device=device)
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\)"):
        layer_norm(x, torch.ones(8, device=device), torch.zeros(9, device=device))
    with pytest.raises(ValueError, match="weight must be contiguous"):
        layer_norm(x, torch.ones(16, device=device)[::2])


def test_custom_op_passes_opcheck(device):
    x = torch.randn(3, 24, device=device).to(torch.bfloat16)
    w = torch.randn(24, device=device).to(torch.bfloat16)
    torch.library.opcheck(torch.ops.solbench.layer_norm.out, (x, w, None, torch.empty_like(x), 1e-5),
                          test_utils=("test_schema", "test_faketensor"))
