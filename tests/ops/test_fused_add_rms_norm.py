"""fused_add_rms_norm: cost model, upstream semantics (the norm of the *rounded* sum, both
outputs), and our kernel in and out of place."""
import pytest
import torch

from _rownorm_testing import assert_close, wide_rows
from solbench.kernels import rowwise
from solbench.core.spec import get_spec
from solbench.kernels.rownorm import fused_add_rms_norm, fused_add_rms_norm_

SPEC = get_spec("fused_add_rms_norm")


def test_cost_hand_count():
    # Catalog #0: tokens 24752, hidden 1280. Read x, residual, weight; write out, residual.
    shape = next(s for s in SPEC.shapes if s.id == 0)
    c = SPEC.cost(shape)
    assert c.bytes_read == (2 * 24752 * 1280 + 1280) * 2
    assert c.bytes_written == 2 * 24752 * 1280 * 2
    assert c.flops == {"fp32": 5 * 24752 * 1280 + 4 * 24752}


def test_reference_matches_a_per_token_loop_over_the_rounded_sum():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 33, generator=g).to(torch.bfloat16)
    res = (8 * torch.randn(4, 33, generator=g)).to(torch.bfloat16)
    w = torch.randn(33, generator=g).to(torch.bfloat16)
    out, s = SPEC.reference(x, res, w, 1e-6)
    for t in range(4):
        st = (x[t].double() + res[t].double()).to(torch.bfloat16)   # upstream adds in bf16
        assert torch.equal(s[t], st)
        v = st.double()
        expect = (v / torch.sqrt((v * v).sum() / 33 + 1e-6) * w.double()).to(torch.bfloat16)
        assert torch.equal(out[t], expect)


def assert_out_close(got, ref):
    # The stored sum is rounded once, and the output once more from it: two roundings.
    assert_close(got, ref, roundings=2)


def _inputs(t, n, device, seed=0):
    g = torch.Generator(device=device).manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, device=device).to(torch.bfloat16)  # noqa: E731
    return mk(t, n), 4 * mk(t, n), mk(n)


@pytest.mark.parametrize("n", [1, 77, 260])
def test_out_of_place_odd_sizes(n, device):
    x, r, w = _inputs(5, n, device, n)
    x0, r0 = x.clone(), r.clone()
    out, s = fused_add_rms_norm(x, r, w, 1e-6)
    ref_out, ref_s = SPEC.reference(x, r, w, 1e-6)
    assert_close(s, ref_s, scale=4)
    assert_out_close(out, ref_out)
    assert torch.equal(x, x0) and torch.equal(r, r0)


def test_in_place_like_vllm(device):
    x, r, w = _inputs(6, 50, device)
    ref_out, ref_s = SPEC.reference(x, r, w, 1e-6)
    xo, ro = fused_add_rms_norm_(x, r, w, 1e-6)
    assert xo is x and ro is r
    assert_close(r, ref_s, scale=4)
    assert_out_close(x, ref_out)


def test_out_pair_strided_x_zero_tokens_and_chunked(device, monkeypatch):
    x, r, w = _inputs(4, 100, device)
    ref_out, ref_s = SPEC.reference(x, r, w, 1e-6)
    outs = (torch.full_like(x, float("nan")), torch.full_like(x, float("nan")))
    got = fused_add_rms_norm(wide_rows(x), r, w, 1e-6, out=outs)
    assert got[0] is outs[0] and got[1] is outs[1]
    assert_out_close(got[0], ref_out)
    assert_close(got[1], ref_s, scale=4)
    e = torch.empty(0, 100, device=device, dtype=torch.bfloat16)
    assert fused_add_rms_norm(e, e.clone(), w)[0].shape == (0, 100)
    # Rows longer than the register tile: pass 1 stores the sum, later passes re-read it.
    monkeypatch.setattr(rowwise, "MAX_WHOLE_ROW", 64)
    monkeypatch.setattr(rowwise, "CHUNK_N", 32)
    xc, rc = x.clone(), r.clone()
    fused_add_rms_norm_(xc, rc, w, 1e-6)
    assert_close(rc, ref_s, scale=4)
    assert_out_close(xc, ref_out)


def test_errors(device):
    x, r, w = _inputs(3, 16, device)
    with pytest.raises(ValueError, match="residual must match x"):
        fused_add_rms_norm(x, r[:, :8], w)
    with pytest.raises(ValueError, match="residual must match x"):
        fused_add_rms_norm(x, r.half(), w)
    with pytest.raises(ValueError, match="out overlaps residual_out"):
        o = torch.empty_like(x)
        fused_add_rms_norm(x, r, w, out=o, residual_out=o)
    with pytest.raises(ValueError, match="x overlaps residual"):
        fused_add_rms_norm_(x, x, w)
    with pytest.raises(ValueError, match="pair"):
        fused_add_rms_norm(x, r, w, out=(torch.empty_like(x),))


def test_custom_ops_pass_opcheck(device):
    x, r, w = _inputs(3, 24, device)
    torch.library.opcheck(torch.ops.solbench.fused_add_rms_norm.out,
                          (x, r, w, torch.empty_like(x), torch.empty_like(r), 1e-6),
                          test_utils=("test_schema", "test_faketensor"))
    torch.library.opcheck(torch.ops.solbench.fused_add_rms_norm_.default, (x.clone(), r.clone(), w, 1e-6),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_in_place_under_torch_compile_and_cuda_graph():
    x, r, w = _inputs(64, 2048, "cuda")
    ref_out, ref_s = SPEC.reference(x, r, w, 1e-6)

    @torch.compile(fullgraph=True)
    def f(a, b):
        fused_add_rms_norm_(a, b, w, 1e-6)
        return a + 0, b + 0

    out, s = f(x.clone(), r.clone())
    assert_out_close(out, ref_out)
    assert_close(s, ref_s, scale=4)
    xa, ra = x.clone(), r.clone()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fused_add_rms_norm_(xa, ra, w, 1e-6)
    xa.copy_(x)
    ra.copy_(r)
    g.replay()
    torch.cuda.synchronize()
    assert_out_close(xa, ref_out)
    assert_close(ra, ref_s, scale=4)
