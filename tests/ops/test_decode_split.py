"""Split-KV (flash-decoding) decode: the rule that picks the number of splits, the combine pass,
and the paged (x-split) and MLA decode kernels with forced split counts against the fp32
reference, in Triton's CPU interpreter on small shapes: GQA, D = 256, a context shorter than one
split, an empty sequence, a partial last tile, out=, zero sequences."""
from __future__ import annotations

import pytest
import torch

from solbench.core.attention_ref import varlen_attention_reference
from solbench.core.baselines import triton_support
from solbench.core.paged import blocks_needed, packed_from_nhd, pool_blocks, random_block_table, x_split_to_nhd
from solbench.kernels.attention import decode_splits, splits_override

DEV = "cuda" if torch.cuda.is_available() else "cpu"
TOL = dict(atol=2e-2, rtol=2e-2)
needs_triton = pytest.mark.skipif(not triton_support(), reason="needs a GPU or TRITON_INTERPRET=1")


@pytest.fixture(autouse=True)
def _interpret(monkeypatch):
    if DEV == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("SOLBENCH_DECODE_SPLITS", raising=False)
    monkeypatch.delenv("SOLBENCH_ATTENTION_TILES", raising=False)


# ---- the rule -----------------------------------------------------------------------------------

@pytest.mark.parametrize("programs,sms,tiles,want", [
    (2, 132, 4, 4),       # paged #1: 1 seq x 2 KV heads, 4 tiles: one split per tile
    (2, 132, 1000, 66),   # long context: about one wave (132 programs)
    (16, 132, 2, 2),      # 4 seqs x 4 KV heads, ctx = 2 tiles
    (48, 132, 100, 3),    # rounded up: 144 programs, decode tiles fit several a SM
    (131, 132, 100, 2),
    (132, 132, 100, 1),   # already a wave: one pass
    (4096, 132, 100, 1),
    (2, 132, 1, 1),       # one tile: nothing to split
    (2, 132, 0, 1),       # no keys at all
    (2, None, 100, 1),    # no device (CPU): one pass
    (0, 132, 100, 1),
])
def test_decode_splits_rule(programs, sms, tiles, want):
    assert decode_splits(programs, sms, tiles) == want


def test_splits_override(monkeypatch):
    assert splits_override() is None
    monkeypatch.setenv("SOLBENCH_DECODE_SPLITS", "3")
    assert splits_override() == 3
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv("SOLBENCH_DECODE_SPLITS", bad)
        with pytest.raises(ValueError, match="positive integer"):
            splits_override()


# ---- the combine pass ---------------------------------------------------------------------------

@needs_triton
def test_combine_merges_splits_by_log_sum_exp():
    """Several chunks of splits (DV 600 pads to 1024: 4 splits a chunk), empty splits (m = -inf,
    l = 0) and a row whose splits are all empty (-> 0), into a strided out."""
    from solbench.kernels._decode_split_triton import combine, split_workspace

    gen = torch.Generator(device=DEV).manual_seed(1)
    b, h, s, dv = 2, 3, 11, 600
    part_o, part_ml = split_workspace(b, h, s, dv, DEV)
    part_o.copy_(torch.randn(b, h, s, dv, device=DEV, generator=gen))
    m = torch.randn(b, h, s, device=DEV, generator=gen) * 4
    l_ = torch.rand(b, h, s, device=DEV, generator=gen) + 0.5
    empty = torch.zeros(b, h, s, dtype=torch.bool, device=DEV)
    empty[0, 1, ::3] = True
    empty[1, 2] = True
    m[empty], l_[empty] = float("-inf"), 0.0
    part_o[empty] = 0.0
    part_ml.copy_(torch.stack([m, l_], -1))
    wide = torch.full((b, h, dv + 8), float("nan"), dtype=torch.bfloat16, device=DEV)
    out = wide[..., :dv]
    combine(part_o, part_ml, out)
    w = torch.exp2(m - m.amax(-1, keepdim=True).nan_to_num(0.0, neginf=0.0)).nan_to_num(0.0)
    ref = (w[..., None] * part_o).sum(2) / (w * l_).sum(-1, keepdim=True).clamp_min(1e-30)
    ref[1, 2] = 0.0
    torch.testing.assert_close(out.float(), ref, **TOL)
    assert torch.all(out[1, 2] == 0)


# ---- paged decode (vLLM x-split layout) ---------------------------------------------------------

