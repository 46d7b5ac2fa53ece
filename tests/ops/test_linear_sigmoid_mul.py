"""linear_sigmoid_mul: hand-computed gate, an independent per-row formulation, hand-counted cost."""
import math

import torch

from solbench.core.spec import get_spec

spec = get_spec("linear_sigmoid_mul")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_5():
    c = spec.cost(next(s for s in spec.shapes if s.id == 5))    # T=1 H=2048 D=4096
    assert c.bytes_read == (2048 + 2048 + 1 + 4096) * 2 == 16_386
    assert c.bytes_written == 4096 * 2
    assert c.flops == {"fp32": 2 * 2048 + 5 + 4096}


def test_hand_example():
    bf = torch.bfloat16
    x = torch.tensor([[1.0, 2.0], [2.0, 0.0]], dtype=bf)
    w = torch.tensor([[0.5, -0.25]], dtype=bf)
    b = torch.tensor([0.5], dtype=bf)
    post = torch.tensor([[2.0, -4.0, 8.0], [1.0, 1.0, -1.0]], dtype=bf)
    out = spec.reference(x, w, b, post)
    g0, g1 = 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(-1.5))   # logits 0 + 0.5 and 1 + 0.5
    want = torch.tensor([[2 * g0, -4 * g0, 8 * g0], [g1, g1, -g1]]).to(bf)
    assert out.dtype == bf and torch.equal(out, want)


def test_reference_matches_row_loop():
    sh = next(s for s in spec.shapes if s.id == 7)              # 13 tokens
    x = spec.make_inputs(sh, CPU, 2)
    out = spec.reference(**x)
    assert out.shape == (13, 4096)
    for t in range(13):
        logit = sum(float(a) * float(c) for a, c in zip(x["hidden_states"][t, :64], x["weight"][0, :64]))
        logit += float((x["hidden_states"][t, 64:].double() * x["weight"][0, 64:].double()).sum())
        gate = 1 / (1 + math.exp(-(logit + float(x["bias"][0]))))
        torch.testing.assert_close(out[t].float(), (gate * x["post_mul_mat"][t].double()).to(torch.bfloat16).float(),
                                   rtol=8e-3, atol=1e-3)
