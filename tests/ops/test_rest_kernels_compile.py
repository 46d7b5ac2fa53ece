"""Our reshape_and_cache, top-k mask, RoPE and gate kernels are custom ops with fake implementations:
torch.compile(fullgraph=True) traces through them (aot_eager: no Inductor on the CPU) and the
compiled call gives the eager call's result, in-place writes included."""
import pytest
import torch

from solbench.core.baselines import triton_support
from solbench.core.rotary import cos_sin

pytestmark = pytest.mark.skipif(not triton_support(), reason="needs Triton (a GPU or TRITON_INTERPRET=1)")


def _compiled(fn):
    return torch.compile(fn, fullgraph=True, backend="aot_eager")


def test_top_k_mask_logits(device):
    from solbench.kernels.topk import top_k_mask_logits

    x = torch.randn(3, 40, device=device)
    assert torch.equal(_compiled(lambda x: top_k_mask_logits(x, 5))(x), top_k_mask_logits(x, 5))


def test_reshape_and_cache_writes_in_place(device):
    from solbench.kernels.kv_cache import reshape_and_cache

    key, value = torch.randn(2, 3, 2, 8, device=device).bfloat16()
    kc, vc = torch.zeros(2, 4, 4, 2, 8, device=device).bfloat16()
    slots = torch.tensor([1, -1, 9], device=device)

    def write(key, value, kc, vc, slots):
        reshape_and_cache(key, value, kc, vc, slots)
        return kc.sum() + vc.sum()

    _compiled(write)(key, value, kc, vc, slots)
    assert torch.equal(kc.view(-1, 2, 8)[9], key[2]) and torch.equal(vc.view(-1, 2, 8)[1], value[0])


def test_fused_qkv_rope(device):
    from solbench.kernels.rope import fused_qkv_rope

    qkv = torch.randn(2, 4 * 16, device=device).half()
    pos = torch.tensor([3, 5], dtype=torch.int32, device=device)
    got = _compiled(lambda a, p: fused_qkv_rope(a, p, 2, 1, 16))(qkv, pos)
    for a, b in zip(got, fused_qkv_rope(qkv, pos, 2, 1, 16)):
        assert torch.equal(a, b)


def test_mrope_in_place(device):
    from solbench.kernels.rope import mrope

    q, k = torch.randn(2, 32, device=device).bfloat16(), torch.randn(2, 16, device=device).bfloat16()
    cos, sin = cos_sin(torch.randint(0, 100, (3, 2), device=device), 16, 1e6)
    want = mrope(q.clone(), k.clone(), cos, sin, [2, 3, 3], 16, 16)
    _compiled(lambda a, b: mrope(a, b, cos, sin, [2, 3, 3], 16, 16))(q, k)
    assert torch.equal(q, want[0]) and torch.equal(k, want[1])


def test_linear_sigmoid_mul(device):
    from solbench.kernels.gate import linear_sigmoid_mul

    h, w, b, p = (torch.randn(*s, device=device).bfloat16() for s in ((3, 32), (1, 32), (1,), (3, 32)))
    assert torch.equal(_compiled(linear_sigmoid_mul)(h, w, b, p), linear_sigmoid_mul(h, w, b, p))
