"""moe_topk_gating_softmax: hand-computed softmax/top-k, hand-counted cost, and ties accepted by the
invariant checker while invalid selections are rejected."""
import math

import torch

from solbench.core.spec import get_spec

spec = get_spec("moe_topk_gating_softmax")
CPU = torch.device("cpu")
SH = next(s for s in spec.shapes if s.id == 1)


def test_cost_by_hand_shape_7():
    c = spec.cost(next(s for s in spec.shapes if s.id == 7))    # 8192 tokens, 128 experts, top-8
    assert c.bytes_read == 8192 * 128 * 4 == 4_194_304
    assert c.bytes_written == 8192 * 8 * (4 + 4) == 524_288
    assert c.flops == {"fp32": 5 * 8192 * 128}


def test_hand_example_no_renormalize():
    # exp(0), exp(ln 2), exp(ln 3), exp(0) = 1, 2, 3, 1: probabilities 1/7, 2/7, 3/7, 1/7.
    logits = torch.tensor([[0.0, math.log(2), math.log(3), 0.0]])
    w, ids = spec.reference(logits, 2)
    assert ids.tolist() == [[2, 1]] and ids.dtype == torch.int32
    torch.testing.assert_close(w, torch.tensor([[3 / 7, 2 / 7]]))      # sums to 5/7: not renormalized


def _errs(logits, k, ids, w=None):
    ref = spec.normalize_outputs(spec.reference(logits, k))
    got = {"topk_ids": torch.tensor(ids, dtype=torch.int32),
           "topk_weights": ref["topk_weights"] if w is None else torch.tensor(w)}
    return spec.check_invariants(SH, {"gating_output": logits, "top_k": k}, got, ref)


def test_ties_accept_any_choice_and_reject_invalid():
    logits = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert _errs(logits, 2, [[0, 1]]) == []
    assert _errs(logits, 2, [[2, 0]]) == []                     # another choice among equal logits
    assert _errs(logits, 2, [[0, 3]])                            # expert 3 is not in any top-2
    assert _errs(logits, 2, [[1, 1]])                            # repeated expert
    logits = torch.tensor([[0.0, math.log(2), math.log(3), 0.0]])
    assert _errs(logits, 2, [[1, 2]])                            # ascending order
    assert _errs(logits, 2, [[2, 1]], w=[[2 / 7, 3 / 7]])        # weights swapped against their ids


def test_inputs_have_ties_and_pass():
    x = spec.make_inputs(SH, CPU, 0)
    g = x["gating_output"]
    assert torch.equal(g, g.bfloat16().float())                 # bf16-grid router logits
    kth = g.topk(9, dim=-1).values
    assert (kth[:, 7] == kth[:, 8]).any()                        # some row ties at the top-k boundary
    ref = spec.normalize_outputs(spec.reference(**x))
    assert spec.check_invariants(SH, x, ref, ref) == []
