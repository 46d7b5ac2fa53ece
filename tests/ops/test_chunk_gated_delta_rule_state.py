"""chunk_gated_delta_rule_state: cost model, and the chunk recurrence against the token-by-token
gated delta rule (WY factors built from the same k, v, beta, g)."""
import torch

from _linear_attn_testing import chunk_g, gdn_problem, recurrent
from solbench.core.linear_attn import wy_representation
from solbench.core.spec import get_spec

SPEC = get_spec("chunk_gated_delta_rule_state")


def test_cost_hand_count():
    # Catalog #7: 2048 tokens (32 chunks), 16 key / 32 value heads, K = V = 128, one sequence.
    # Read: k 2048*16*128 bf16, w and u 2048*32*128 bf16 each, g 2048*32 fp32, one gathered state
    # 32*128*128 fp32, one int32 index. Write: h 32*32*128*128 bf16, v_new 2048*32*128 bf16,
    # final_state 32*128*128 fp32. FLOPs: w@S and k^T@v_new, 2*T*K*V each per value head (bf16 TC);
    # fp32: 2 per (token, value) + 1 exp per token + K*V per chunk, per value head.
    c = SPEC.cost(next(s for s in SPEC.shapes if s.id == 7))
    assert c.bytes_read == (2048 * 16 * 128 * 2 + 2 * 2048 * 32 * 128 * 2 + 2048 * 32 * 4
                            + 32 * 128 * 128 * 4 + 4) == 44_302_340
    assert c.bytes_written == 32 * 32 * 128 * 128 * 2 + 2048 * 32 * 128 * 2 + 32 * 128 * 128 * 4 == 52_428_800
    assert c.flops == {"bf16_tc": 32 * 4 * 2048 * 128 * 128,
                       "fp32": 32 * (2 * 2048 * 128 + 2048 + 32 * 128 * 128)}


def _chunk_inputs(p, chunk):
    g = chunk_g(p, chunk)
    w, u = wy_representation(p["k"], p["v"], p["beta"], g, chunk)
    return dict(k=p["k"], w=w, u=u, g=g, initial_state=p["pool"], initial_state_indices=p["idx"], chunk_size=chunk)


def test_final_state_matches_token_recurrence():
    # 150 tokens = two full chunks and a partial one, grouped heads (1 key head, 2 value heads),
    # two sequences starting from different pool entries.
    p = gdn_problem(T=150)
    h, v_new, final = SPEC.reference(**_chunk_inputs(p, 64))
    _, S = recurrent(p)
    torch.testing.assert_close(final, S, rtol=1e-4, atol=1e-4)
    assert h.shape == (2, 3, 2, 16, 8) and v_new.shape == (2, 150, 2, 8)
    # Chunk 0 starts from the gathered pool entries themselves.
    torch.testing.assert_close(h[:, 0], p["pool"][p["idx"].long()])


def test_v_new_is_the_beta_scaled_delta():
    # Inside the first chunk, token 0's v_new is beta_0 (v_0 - exp(g_0) S_0^T k_0): the WY form solved.
    p = gdn_problem(T=40)
    _, v_new, _ = SPEC.reference(**_chunk_inputs(p, 64))
    S0 = p["pool"][p["idx"].long()]                                  # [B, H, K, V]
    k0 = p["k"][:, 0].expand(-1, 2, -1)                              # key head 0 serves both value heads
    want = p["beta"][:, 0, :, None] * (p["v"][:, 0] - torch.exp(p["g_tok"][:, 0])[..., None]
                                       * torch.einsum("bhkv,bhk->bhv", S0, k0))
    torch.testing.assert_close(v_new[:, 0], want, rtol=1e-5, atol=1e-5)


def test_inputs_gather_distinct_pool_entries_and_stay_bounded():
    shape = SPEC.smoke_shapes()[0]
    inp = SPEC.make_inputs(shape, torch.device("cpu"), 0)
    assert inp["initial_state"].shape == (6, 4, 128, 128) and inp["initial_state_indices"].dtype == torch.int32
    h, v_new, final = SPEC.reference(**inp)
    assert torch.isfinite(final).all() and final.abs().max() < 10      # the WY-built recurrence contracts
