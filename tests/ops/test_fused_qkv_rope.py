"""fused_qkv_rope: hand-counted cost and the reference against an explicit rtp-llm-style loop
(bias add, rotate-half pairs (i, i + rope_dim/2) at base^(-2i/rope_dim), v untouched,
[1, heads, T, head_dim] outputs)."""
import math

import torch

from solbench.core.spec import get_spec

spec = get_spec("fused_qkv_rope")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_0():
    sh = next(s for s in spec.shapes if s.id == 0)   # 1 token, heads 32/4, head 128, rope 128, bf16
    c = spec.cost(sh)
    width = (32 + 2 * 4) * 128                         # 5120 elements of qkv per token
    assert c.bytes_read == width * 2 + width * 2 + 4 == 20_484   # qkv, bias, one position
    assert c.bytes_written == width * 2
    # bias add on 5120, 3 per rotated element of the 36 q/k heads, cos+sin of 64 angles.
    assert c.flops == {"fp32": 5120 + 3 * 36 * 128 + 2 * 64} == {"fp32": 19_072}


def test_shape_dtype_is_honoured():
    x = spec.make_inputs(next(s for s in spec.shapes if s.id == 1), CPU, 0)
    assert x["qkv"].dtype == torch.float16 and x["qkv"].shape == (1, (40 + 16) * 128)
    x = spec.make_inputs(next(s for s in spec.shapes if s.id == 0), CPU, 0)
    assert x["qkv"].dtype == torch.bfloat16


def test_reference_matches_explicit_loop():
    sh = next(s for s in spec.smoke_shapes() if s.id == "smoke_7tok")   # 7 tokens, heads 8/2, 128
    x = spec.make_inputs(sh, CPU, 5)
    q, k, v = spec.reference(**x)
    h, hkv, d, rd = 8, 2, 128, 128
    assert q.shape == (1, h, 7, d) and k.shape == (1, hkv, 7, d) and v.shape == (1, hkv, 7, d)
    xb = (x["qkv"].double() + x["qkv_bias"].double()).view(7, h + 2 * hkv, d)
    for t, pos in enumerate(x["positions"].tolist()):
        for head in range(h + 2 * hkv):
            row = xb[t, head].clone()
            if head < h + hkv:                          # q and k heads are rotated
                for i in range(rd // 2):
                    theta = pos / (10000.0 ** (2 * i / rd))
                    a, b = row[i].item(), row[i + rd // 2].item()
                    row[i] = a * math.cos(theta) - b * math.sin(theta)
                    row[i + rd // 2] = b * math.cos(theta) + a * math.sin(theta)
            out = q[0, head] if head < h else (k[0, head - h] if head < h + hkv else v[0, head - h - hkv])
            assert (out[t].double() - row.to(torch.float16).double()).abs().max() <= 2 ** -8 * (1 + row.abs().max())
    assert x["positions"].unique().numel() > 1
