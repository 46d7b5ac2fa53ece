"""fused_qk_rmsnorm: cost model (in place: q and k heads only), per-head semantics with separate
q/k weights and v untouched, our kernel in and out of place."""
import pytest
import torch

from _rownorm_testing import assert_close, wide_rows
from solbench.core.spec import get_spec
from solbench.kernels.rownorm import fused_qk_rmsnorm, fused_qk_rmsnorm_

SPEC = get_spec("fused_qk_rmsnorm")


def test_cost_hand_count():
    # Catalog #0: 1 token, 64 q heads, 8 kv heads, head dim 128, fp16, in place:
    # read and write the 72 q/k heads, read both weights; the 8 v heads are not touched.
    shape = next(s for s in SPEC.shapes if s.id == 0)
    c = SPEC.cost(shape)
    assert c.bytes_read == (72 * 128 + 2 * 128) * 2
    assert c.bytes_written == 72 * 128 * 2
    assert c.flops == {"fp32": 4 * 72 * 128 + 4 * 72}


def test_reference_against_a_loop_over_heads():
    h, kv, d = 3, 2, 8
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, (h + 2 * kv) * d, generator=g)
    qw, kw = torch.randn(d, generator=g), torch.randn(d, generator=g)
    got = SPEC.reference(x, qw, kw, h, kv, d, 1e-6)
    for t in range(2):
        for head in range(h + 2 * kv):
            seg = slice(head * d, (head + 1) * d)
            v = x[t, seg].double()
            if head < h + kv:
                w = qw if head < h else kw
                expect = v / torch.sqrt(v.square().mean() + 1e-6) * w.double()
            else:
                expect = v  # v heads untouched
            torch.testing.assert_close(got[t, seg].double(), expect, rtol=1e-6, atol=1e-6)


def _inputs(t, h, kv, d, device, dtype=torch.float16):
    g = torch.Generator(device=device).manual_seed(h * 100 + kv)
    mk = lambda *s: torch.randn(*s, generator=g, device=device).to(dtype)  # noqa: E731
    return mk(t, (h + 2 * kv) * d), mk(d), mk(d)


@pytest.mark.parametrize("t,h,kv,d", [(1, 4, 1, 7), (3, 5, 2, 64), (2, 6, 0, 33)])
def test_in_place_odd_shapes(t, h, kv, d, device):
    x, qw, kw = _inputs(t, h, kv, d, device)
    ref = SPEC.reference(x, qw, kw, h, kv, d, 1e-6)
    v = x[:, (h + kv) * d:].clone()
    assert fused_qk_rmsnorm_(x, qw, kw, h, kv, d, 1e-6) is x
    assert_close(x, ref)
    assert torch.equal(x[:, (h + kv) * d:], v)


def test_out_of_place_bf16_strided_and_zero_tokens(device):
    x, qw, kw = _inputs(3, 4, 2, 16, device, torch.bfloat16)
    ref = SPEC.reference(x, qw, kw, 4, 2, 16, 1e-6)
    x0 = x.clone()
    out = torch.full_like(x, float("nan"))
    assert fused_qk_rmsnorm(wide_rows(x, 8), qw, kw, 4, 2, 16, out=out) is out
    assert_close(out, ref)
    assert torch.equal(x, x0)
    e = torch.empty(0, 8 * 16, device=device, dtype=torch.bfloat16)
    assert fused_qk_rmsnorm_(e, qw, kw, 4, 2, 16).shape == (0, 128)


def test_errors(device):
    x, qw, kw = _inputs(2, 4, 2, 16, device)
    with pytest.raises(ValueError, match=r"must be \(head_num \+ 2 \* kv_head_num\) \* size_per_head = 144"):
        fused_qk_rmsnorm_(x, qw, kw, 5, 2, 16)
    with pytest.raises(ValueError, match=r"k_weight must have shape \(16,\)"):
        fused_qk_rmsnorm_(x, qw, kw[:8], 4, 2, 16)
    with pytest.raises(ValueError, match="head_num >= 1"):
        fused_qk_rmsnorm_(x, qw, kw, 0, 4, 16)


def test_custom_ops_pass_opcheck(device):
    x, qw, kw = _inputs(2, 4, 2, 16, device)
    torch.library.opcheck(torch.ops.solbench.fused_qk_rmsnorm_.default, (x.clone(), qw, kw, 4, 2, 16, 1e-6),
                          test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(torch.ops.solbench.fused_qk_rmsnorm.out,
                          (x, qw, kw, torch.empty_like(x), 4, 2, 16, 1e-6),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_in_place_under_torch_compile():
    x, qw, kw = _inputs(8, 32, 8, 128, "cuda")
    ref = SPEC.reference(x, qw, kw, 32, 8, 128, 1e-6)

    @torch.compile(fullgraph=True)
    def f(t):
        fused_qk_rmsnorm_(t, qw, kw, 32, 8, 128, 1e-6)
        return t * 1

    assert_close(f(x.clone()), ref)
