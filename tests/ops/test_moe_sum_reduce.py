"""moe_sum_reduce: cost model, fp32 accumulation with the scale applied before the one rounding."""
import torch

from solbench.core.spec import get_spec

SPEC = get_spec("moe_sum_reduce")


def test_cost_hand_count():
    # Catalog #0: 11027 tokens, top-8, hidden 2048. Read 11027*8*2048 bf16, write 11027*2048 bf16;
    # 7 adds + 1 scale per output element.
    c = SPEC.cost(next(s for s in SPEC.shapes if s.id == 0))
    assert c.bytes_read == 11027 * 8 * 2048 * 2 == 361_332_736
    assert c.bytes_written == 11027 * 2048 * 2 == 45_166_592
    assert c.flops == {"fp32": 11027 * 2048 * 8}


def test_reference_accumulates_in_fp32():
    # 256 + seven 1s = 263: fp32 sum, one rounding -> bf16 264 (263 is a tie between 262 and 264,
    # even wins). Accumulating in bf16 would lose every +1 against 256 and return 256.
    x = torch.tensor([[[256.0]] + [[1.0]] * 7], dtype=torch.bfloat16)       # [1, 8, 1]
    assert SPEC.reference(x, 1.0).item() == 264.0
    seq = x[0, 0]
    for i in range(1, 8):
        seq = seq + x[0, i]
    assert seq.item() == 256.0


def test_reference_scales_the_fp32_sum():
    # (1.5 + 1.5) * 2.5 = 7.5 exactly; a second token checks rows stay apart.
    x = torch.tensor([[[1.5, -1.0], [1.5, 3.0]], [[0.25, 0.5], [0.25, 0.5]]], dtype=torch.bfloat16)
    out = SPEC.reference(x, 2.5)
    assert out.dtype == torch.bfloat16 and out.shape == (2, 2)
    assert out.float().tolist() == [[7.5, 5.0], [1.25, 2.5]]


def test_inputs_follow_shape():
    shape = SPEC.smoke_shapes()[1]
    inp = SPEC.make_inputs(shape, torch.device("cpu"), 0)
    assert inp["expert_outputs"].shape == (33, 8, 2048) and inp["routed_scaling_factor"] == 2.5
