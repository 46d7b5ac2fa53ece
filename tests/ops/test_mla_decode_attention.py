"""mla_decode_attention: hand-counted cost, aiter's scale convention, and the reference against
aiter's torch_mla_extend formulation (keys = whole latent row, values = its first R entries)."""
import math

import torch

from solbench.core.spec import get_spec

spec = get_spec("mla_decode_attention")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_1():
    sh = next(s for s in spec.shapes if s.id == 1)   # batch 1, ctx 256, 16 heads, R 512, rope 64
    c = spec.cost(sh)
    assert c.flops == {"bf16_tc": 2 * 256 * 16 * (576 + 512)} == {"bf16_tc": 8_912_896}
    q = 16 * 576 * 2
    latent = 256 * 576 * 2              # each token's latent row once, shared by the 16 heads
    meta = 256 * 4 + 2 * 4              # kv_indices, kv_indptr
    assert c.bytes_read == q + latent + meta == 314_376
    assert c.bytes_written == 16 * 512 * 2


def test_inputs_and_scale():
    sh = next(s for s in spec.shapes if s.id == 2)   # batch 7, ctx 256
    x = spec.make_inputs(sh, CPU, 0)
    assert x["q"].shape == (7, 16, 576)
    assert x["kv_cache"].shape[1:] == (1, 1, 576) and x["kv_cache"].shape[0] > 7 * 256
    assert x["kv_indptr"].tolist() == list(range(0, 7 * 256 + 1, 256))
    assert x["kv_indices"].unique().numel() == 7 * 256
    assert math.isclose(x["sm_scale"], 1 / math.sqrt(576))


def test_reference_matches_torch_mla_extend_loop():
    sh = next(s for s in spec.shapes if s.id == 2)
    x = spec.make_inputs(sh, CPU, 3)
    flat = x["kv_cache"].reshape(-1, 576).double()
    ptr = x["kv_indptr"].tolist()
    want = torch.zeros(7, 16, 512, dtype=torch.float64)
    for b in range(7):
        c = flat[x["kv_indices"][ptr[b]:ptr[b + 1]].long()]
        s = x["q"][b].double() @ c.t() * x["sm_scale"]
        want[b] = torch.softmax(s, dim=-1) @ c[:, :512]
    got = spec.reference(**x)
    assert got.shape == (7, 16, 512) and got.dtype == torch.bfloat16
    assert (got.double() - want.to(torch.bfloat16).double()).abs().max() <= 2 ** -8
