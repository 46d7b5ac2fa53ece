"""paged_attention_decode: hand-counted cost, the aiter x-split cache layout, and the reference
against aiter's own loop formulation (op_tests/test_pa.py ``run_native``) in float64."""
import torch

from solbench.core.spec import get_spec

spec = get_spec("paged_attention_decode")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_5():
    sh = next(s for s in spec.shapes if s.id == 5)   # 1 seq, ctx 128, heads 4/1, 128, block 16, bf16
    c = spec.cost(sh)
    assert c.flops == {"bf16_tc": 2 * 128 * 4 * (128 + 128)} == {"bf16_tc": 262_144}
    q = 1 * 4 * 128 * 2                 # the new token's 4 query heads
    kv = 2 * 128 * 1 * 128 * 2          # 128 cached tokens of K and V, one kv head
    meta = 8 * 4 + 4                    # 128 / 16 = 8 block-table entries, one seq_len
    assert c.bytes_read == q + kv + meta == 66_596
    assert c.bytes_written == q


def test_fp16_shapes_use_fp16():
    sh = next(s for s in spec.shapes if s.id == 4)
    x = spec.make_inputs(sh, CPU, 0)
    assert x["query"].dtype == torch.float16 and x["k_cache"].dtype == torch.float16
    assert spec.cost(sh).flops.keys() == {"fp16_tc"}
    assert spec.tolerance(sh).rms_rtol < spec.tolerance(next(s for s in spec.shapes if s.id == 5)).rms_rtol


def test_layout_is_x_split():
    sh = next(s for s in spec.shapes if s.id == 3)   # 4 seqs, ctx 128, heads 32/4, 128, block 16
    x = spec.make_inputs(sh, CPU, 0)
    nb = x["k_cache"].shape[0]
    assert x["k_cache"].shape == (nb, 4, 128 // 8, 16, 8)      # x = 16 bytes / 2
    assert x["v_cache"].shape == (nb, 4, 128, 16)
    assert x["block_tables"].shape == (4, 8) and x["seq_lens"].tolist() == [128] * 4
    assert x["block_tables"].unique().numel() == 32


def _aiter_native(x):
    """aiter's run_native: per sequence, token j's key is k_cache[block, :, :, off, :] flattened
    to [heads, head_size], its value v_cache[block, :, :, off]; kv heads repeated."""
    q, kc, vc, bt = x["query"], x["k_cache"], x["v_cache"], x["block_tables"]
    hkv, bs = vc.shape[1], vc.shape[3]
    g = q.shape[1] // hkv
    out = torch.zeros(q.shape, dtype=torch.float64)
    for b, n in enumerate(x["seq_lens"].tolist()):
        keys = torch.stack([kc[int(bt[b, j // bs]), :, :, j % bs, :].reshape(hkv, -1) for j in range(n)]).double()
        vals = torch.stack([vc[int(bt[b, j // bs]), :, :, j % bs] for j in range(n)]).double()
        keys, vals = keys.repeat_interleave(g, dim=1), vals.repeat_interleave(g, dim=1)
        s = torch.einsum("hd,khd->hk", q[b].double(), keys) * x["scale"]
        out[b] = torch.einsum("hk,khd->hd", torch.softmax(s, dim=-1), vals)
    return out


def test_reference_matches_aiter_native_loop():
    sh = next(s for s in spec.shapes if s.id == 3)
    x = spec.make_inputs(sh, CPU, 1)
    x["seq_lens"] = torch.tensor([128, 37, 1, 100], dtype=torch.int32)   # ragged contexts too
    got = spec.reference(**x).double()
    want = _aiter_native(x).to(torch.bfloat16).double()
    assert (got - want).abs().max() <= 2 ** -7
