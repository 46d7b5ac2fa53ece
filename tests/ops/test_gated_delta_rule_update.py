"""gated_delta_rule_update: cost model, the fused gates and recurrence against a scalar Python
loop (softplus threshold branch, grouped heads, padding slot, untouched pool entries), and the
eager baseline's in-place pool update."""
import math

import torch

from solbench.core.spec import get_spec, impls_for

SPEC = get_spec("gated_delta_rule_update")


def test_cost_hand_count():
    # Catalog #0: one decode token, 16 q/k heads, 32 value heads, K = V = 128, pool of 2.
    # Read: q, k 16*128 bf16 each; v 32*128 bf16; a, b 32 bf16 each; A_log 32 fp32; dt_bias 32 bf16;
    # one state 32*128*128 fp32; one int32 index. Write: out 32*128 bf16 and that state.
    # FLOPs: per value head 7*K*V + 2*V + K + 12; per key head 6*K (two l2norms).
    c = SPEC.cost(next(s for s in SPEC.shapes if s.id == 0))
    assert c.bytes_read == (2 * 16 * 128 * 2 + 32 * 128 * 2 + 2 * 32 * 2 + 32 * 4 + 32 * 2
                            + 32 * 128 * 128 * 4 + 4) == 2_113_860
    assert c.bytes_written == 32 * 128 * 2 + 32 * 128 * 128 * 4
    assert c.flops == {"fp32": 32 * (7 * 128 * 128 + 2 * 128 + 128 + 12) + 16 * 6 * 128}


def test_cost_multi_token_prices_state_products_at_tf32():
    # Catalog #1: 128 tokens. The 6 K V state products per token and value head (S^T k, the
    # rank-1 update, S^T q) are tf32 tensor-core work; gates, l2norm and the vector scalings fp32.
    c = SPEC.cost(next(s for s in SPEC.shapes if s.id == 1))
    T = 128
    assert c.flops == {"tf32_tc": T * 32 * 6 * 128 * 128,
                       "fp32": T * (32 * (2 * 128 + 128 + 12) + 16 * 6 * 128) + T * 32 * 2 * 128}
    # Bytes are unchanged by the FLOP path: the T tokens' activations, one state in and out.
    assert c.bytes_written == T * 32 * 128 * 2 + 32 * 128 * 128 * 4


