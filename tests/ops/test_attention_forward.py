"""attention_forward: hand-counted cost, the reference against a float64 loop, the chunked
(memory-bounded) reference path against the one-chunk path, and bidirectionality."""
import dataclasses
import math

import torch

from solbench.core.attention_ref import varlen_attention_reference
from solbench.core.spec import get_spec

spec = get_spec("attention_forward")


def _shape(params, sid="t"):
    return dataclasses.replace(spec.shapes[0], id=sid, params={**spec.shapes[0].params, **params}, smoke=True)


def test_cost_by_hand_shape_11():
    sh = next(s for s in spec.shapes if s.id == 11)   # one sequence of 276 tokens, 4 heads of 72
    c = spec.cost(sh)
    # Bidirectional: 276² (query, key) pairs; 2·72 FLOPs for the score and 2·72 for p·v per pair
    # and head: 2 · 76176 · 4 · 144.
    assert c.flops == {"bf16_tc": 2 * 276 * 276 * 4 * (72 + 72)} == {"bf16_tc": 87_754_752}
    act = 276 * 4 * 72 * 2                      # one of q, k, v, out in bf16: 158,976 bytes
    assert c.bytes_read == 3 * act + 2 * 2 * 4   # q, k, v + two cu_seqlens of 2 int32
    assert c.bytes_written == act


def _loop_reference(q, k, v, cu, scale):
    """softmax(scale q·k) v per sequence and head, float64, explicit loops over queries."""
    out = torch.zeros(q.shape, dtype=torch.float64)
    cu = cu.tolist()
    for b in range(len(cu) - 1):
        lo, hi = cu[b], cu[b + 1]
        for h in range(q.shape[1]):
            kk = k[lo:hi, h].double()
            vv = v[lo:hi, h].double()
            for t in range(lo, hi):
                s = (kk @ q[t, h].double()) * scale
                p = torch.exp(s - s.max())
                out[t, h] = (p / p.sum()) @ vv
    return out


def test_reference_matches_float64_loop_on_varlen_batch():
    sh = _shape({"num_heads": 3, "head_dim": 16, "seq_lens": [5, 1, 9]})
    x = spec.make_inputs(sh, torch.device("cpu"), 3)
    got = spec.reference(**x).double()
    want = _loop_reference(x["q"], x["k"], x["v"], x["cu_seqlens_q"], x["softmax_scale"]).to(torch.bfloat16).double()
    assert x["softmax_scale"] == 1 / math.sqrt(16)
    assert torch.allclose(got, want, atol=1e-2, rtol=0)
    assert (got - want).abs().max() <= 2 ** -7   # at most a bf16 rounding apart


def test_chunked_reference_equals_single_chunk():
    sh = _shape({"num_heads": 2, "head_dim": 8, "seq_lens": [13, 4, 30, 7]})
    x = spec.make_inputs(sh, torch.device("cpu"), 0)
    args = (x["q"], x["k"], x["v"], x["cu_seqlens_q"], x["cu_seqlens_k"])
    whole = varlen_attention_reference(*args, scale=0.3, causal=False, out_dtype=torch.float32)
    # 100 scores per chunk: sequences grouped in small batches, the 30-token one split into rows.
    tiny = varlen_attention_reference(*args, scale=0.3, causal=False, out_dtype=torch.float32, chunk_scores=100)
    assert torch.allclose(whole, tiny, atol=1e-6, rtol=1e-6)


def test_not_causal_later_keys_change_earlier_queries():
    sh = _shape({"num_heads": 1, "head_dim": 8, "seq_lens": [6]})
    x = spec.make_inputs(sh, torch.device("cpu"), 1)
    before = spec.reference(**x)
    x["k"][5] = -x["k"][5]
    after = spec.reference(**x)
    assert not torch.equal(before[0], after[0])


def test_inputs_follow_catalog_shape():
    sh = next(s for s in spec.shapes if s.id == 0)
    x = spec.make_inputs(sh, torch.device("cpu"), 0)
    assert x["q"].shape == (720, 16, 72) and x["q"].dtype == torch.bfloat16
    assert x["cu_seqlens_q"].tolist() == [0, 720] and x["cu_seqlens_q"].dtype == torch.int32
    assert x["max_seqlen_q"] == 720


def test_eager_refuses_what_would_not_fit():
    from solbench.core.spec import impls_for

    big = next(s for s in spec.shapes if s.id == 8)   # 65556 tokens, 16 heads: 6.9e10 scores
    sup = impls_for(spec.name)["torch_eager"].supports(big, torch.device("cpu"))
    assert not sup and "score matrix" in sup.reason
    assert impls_for(spec.name)["torch_native"].supports(big, torch.device("cpu"))
