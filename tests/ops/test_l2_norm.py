"""l2_norm: cost model, upstream eps placement (added to the sum of squares), our kernel."""
import math

import pytest
import torch

from _rownorm_testing import assert_close, wide_rows
from solbench.core.spec import get_spec
from solbench.kernels.rownorm import l2_norm

SPEC = get_spec("l2_norm")


def test_cost_hand_count():
    # Catalog #1: tokens 128, hidden 2048: read x, write out, 3 FLOPs per element + 3 per row.
    shape = next(s for s in SPEC.shapes if s.id == 1)
    c = SPEC.cost(shape)
    assert (c.bytes_read, c.bytes_written) == (128 * 2048 * 2, 128 * 2048 * 2)
    assert c.flops == {"fp32": 3 * 128 * 2048 + 3 * 128}


def test_reference_puts_eps_inside_the_sum():
    # x = [3, 4]: sum of squares 25. With eps = 11 the norm is sqrt(36) = 6, not 5 + ... or max(5, eps).
    x = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(SPEC.reference(x, 11.0), torch.tensor([[0.5, 4 / 6]]))
    torch.testing.assert_close(SPEC.reference(x, 0.0), torch.tensor([[0.6, 0.8]]))


@pytest.mark.parametrize("n", [1, 45, 257])
def test_odd_sizes(n, device):
    x = torch.randn(6, n, device=device).to(torch.bfloat16)
    got = l2_norm(x, 1e-6)
    assert_close(got, SPEC.reference(x, 1e-6), scale=1 / math.sqrt(n))


def test_fp32_strided_rows_out_and_zero_tokens(device):
    x = torch.randn(2, 3, 64, device=device)
    assert_close(l2_norm(x), SPEC.reference(x, 1e-6))
    xs = wide_rows(x.reshape(6, 64).to(torch.float16))
    out = torch.full((6, 64), float("nan"), device=device, dtype=torch.float16)
    assert l2_norm(xs, out=out) is out
    assert_close(out, SPEC.reference(xs, 1e-6), scale=0.1)
    assert l2_norm(torch.empty(0, 64, device=device)).shape == (0, 64)
    # A zero row stays finite: eps keeps the denominator positive.
    assert torch.equal(l2_norm(torch.zeros(1, 8, device=device)), torch.zeros(1, 8, device=device))


def test_errors(device):
    x = torch.randn(2, 8, device=device)
    with pytest.raises(TypeError, match="supported"):
        l2_norm(x.double())
    with pytest.raises(TypeError, match="out has dtype"):
        l2_norm(x, out=torch.empty(2, 8, device=device, dtype=torch.float16))


def test_custom_op_passes_opcheck(device):
    x = torch.randn(3, 24, device=device).to(torch.bfloat16)
    torch.library.opcheck(torch.ops.solbench.l2_norm.out, (x, torch.empty_like(x), 1e-6),
                          test_utils=("test_schema", "test_faketensor"))
