"""fused_moe: hand-counted cost, seeded routing, the reference against a per-token loop."""
from dataclasses import replace

import torch
import torch.nn.functional as F

from solbench.core.moe_routing import expected_experts_hit
from solbench.core.spec import get_spec

spec = get_spec("fused_moe")
CPU = torch.device("cpu")


def _shape(sid):
    return next(s for s in spec.shapes if s.id == sid)


def test_cost_by_hand_shape_0():
    # T=135 H=2048 I=2048 E=8 k=2: R = 270 routed rows; all 8 experts are hit (1 - 0.75^135 ~ 1).
    c = spec.cost(_shape(0))
    assert c.flops["bf16_tc"] == 2 * 270 * 2048 * 4096 + 2 * 270 * 2048 * 2048 == 6_794_772_480
    assert c.flops["fp32"] == 6 * 270 * 2048 + 2 * 270 * 2048 == 4_423_680
    weights = 8 * (2 * 2048 * 2048 + 2048 * 2048) * 2          # bf16 w1 + w2 of 8 experts
    assert c.bytes_read == 135 * 2048 * 2 + 270 * 8 + weights == 201_881_712
    assert c.bytes_written == 135 * 2048 * 4 == 1_105_920      # fp32 out (catalog)


def test_decode_reads_only_the_routed_experts():
    # T=1 E=128 k=8: exactly 8 experts' weights are read, not 128.
    c = spec.cost(_shape(8))
    assert expected_experts_hit(1, 128, 8) == 8
    assert c.bytes_read == 2048 * 2 + 8 * 8 + 8 * (2 * 768 * 2048 + 2048 * 768) * 2


def test_routing_is_valid():
    sh = replace(_shape(0), params=dict(token_count=50, hidden_size=64, intermediate_size=32, num_experts=16, top_k=4))
    x = spec.make_inputs(sh, CPU, 3)
    ids, w = x["topk_ids"], x["topk_weights"]
    assert ids.dtype == torch.int32 and w.dtype == torch.float32
    assert (ids.sort(-1).values.diff(dim=-1) > 0).all()          # distinct experts per token
    assert torch.allclose(w.sum(-1), torch.ones(50)) and (w.diff(dim=-1) <= 0).all()


def test_reference_matches_token_loop():
    sh = replace(_shape(0), params=dict(token_count=6, hidden_size=32, intermediate_size=16, num_experts=5, top_k=2))
    x = spec.make_inputs(sh, CPU, 1)
    out = spec.reference(**x)
    assert out.dtype == torch.float32 and out.shape == (6, 32)
    h, w1, w2 = x["hidden_states"].double(), x["w1"].double(), x["w2"].double()
    for t in range(6):
        want = torch.zeros(32, dtype=torch.float64)
        for j in range(2):
            e = int(x["topk_ids"][t, j])
            g, u = (w1[e] @ h[t]).split(16)
            want += float(x["topk_weights"][t, j]) * (w2[e] @ (F.silu(g) * u))
        torch.testing.assert_close(out[t].double(), want, rtol=1e-5, atol=1e-6)


def test_router_weights_are_applied_inside():
    sh = spec.smoke_shapes()[0]
    x = spec.make_inputs(sh, CPU, 0)
    y = spec.reference(**x)
    x2 = dict(x, topk_weights=x["topk_weights"] * 2)
    torch.testing.assert_close(spec.reference(**x2), 2 * y, rtol=1e-5, atol=1e-6)
