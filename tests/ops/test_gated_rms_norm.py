"""gated_rms_norm: cost model, both gate orders of sglang/fla rms_norm_gated, group norms, our
kernel."""
import pytest
import torch
import torch.nn.functional as F

from _rownorm_testing import assert_close, wide_rows
from solbench.core.spec import get_spec
from solbench.kernels.rownorm import gated_rms_norm

SPEC = get_spec("gated_rms_norm")


def test_cost_hand_count():
    # Catalog #0: 352864 rows of 128. Read x, z, weight; write out. 9 FLOPs per element + 4 per row.
    shape = next(s for s in SPEC.shapes if s.id == 0)
    c = SPEC.cost(shape)
    assert c.bytes_read == (2 * 352864 * 128 + 128) * 2
    assert c.bytes_written == 352864 * 128 * 2
    assert c.flops == {"fp32": 9 * 352864 * 128 + 4 * 352864}
    assert all(s.smoke and s["rows"] <= 64 and s["norm_before_gate"] for s in SPEC.smoke_shapes())


def test_reference_gate_orders_and_groups():
    x = torch.tensor([[3.0, 4.0]])
    z = torch.tensor([[1.0, -2.0]])
    w = torch.tensor([1.0, 0.5])
    silu = F.silu(z)
    r = (12.5 + 1e-6) ** 0.5
    torch.testing.assert_close(SPEC.reference(x, z, w, 1e-6, True), torch.tensor([[3 / r, 2 / r]]) * silu)
    v = x * silu
    expect = v / torch.sqrt(v.square().mean() + 1e-6) * w
    torch.testing.assert_close(SPEC.reference(x, z, w, 1e-6, False), expect)
    # Two groups of 1: each channel normalized alone -> sign(x) * w * silu(z) (eps 0).
    torch.testing.assert_close(SPEC.reference(x, z, w, 0.0, True, group_size=1), w * silu)


@pytest.mark.parametrize("n,before", [(1, True), (96, False), (129, True)])
def test_odd_sizes_both_orders(n, before, device):
    g = torch.Generator(device=device).manual_seed(n)
    x, z, w = (torch.randn(*s, generator=g, device=device).to(torch.bfloat16) for s in ((7, n), (7, n), (n,)))
    assert_close(gated_rms_norm(x, z, w, 1e-6, norm_before_gate=before), SPEC.reference(x, z, w, 1e-6, before))


def test_groups_strided_rows_out_and_zero_rows(device):
    x, z = (torch.randn(5, 64, device=device).to(torch.bfloat16) for _ in range(2))
    w = torch.randn(64, device=device).to(torch.bfloat16)
    ref = SPEC.reference(x, z, w, 1e-6, True, group_size=16)
    out = torch.full_like(x, float("nan"))
    assert gated_rms_norm(wide_rows(x), wide_rows(z, 3), w, group_size=16, out=out) is out
    assert_close(out, ref)
    e = torch.empty(0, 64, device=device, dtype=torch.bfloat16)
    assert gated_rms_norm(e, e, w).shape == (0, 64)


def test_errors(device):
    x = torch.randn(2, 12, device=device)
    w = torch.ones(12, device=device)
    with pytest.raises(ValueError, match="group_size 5 must divide the hidden size 12"):
        gated_rms_norm(x, x.clone(), w, group_size=5)
    with pytest.raises(ValueError, match="z must have x's shape"):
        gated_rms_norm(x, x[:1].clone(), w)
    with pytest.raises(ValueError, match="activation 'sigmoid' is not supported"):
        gated_rms_norm(x, x.clone(), w, activation="sigmoid")


def test_custom_op_passes_opcheck(device):
    x, z = (torch.randn(3, 32, device=device).to(torch.bfloat16) for _ in range(2))
    w = torch.randn(32, device=device).to(torch.bfloat16)
    torch.library.opcheck(torch.ops.solbench.gated_rms_norm.out,
                          (x, z, w, None, torch.empty_like(x), 1e-6, True, 32),
                          test_utils=("test_schema", "test_faketensor"))