def _scalar_loop(inp):
    """The upstream kernel's arithmetic, one float at a time."""
    A_log, a, dt_bias, q, k, v, b = (inp[n].double() for n in ("A_log", "a", "dt_bias", "q", "k", "v", "b"))
    pool = inp["initial_state"].double().clone()
    B, T, HV, V = v.shape
    H, K = q.shape[2], q.shape[3]
    out = torch.zeros(B, T, HV, V, dtype=torch.float64)
    for n in range(B):
        idx = int(inp["initial_state_indices"][n])
        for i in range(HV):
            S = [[float(pool[idx, i, kk, vv]) if idx >= 0 else 0.0 for vv in range(V)] for kk in range(K)]
            for t in range(T):
                x = float(a[n, t, i] + dt_bias[i])
                bx = inp["softplus_beta"] * x
                sp = math.log1p(math.exp(bx)) / inp["softplus_beta"] if bx <= inp["softplus_threshold"] else x
                decay = math.exp(-math.exp(float(A_log[i])) * sp)
                beta = 1 / (1 + math.exp(-float(b[n, t, i])))
                qv, kv = q[n, t, i // (HV // H)].tolist(), k[n, t, i // (HV // H)].tolist()
                qn, kn = math.sqrt(sum(z * z for z in qv) + 1e-6), math.sqrt(sum(z * z for z in kv) + 1e-6)
                qv, kv = [z / qn * inp["scale"] for z in qv], [z / kn for z in kv]
                S = [[s * decay for s in row] for row in S]
                d = [(float(v[n, t, i, vv]) - sum(S[kk][vv] * kv[kk] for kk in range(K))) * beta for vv in range(V)]
                S = [[S[kk][vv] + kv[kk] * d[vv] for vv in range(V)] for kk in range(K)]
                for vv in range(V):
                    out[n, t, i, vv] = sum(S[kk][vv] * qv[kk] for kk in range(K))
            if idx >= 0:
                pool[idx, i] = torch.tensor(S, dtype=torch.float64)
    return out, pool


def test_matches_scalar_loop():
    gen = torch.Generator().manual_seed(0)
    B, T, H, HV, K, V = 3, 4, 1, 2, 3, 2
    inp = {
        "A_log": torch.randn(HV, generator=gen), "a": torch.randn(B, T, HV, generator=gen),
        "dt_bias": torch.tensor([0.3, 25.0]),          # head 1: a + dt_bias > 20 -> softplus is x itself
        "q": torch.randn(B, T, H, K, generator=gen), "k": torch.randn(B, T, H, K, generator=gen),
        "v": torch.randn(B, T, HV, V, generator=gen), "b": torch.randn(B, T, HV, generator=gen),
        "initial_state": torch.randn(5, HV, K, V, generator=gen),
        "initial_state_indices": torch.tensor([3, -1, 0], dtype=torch.int32),   # -1: padding slot
        "softplus_beta": 1.0, "softplus_threshold": 20.0, "use_qk_l2norm": True, "scale": K ** -0.5,
    }
    inp["A_log"][1] = -4.0                               # keep head 1's decay (exp(-e^-4 * 25)) visible
    out, pool = SPEC.reference(**inp)
    want_out, want_pool = _scalar_loop(inp)
    torch.testing.assert_close(out.double(), want_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pool.double(), want_pool, rtol=1e-5, atol=1e-6)
    # The padding slot wrote nothing; entries 1, 2 and 4 are untouched.
    torch.testing.assert_close(pool[[1, 2, 4]], inp["initial_state"][[1, 2, 4]], rtol=0, atol=0)


def test_prefill_chunk_pipeline_reproduces_the_decode_recurrence():
    # The same tokens through the prefill operators (gates and l2norm applied outside, WY factors,
    # chunk states, chunk outputs) must give this operator's outputs and final state.
    from solbench.core.linear_attn import chunk_local_cumsum, l2norm, softplus_gate, wy_representation

    gen = torch.Generator().manual_seed(1)
    B, T, H, HV, K, V = 1, 100, 1, 2, 16, 8
    inp = {"A_log": torch.rand(HV, generator=gen), "a": torch.randn(B, T, HV, generator=gen),
           "dt_bias": torch.randn(HV, generator=gen) - 2, "q": torch.randn(B, T, H, K, generator=gen),
           "k": torch.randn(B, T, H, K, generator=gen), "v": torch.randn(B, T, HV, V, generator=gen),
           "b": torch.randn(B, T, HV, generator=gen), "initial_state": torch.randn(3, HV, K, V, generator=gen),
           "initial_state_indices": torch.tensor([2], dtype=torch.int32), "softplus_beta": 1.0,
           "softplus_threshold": 20.0, "use_qk_l2norm": True, "scale": K ** -0.5}
    out, pool = SPEC.reference(**inp)
    g = chunk_local_cumsum(softplus_gate(inp["A_log"], inp["a"], inp["dt_bias"]), 64)
    q, k = l2norm(inp["q"]), l2norm(inp["k"])
    w, u = wy_representation(k, inp["v"], torch.sigmoid(inp["b"]), g, 64)
    h, v_new, final = get_spec("chunk_gated_delta_rule_state").reference(
        k=k, w=w, u=u, g=g, initial_state=inp["initial_state"], initial_state_indices=inp["initial_state_indices"],
        chunk_size=64)
    o = get_spec("chunk_delta_rule_output").reference(q=q, k=k, v=v_new, h=h, g=g, scale=inp["scale"], chunk_size=64)
    torch.testing.assert_close(o, out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(final[0], pool[2], rtol=1e-4, atol=1e-5)


def test_eager_updates_pool_in_place_over_many_tokens():
    import dataclasses

    shape = dataclasses.replace(SPEC.shapes[0], id="t40", smoke=True,
                                params={**SPEC.shapes[0].params, "token_count": 40, "num_q_heads": 2,
                                        "num_v_heads": 4, "key_dim": 16, "value_dim": 8})
    inp = SPEC.make_inputs(shape, torch.device("cpu"), 0)
    ref_out, ref_pool = SPEC.reference(**{k: (v.clone() if torch.is_tensor(v) else v) for k, v in inp.items()})
    pool = inp["initial_state"]
    out, got_pool = impls_for(SPEC.name)["torch_eager"].fn(**inp)
    assert got_pool is pool
    torch.testing.assert_close(got_pool, ref_pool, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.float(), ref_out.float(), rtol=8e-3, atol=2e-4)
