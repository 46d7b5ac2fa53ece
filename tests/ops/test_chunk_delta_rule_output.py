"""chunk_delta_rule_output: cost model, upstream chunk length, and the chunked output (fed by
the chunk-state pass) against the token-by-token gated delta rule."""
import torch

from _linear_attn_testing import chunk_g, gdn_problem, recurrent
from solbench.core.linear_attn import wy_representation
from solbench.core.spec import get_spec
from solbench.ops.chunk_delta_rule_output.spec import effective_chunk

SPEC = get_spec("chunk_delta_rule_output")
STATE = get_spec("chunk_gated_delta_rule_state")


def test_cost_hand_count():
    # Catalog #0: 64 tokens (one chunk), 16 q/k heads, 32 value heads, K = V = 128.
    # Read: q, k 64*16*128 bf16; v 64*32*128 bf16; h 1*32*128*128 bf16; g 64*32 fp32. Write: o 64*32*128.
    # bf16 TC: per value head q@h 2*64*128*128 and A@v 2*2080*128 over the 64*65/2 = 2080 visible
    # pairs; q k^T 2*2080*128 once per key head. fp32: 64 exp + 64*128 + 2*2080 + 2*64*128 per value head.
    c = SPEC.cost(next(s for s in SPEC.shapes if s.id == 0))
    assert c.bytes_read == 2 * 64 * 16 * 128 * 2 + 64 * 32 * 128 * 2 + 32 * 128 * 128 * 2 + 64 * 32 * 4
    assert c.bytes_written == 64 * 32 * 128 * 2
    assert c.flops == {"bf16_tc": 32 * (2 * 64 * 128 * 128 + 2 * 2080 * 128) + 16 * 2 * 2080 * 128,
                       "fp32": 32 * (64 + 64 * 128 + 2 * 2080 + 2 * 64 * 128)}


def test_effective_chunk_follows_upstream_launcher():
    # BT = min(chunk_size, max(16, next_pow2(T))).
    assert [effective_chunk(t, 64) for t in (1, 16, 17, 20, 33, 64, 65, 14807)] == [16, 16, 32, 32, 64, 64, 64, 64]


def _pipeline(p, chunk):
    g = chunk_g(p, chunk)
    w, u = wy_representation(p["k"], p["v"], p["beta"], g, chunk)
    h, v_new, _ = STATE.reference(k=p["k"], w=w, u=u, g=g, initial_state=p["pool"],
                                  initial_state_indices=p["idx"], chunk_size=chunk)
    return SPEC.reference(q=p["q"], k=p["k"], v=v_new, h=h, g=g, scale=p["scale"], chunk_size=chunk)


def test_output_matches_token_recurrence():
    # Two full chunks and a partial one, grouped heads, fp32 end to end.
    p = gdn_problem(T=150)
    o_rec, _ = recurrent(p)
    torch.testing.assert_close(_pipeline(p, 64), o_rec, rtol=1e-4, atol=1e-4)


def test_short_prompt_uses_one_short_chunk():
    # T = 20 < 64: upstream runs one chunk of 32; the state pass' single chunk covers it too.
    p = gdn_problem(B=1, T=20, Hg=2, H=4)
    o_rec, _ = recurrent(p)
    torch.testing.assert_close(_pipeline(p, 64), o_rec, rtol=1e-4, atol=1e-4)


def test_only_visible_pairs_contribute():
    # Changing the last token's k and v must leave every earlier output unchanged (causal mask),
    # and the chunk-0 state term only reaches chunk 0.
    inp = SPEC.make_inputs(SPEC.smoke_shapes()[1], torch.device("cpu"), 0)
    base = SPEC.reference(**inp).float()
    inp["k"][:, -1] = -inp["k"][:, -1]
    inp["v"][:, -1] += 1
    inp["h"][:, 0] += 1
    moved = SPEC.reference(**inp).float()
    assert torch.equal(moved[:, 64:-1], base[:, 64:-1])
    assert not torch.equal(moved[:, -1], base[:, -1]) and not torch.equal(moved[:, :64], base[:, :64])
