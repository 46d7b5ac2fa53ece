"""fp8_blockscale_fused_moe: hand-counted cost, block-scale semantics against an explicit block loop,
and the fp8 block helpers."""
from dataclasses import replace

import torch
import torch.nn.functional as F

from solbench.core import fp8_blocks
from solbench.core.spec import get_spec

spec = get_spec("fp8_blockscale_fused_moe")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_2():
    # T=1 H=7168 I=2048 E=256 k=8: 8 routed rows, 8 experts read.
    c = spec.cost(next(s for s in spec.shapes if s.id == 2))
    assert c.flops["fp8_e4m3_tc"] == 2 * 8 * 7168 * 4096 + 2 * 8 * 2048 * 7168 == 704_643_072
    per_expert = 3 * 2048 * 7168 + 4 * (32 * 56 + 56 * 16)    # fp8 w1 + w2, fp32 128x128 scales
    assert c.bytes_read == 7168 + 56 * 4 + 8 * 8 + 8 * per_expert == 352_415_008
    assert c.bytes_written == 7168 * 2


def _dequant_loop(q, s, bn, bk):
    """Block dequantization written out block by block (independent of fp8_blocks)."""
    out = torch.empty(q.shape, dtype=torch.float64)
    for i in range(s.shape[0]):
        for j in range(s.shape[1]):
            out[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk] = q[i * bn:(i + 1) * bn, j * bk:(j + 1) * bk].double() * float(s[i, j])
    return out


def test_reference_matches_block_loop():
    base = spec.shapes[0]
    sh = replace(base, params=dict(token_count=3, hidden_size=256, intermediate_size=128, num_experts=4, top_k=2))
    x = spec.make_inputs(sh, CPU, 2)
    assert x["hidden_states"].dtype == torch.float8_e4m3fn and x["a_scale"].shape == (3, 2)
    assert x["fc1_scale"].shape == (4, 2, 2) and x["fc2_scale"].shape == (4, 2, 1)
    out = spec.reference(**x)
    assert out.dtype == torch.bfloat16
    xs = _dequant_loop(x["hidden_states"], x["a_scale"], 1, 128)
    for t in range(3):
        want = torch.zeros(256, dtype=torch.float64)
        for j in range(2):
            e = int(x["topk_ids"][t, j])
            w1 = _dequant_loop(x["w1"][e], x["fc1_scale"][e], 128, 128)
            w2 = _dequant_loop(x["w2"][e], x["fc2_scale"][e], 128, 128)
            g, u = (w1 @ xs[t]).split(128)
            want += float(x["topk_weights"][t, j]) * (w2 @ (F.silu(g) * u))
        torch.testing.assert_close(out[t].double(), want, rtol=8e-3, atol=4e-3)   # one bf16 rounding


def test_scales_matter():
    sh = spec.smoke_shapes()[0]
    x = spec.make_inputs(sh, CPU, 0)
    y = spec.reference(**x).float()
    bumped = x["fc2_scale"].clone()
    bumped[..., 0, :] *= 2                  # first 128 output rows of every w2
    y2 = spec.reference(**dict(x, fc2_scale=bumped)).float()
    torch.testing.assert_close(y2[:, :128], 2 * y[:, :128], rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(y2[:, 128:], y[:, 128:])


def test_quantize_round_trip_and_bf16_dequant():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 300, generator=g) * torch.rand(200, 1, generator=g)
    q, s = fp8_blocks.quantize(x, (128, 128))
    assert q.dtype == torch.float8_e4m3fn and s.shape == (2, 3)
    back = fp8_blocks.dequantize(q, s, (128, 128))
    assert ((back - x).abs() <= 2 ** -4 * x.abs() + s.max() * 2 ** -9).all()   # e4m3: 3 mantissa bits
    blk = x[:128, :128].abs().max()
    assert torch.isclose(s[0, 0], blk / 448)
    q2, s2 = fp8_blocks.random_blocks((256, 384), (128, 128), CPU, g)
    torch.testing.assert_close(fp8_blocks.dequantize(q2, s2, (128, 128), torch.bfloat16).float(),
                               fp8_blocks.dequantize(q2, s2, (128, 128)), rtol=8e-3, atol=0)