def _x_split_decode(lens, h, hkv, d, bs=16, seed=7, dtype=torch.bfloat16):
    gen = torch.Generator(device=DEV).manual_seed(seed)
    x = 16 // torch.tensor([], dtype=dtype).element_size()
    nb = pool_blocks(len(lens) * max(blocks_needed([max(n, 1) for n in lens], bs)))
    query = torch.randn(len(lens), h, d, dtype=dtype, device=DEV, generator=gen)
    kc = torch.randn(nb, hkv, d // x, bs, x, dtype=dtype, device=DEV, generator=gen)
    vc = torch.randn(nb, hkv, d, bs, dtype=dtype, device=DEV, generator=gen)
    bt = random_block_table([max(n, 1) for n in lens], bs, nb, DEV, gen)
    sl = torch.tensor(lens, dtype=torch.int32, device=DEV)
    return query, kc, vc, bt, sl


def _x_split_reference(query, kc, vc, bt, sl):
    lens = [int(n) for n in sl.tolist()]
    k_nhd, v_nhd = x_split_to_nhd(kc, vc)
    k, v = packed_from_nhd(k_nhd, bt, lens), packed_from_nhd(v_nhd, bt, lens)
    b = query.shape[0]
    return varlen_attention_reference(query, k, v, torch.arange(b + 1, device=DEV),
                                      torch.tensor([0] + lens, device=DEV).cumsum(0), scale=query.shape[-1] ** -0.5,
                                      causal=False, out_dtype=torch.float32)


@needs_triton
@pytest.mark.parametrize("lens,h,hkv,d", [
    ([70, 5, 0, 33], 8, 2, 64),   # GQA 4; 5 tiles, a context shorter than one split, an empty sequence
    ([40, 1], 4, 1, 256),         # D = 256 (two column chunks), MQA
    ([23], 6, 3, 80),             # head_size padded in registers (64 + 16), partial last tile
])
@pytest.mark.parametrize("splits", ["2", "3", "7"])
def test_paged_decode_split_matches_reference(lens, h, hkv, d, splits, monkeypatch):
    from solbench.kernels.attention import paged_attention_decode

    monkeypatch.setenv("SOLBENCH_DECODE_SPLITS", splits)
    monkeypatch.setenv("SOLBENCH_ATTENTION_TILES", "16,16,4,1")  # 16-key tiles: several a split
    query, kc, vc, bt, sl = _x_split_decode(lens, h, hkv, d)
    out = torch.full_like(query, float("nan"))
    got = paged_attention_decode(query, kc, vc, bt, sl, out=out)
    assert got is out
    torch.testing.assert_close(got.float(), _x_split_reference(query, kc, vc, bt, sl), **TOL)
    assert torch.all(got[[i for i, n in enumerate(lens) if n == 0]] == 0)


@needs_triton
def test_paged_decode_rule_splits_on_a_device_with_idle_sms(monkeypatch):
    """The rule as a GPU launch takes it (an SM count stands in for the device): 2 sequences x 1
    KV head on 132 SMs split into one range per 16-key tile of the block table (3), fp16."""
    import solbench.kernels._attention_triton as attention_triton
    import solbench.kernels._decode_split_triton as split_triton
    from solbench.kernels.attention import paged_attention_decode

    monkeypatch.setattr(attention_triton, "sm_count", lambda t: 132)
    monkeypatch.setenv("SOLBENCH_ATTENTION_TILES", "16,16,4,1")
    seen = []
    real = split_triton.split_workspace
    monkeypatch.setattr(attention_triton, "split_workspace", lambda *a: seen.append(a[2]) or real(*a))
    query, kc, vc, bt, sl = _x_split_decode([37, 20], 4, 1, 64, dtype=torch.float16)
    got = paged_attention_decode(query, kc, vc, bt, sl)
    assert seen == [3]
    torch.testing.assert_close(got.float(), _x_split_reference(query, kc, vc, bt, sl), **TOL)


@needs_triton
def test_split_decode_zero_sequences_and_unified_unaffected(monkeypatch):
    from solbench.kernels.attention import paged_attention_decode, unified_attention

    monkeypatch.setenv("SOLBENCH_DECODE_SPLITS", "4")
    query, kc, vc, bt, sl = _x_split_decode([9], 4, 2, 64)
    assert paged_attention_decode(query[:0], kc, vc, bt[:0], sl[:0]).shape == (0, 4, 64)
    # The varlen path (unified_attention) never splits: the switch leaves it as it was.
    q = query.clone()
    k_nhd, v_nhd = x_split_to_nhd(kc, vc)
    cu = torch.tensor([0, 1], dtype=torch.int32, device=DEV)
    got = unified_attention(q, k_nhd.contiguous(), v_nhd.contiguous(), cu, sl, bt, 1)
    torch.testing.assert_close(got.float(), _x_split_reference(query, kc, vc, bt, sl), **TOL)


# ---- MLA decode ---------------------------------------------------------------------------------

def _mla_inputs(lens, h=5, r=64, p=8, seed=9):
    gen = torch.Generator(device=DEV).manual_seed(seed)
    q = torch.randn(len(lens), h, r + p, dtype=torch.bfloat16, device=DEV, generator=gen)
    pages = sum(lens) + 9
    kv = torch.randn(pages, 1, 1, r + p, dtype=torch.bfloat16, device=DEV, generator=gen)
    indptr = torch.tensor([0] + lens, device=DEV).cumsum(0).to(torch.int32)
    indices = torch.randperm(pages, generator=gen, device=DEV)[:sum(lens)].to(torch.int32)
    return q, kv, indptr, indices


def _mla_reference(q, kv, indptr, indices, r):
    c = kv.view(-1, q.shape[-1])[indices.long()][:, None]
    b = q.shape[0]
    return varlen_attention_reference(q, c, c[..., :r], torch.arange(b + 1, device=DEV), indptr,
                                      scale=q.shape[-1] ** -0.5, causal=False, out_dtype=torch.float32)


@needs_triton
@pytest.mark.parametrize("splits", ["2", "3", "8"])
def test_mla_decode_split_matches_reference(splits, monkeypatch):
    """Heads not a multiple of the head tile, 3 key tiles of 32, an empty sequence, a context
    shorter than one split."""
    from solbench.kernels.mla import mla_decode

    monkeypatch.setenv("SOLBENCH_DECODE_SPLITS", splits)
    q, kv, indptr, indices = _mla_inputs([70, 0, 7])
    out = torch.full((3, 5, 64), float("nan"), dtype=torch.bfloat16, device=DEV)
    got = mla_decode(q, kv, indptr, indices, 64, out=out)
    assert got is out
    torch.testing.assert_close(got.float(), _mla_reference(q, kv, indptr, indices, 64), **TOL)
    assert torch.all(got[1] == 0)
    assert mla_decode(q[:0], kv, indptr[:1], indices[:0], 64).shape == (0, 5, 64)


@needs_triton
def test_mla_decode_rejects_strided_out():
    from solbench.kernels.mla import mla_decode

    q, kv, indptr, indices = _mla_inputs([4])
    out = torch.empty(1, 5, 128, dtype=torch.bfloat16, device=DEV)[..., ::2]
    with pytest.raises(ValueError, match="contiguous in its last dim"):
        mla_decode(q, kv, indptr, indices, 64, out=out)


# ---- CUDA graphs ---------------------------------------------------------------------------------

@pytest.mark.gpu
def test_split_decode_is_captured_by_a_cuda_graph():
    """The split launches (rule-chosen on a small batch) allocate their workspace and launch the
    combine inside the capture; a replay on new inputs gives the new result."""
    from solbench.kernels.attention import paged_attention_decode
    from solbench.kernels.mla import mla_decode

    query, kc, vc, bt, sl = _x_split_decode([300], 16, 2, 256)
    q, kv, indptr, indices = _mla_inputs([300], h=16, r=512, p=64)
    out, out_mla = torch.empty_like(query), q.new_empty(1, 16, 512)
    paged_attention_decode(query, kc, vc, bt, sl, out=out)  # compile outside the capture
    mla_decode(q, kv, indptr, indices, 512, out=out_mla)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        paged_attention_decode(query, kc, vc, bt, sl, out=out)
        mla_decode(q, kv, indptr, indices, 512, out=out_mla)
    query.copy_(torch.randn_like(query))
    q.copy_(torch.randn_like(q))
    out.fill_(float("nan"))
    out_mla.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out.float(), _x_split_reference(query, kc, vc, bt, sl), **TOL)
    torch.testing.assert_close(out_mla.float(), _mla_reference(q, kv, indptr, indices, 512), **TOL)
