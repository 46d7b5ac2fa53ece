"""kernels.common.kernel_op: our custom ops run their body directly on plain eager calls (no
dispatcher round trip), and go through torch.library wherever something traces or wraps tensors."""
import pytest
import torch

from solbench.core.baselines import triton_support
from solbench.kernels import rownorm as rms_api

pytestmark = pytest.mark.skipif(not triton_support(), reason="needs a GPU or TRITON_INTERPRET=1")
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _inputs():
    x = torch.randn(3, 256, dtype=torch.bfloat16, device=DEV)
    return x, torch.randn(256, dtype=torch.bfloat16, device=DEV), torch.empty_like(x)


def test_plain_eager_call_skips_the_dispatcher_and_bumps_the_version(monkeypatch):
    x, w, out = _inputs()
    through_op = []
    real_op = rms_api._rms_norm_op.op
    monkeypatch.setattr(rms_api._rms_norm_op, "op", lambda *a: through_op.append(a) or real_op(*a))
    before = out._version
    rms_api.rms_norm(x, w, out=out)
    assert through_op == []  # the body ran directly
    assert out._version > before  # as the dispatcher's in-place handling would have done
    ref = (x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6) * w.float()).to(x.dtype)
    torch.testing.assert_close(out, ref, atol=2e-2, rtol=2e-2)


def test_fake_tensors_go_through_the_registered_op_and_its_fake_implementation(monkeypatch):
    from torch._subclasses.fake_tensor import FakeTensorMode

    through_op = []
    real_op = rms_api._rms_norm_op.op
    monkeypatch.setattr(rms_api._rms_norm_op, "op", lambda *a: through_op.append(a) or real_op(*a))
    with FakeTensorMode():
        x = torch.empty(3, 256, dtype=torch.bfloat16, device=DEV)
        w = torch.empty(256, dtype=torch.bfloat16, device=DEV)
        out = rms_api.rms_norm(x, w)
        assert out.shape == (3, 256)
    assert len(through_op) == 1


def test_the_op_stays_registered_with_torch_library():
    x, w, out = _inputs()
    torch.ops.solbench.rms_norm.out(x, w, out, 1e-6)  # callers that use torch.ops directly still work
    assert torch.isfinite(out.float()).all()
    assert rms_api._rms_norm_op.__name__ == "_rms_norm_op"


def test_torch_compile_traces_the_op_in_one_graph():
    import torch._dynamo

    x, w, out = _inputs()
    torch._dynamo.reset()

    @torch.compile(fullgraph=True, backend="aot_eager")  # a graph break would raise
    def f(x, w):
        return rms_api.rms_norm(x, w) * 2

    got = f(x, w)
    rms_api.rms_norm(x, w, out=out)
    torch.testing.assert_close(got, out * 2)
