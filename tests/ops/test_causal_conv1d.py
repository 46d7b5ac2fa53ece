"""causal_conv1d: cost model, hand-computed conv with a state, state shifting for short
sequences, and an independent per-token loop over a varlen batch."""
import dataclasses

import torch
import torch.nn.functional as F

from solbench.core.spec import get_spec, impls_for

SPEC = get_spec("causal_conv1d")


def _inputs(x_td, weight, bias, pool, lens, idx, has, activation=None):
    return dict(x=x_td.t(), weight=weight, bias=bias, initial_state=pool,
                query_start_loc=torch.tensor([0] + lens).cumsum(0).to(torch.int32), seq_lens_cpu=lens,
                cache_indices=torch.tensor(idx, dtype=torch.int32), has_initial_state=torch.tensor(has),
                activation=activation)


def test_cost_hand_count():
    # Catalog #6: 4195 tokens, dim 8192, width 4, one sequence.
    # Read: x 4195*8192 bf16, weight 8192*4, bias 8192, one pool line 8192*3 (bf16), query_start_loc
    # 2 int32, cache_indices 1 int32, has_initial_state 1 bool. Write: out + the pool line.
    # FLOPs: 4 multiply-adds (8) + SiLU (4) per output element.
    c = SPEC.cost(next(s for s in SPEC.shapes if s.id == 6))
    assert c.bytes_read == 4195 * 8192 * 2 + 8192 * 4 * 2 + 8192 * 2 + 8192 * 3 * 2 + 8 + 4 + 1 == 68_861_965
    assert c.bytes_written == 4195 * 8192 * 2 + 8192 * 3 * 2 == 68_780_032
    assert c.flops == {"fp32": 4195 * 8192 * 12}


def test_hand_example_with_state():
    # dim 1, width 3, state [1, 2], tokens [3, 4], weights [1, 10, 100], bias 0.5, no activation:
    # out0 = 1*1 + 10*2 + 100*3 + 0.5 = 321.5, out1 = 1*2 + 10*3 + 100*4 + 0.5 = 432.5; new state [3, 4].
    pool = torch.tensor([[[9.0, 9.0]], [[1.0, 2.0]]])
    inp = _inputs(torch.tensor([[3.0], [4.0]]), torch.tensor([[1.0, 10.0, 100.0]]), torch.tensor([0.5]),
                  pool, [2], [1], [True])
    out, new_pool = SPEC.reference(**inp)
    assert out.tolist() == [[321.5, 432.5]]
    assert new_pool.tolist() == [[[9.0, 9.0]], [[3.0, 4.0]]]       # the other line is untouched
    assert pool[1].tolist() == [[1.0, 2.0]]                          # the reference works on a copy


def test_short_sequences_shift_or_zero_the_state():
    # width 4 (3 state columns). A 1-token sequence with a state shifts it: [1, 2, 3] + [5] -> [2, 3, 5];
    # without one the missing columns are zeros: [0, 0, 7], and its output sees zeros: 1*7.
    pool = torch.tensor([[[1.0, 2.0, 3.0]], [[4.0, 4.0, 4.0]]])
    w = torch.tensor([[1000.0, 100.0, 10.0, 1.0]])
    inp = _inputs(torch.tensor([[5.0], [7.0]]), w, torch.tensor([0.0]), pool, [1, 1], [0, 1], [True, False])
    out, new_pool = SPEC.reference(**inp)
    assert out.tolist() == [[1000 * 1 + 100 * 2 + 10 * 3 + 5.0, 7.0]]
    assert new_pool.tolist() == [[[2.0, 3.0, 5.0]], [[0.0, 0.0, 7.0]]]


def test_matches_per_token_loop_on_varlen_batch():
    gen = torch.Generator().manual_seed(3)
    lens, dim, width = [5, 1, 2, 7], 6, 4
    x = torch.randn(sum(lens), dim, generator=gen, dtype=torch.float64)
    w, b = torch.randn(dim, width, generator=gen, dtype=torch.float64), torch.randn(dim, generator=gen, dtype=torch.float64)
    pool = torch.randn(6, dim, width - 1, generator=gen, dtype=torch.float64)
    idx, has = [4, 0, 2, 5], [True, False, True, True]
    out, new_pool = SPEC.reference(**_inputs(x, w, b, pool, lens, idx, has, "silu"))
    start = 0
    for n, L in enumerate(lens):
        hist = [pool[idx[n], :, i] if has[n] else torch.zeros(dim, dtype=torch.float64) for i in range(width - 1)]
        for t in range(L):
            hist.append(x[start + t])
            acc = b.clone()
            for j in range(width):
                acc += w[:, j] * hist[-width + j]
            torch.testing.assert_close(out[:, start + t], F.silu(acc), rtol=1e-5, atol=1e-5)  # fp32 math
        torch.testing.assert_close(new_pool[idx[n]], torch.stack(hist[-(width - 1):], dim=1), rtol=1e-6, atol=1e-6)
        start += L
    untouched = [i for i in range(6) if i not in idx]
    torch.testing.assert_close(new_pool[untouched], pool[untouched])


def test_eager_updates_the_pool_in_place():
    shape = SPEC.smoke_shapes()[1]
    inp = SPEC.make_inputs(shape, torch.device("cpu"), 0)
    ref_out, ref_pool = SPEC.reference(**{k: (v.clone() if torch.is_tensor(v) else v) for k, v in inp.items()})
    pool = inp["initial_state"]
    out, got_pool = impls_for(SPEC.name)["torch_eager"].fn(**inp)
    assert got_pool is pool
    torch.testing.assert_close(got_pool, ref_pool)
    assert out.stride() == inp["x"].stride()                         # channel-last like x


def test_inputs_are_channel_last_and_cover_the_structure():
    shape = dataclasses.replace(SPEC.smoke_shapes()[1])
    inp = SPEC.make_inputs(shape, torch.device("cpu"), 1)
    x = inp["x"]
    assert x.shape == (96, 15) and x.stride() == (1, 96)
    assert inp["query_start_loc"].tolist() == [0, 2, 11, 12, 15]
    assert len(set(inp["cache_indices"].tolist())) == 4 and inp["initial_state"].shape == (6, 96, 3)
