"""unified_attention: hand-counted cost, the reference against a per-token walk of the block
table (bottom-right causal, GQA), causal pair counting, inputs and the memory refusal."""
import itertools

import torch

from solbench.core.attention_ref import varlen_attention_reference, visible_pairs
from solbench.core.spec import get_spec, impls_for

spec = get_spec("unified_attention")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_3():
    sh = next(s for s in spec.shapes if s.id == 3)   # 1 sequence of 16, 16 query / 1 kv head, 128
    c = spec.cost(sh)
    # Causal prefill: 16·17/2 = 136 visible pairs; 2·128 + 2·128 FLOPs per pair and head.
    assert c.flops == {"bf16_tc": 2 * 136 * 16 * 256} == {"bf16_tc": 1_114_112}
    q = 16 * 16 * 128 * 2            # bf16 queries
    kv = 2 * 16 * 1 * 128 * 2        # the 16 cached tokens' K and V, one kv head
    meta = 1 * 4 + 2 * 4 + 1 * 4     # one block-table entry, cu_seqlens_q, seqused_k
    assert c.bytes_read == q + kv + meta == 73_744
    assert c.bytes_written == 16 * 16 * 128 * 2   # bf16 output, as q


def test_visible_pairs_matches_brute_force():
    for lq, lk in itertools.product(range(0, 7), range(0, 9)):
        want = sum(min(lk, max(0, i + lk - lq + 1)) for i in range(lq))
        assert visible_pairs(lq, lk, True) == want
        assert visible_pairs(lq, lk, False) == lq * lk


def _walk_reference(x):
    """For every query token: walk its sequence's block table, keep keys j <= L_k - L_q + i,
    softmax in float64 with kv head h // G."""
    q, kc, vc, bt = x["q"], x["k_cache"], x["v_cache"], x["block_table"]
    cu, lk = x["cu_seqlens_q"].tolist(), x["seqused_k"].tolist()
    bs, hkv = kc.shape[1], kc.shape[2]
    g = q.shape[1] // hkv
    out = torch.zeros(q.shape, dtype=torch.float64)
    for b in range(len(lk)):
        lq = cu[b + 1] - cu[b]
        for i in range(lq):
            t = cu[b] + i
            last = lk[b] - lq + i
            keys = [(int(bt[b, j // bs]), j % bs) for j in range(last + 1)]
            for h in range(q.shape[1]):
                k = torch.stack([kc[blk, off, h // g] for blk, off in keys]).double()
                v = torch.stack([vc[blk, off, h // g] for blk, off in keys]).double()
                s = (k @ q[t, h].double()) * x["softmax_scale"]
                p = torch.softmax(s, dim=0)
                out[t, h] = p @ v
    return out


def test_reference_matches_block_table_walk_with_context():
    sh = next(s for s in spec.smoke_shapes() if s.id == "smoke_chunked")
    x = spec.make_inputs(sh, CPU, 2)
    assert x["cu_seqlens_q"].tolist() == [0, 40, 43, 60] and x["seqused_k"].tolist() == [40, 9, 70]
    got = spec.reference(**x)
    assert got.dtype == torch.bfloat16  # q's dtype, as vLLM writes it
    assert torch.allclose(got.double(), _walk_reference(x), atol=1e-2, rtol=8e-3)


def test_chunked_causal_reference_equals_single_chunk():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(25, 4, 8, generator=g)
    k = torch.randn(60, 2, 8, generator=g)
    v = torch.randn(60, 2, 8, generator=g)
    cu_q, cu_k = torch.tensor([0, 5, 25]), torch.tensor([0, 20, 60])   # L_q < L_k: contexts
    whole = varlen_attention_reference(q, k, v, cu_q, cu_k, scale=0.4, causal=True, out_dtype=torch.float32)
    rows = varlen_attention_reference(q, k, v, cu_q, cu_k, scale=0.4, causal=True, out_dtype=torch.float32,
                                      chunk_scores=90)
    assert torch.allclose(whole, rows, atol=1e-6, rtol=1e-6)


def test_block_table_is_random_and_in_pool():
    sh = next(s for s in spec.shapes if s.id == 0)     # 130 sequences of 256 tokens, block 16
    x = spec.make_inputs(sh, CPU, 0)
    bt = x["block_table"]
    nb = x["k_cache"].shape[0]
    assert bt.shape == (130, 16) and bt.dtype == torch.int32
    assert bt.unique().numel() == bt.numel() and int(bt.min()) >= 0 and int(bt.max()) < nb
    assert not torch.equal(bt.flatten().long(), torch.arange(bt.numel()))
    assert nb > bt.numel()                              # the pool has blocks nobody uses
    assert x["q"].shape == (130 * 256, 10, 128) and x["seqused_k"].tolist() == [256] * 130


def test_eager_refuses_dense_scores_beyond_limit():
    big = next(s for s in spec.shapes if s.id == 22)    # 49152 tokens, 4 heads: 9.7e9 scores
    sup = impls_for(spec.name)["torch_eager"].supports(big, CPU)
    assert not sup and "score matrix" in sup.reason
    assert impls_for(spec.name)["torch_compile"].supports(big, CPU).ok is False
