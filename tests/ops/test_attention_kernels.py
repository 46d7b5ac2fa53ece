"""Our attention kernel (solbench.kernels.attention) against the fp32 reference, in Triton's CPU
interpreter on small shapes: GQA ratios, partial pages, chunked prefill (L_q < L_k), one-token
decode, an empty sequence in a batch, strided q, out=, the x-split decode layout and errors."""
from __future__ import annotations

import pytest
import torch

from solbench.core.attention_ref import varlen_attention_reference
from solbench.core.baselines import triton_support
from solbench.core.paged import blocks_needed, packed_from_nhd, pool_blocks, random_block_table, x_split_to_nhd

pytestmark = pytest.mark.skipif(not triton_support(), reason="needs a GPU or TRITON_INTERPRET=1")
DEV = "cuda" if torch.cuda.is_available() else "cpu"
# bf16 output against the fp32 reference: rounding plus bf16 P.V.
TOL = dict(atol=2e-2, rtol=2e-2)


@pytest.fixture(autouse=True)
def _interpret(monkeypatch):
    if DEV == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "1")


def _paged(lq, lk, h, hkv, d, bs=16, seed=0, dtype=torch.bfloat16):
    gen = torch.Generator(device=DEV).manual_seed(seed)
    nb = pool_blocks(len(lk) * max(blocks_needed(lk, bs) + [1]))
    q = torch.randn(sum(lq), h, d, dtype=dtype, device=DEV, generator=gen)
    kc = torch.randn(nb, bs, hkv, d, dtype=dtype, device=DEV, generator=gen)
    vc = torch.randn(nb, bs, hkv, d, dtype=dtype, device=DEV, generator=gen)
    cu = torch.tensor([0] + lq, device=DEV).cumsum(0).to(torch.int32)
    sk = torch.tensor(lk, dtype=torch.int32, device=DEV)
    bt = random_block_table([max(n, 1) for n in lk], bs, nb, DEV, gen)
    return q, kc, vc, cu, sk, bt


def _reference_paged(q, kc, vc, cu, sk, bt, causal=True):
    lk = [int(n) for n in sk.tolist()]
    k, v = packed_from_nhd(kc, bt, lk), packed_from_nhd(vc, bt, lk)
    cu_k = torch.tensor([0] + lk, device=q.device).cumsum(0)
    return varlen_attention_reference(q, k, v, cu, cu_k, scale=q.shape[-1] ** -0.5, causal=causal,
                                      out_dtype=torch.float32)


@pytest.mark.parametrize("lq,lk,h,hkv,d", [
    ([40, 3, 17], [40, 9, 70], 4, 2, 64),   # chunked prefill with contexts, partial pages
    ([5], [5], 8, 1, 128),                  # G = 8 (MQA-like), one short sequence
    ([20], [20], 14, 2, 80),                # G = 7, head_size padded in registers
    ([1, 1, 1], [33, 1, 17], 8, 2, 72),     # decode rows through the varlen path
    ([3, 0, 4], [3, 5, 4], 4, 4, 64),       # an empty sequence in the batch
    ([9], [9], 5, 5, 256),                  # G = 1, D = 256
])
@pytest.mark.parametrize("stage,direct", [
    (False, False),  # block-table lookups per tile, packed grid (binary search for the sequence)
    (False, True),   # a slot range per sequence
    (True, True),    # pages staged dense first (long prefills), direct grid
    (True, False),   # staged, packed grid
])
def test_unified_matches_reference(lq, lk, h, hkv, d, stage, direct, monkeypatch):
    from solbench.kernels import _attention_triton
    from solbench.kernels.attention import unified_attention

    monkeypatch.setattr(_attention_triton, "stage_keys", lambda *a: stage)
    monkeypatch.setattr(_attention_triton, "direct_grid", lambda *a: direct)

    q, kc, vc, cu, sk, bt = _paged(lq, lk, h, hkv, d)
    out = torch.full_like(q, float("nan"))
    # The staging buffer is bounded by max_seqlen_k when given, else by the block table's width.
    got = unified_attention(q, kc, vc, cu, sk, bt, max(lq), out=out, max_seqlen_k=max(lk) if direct else None)
    assert got is out
    torch.testing.assert_close(got.float(), _reference_paged(q, kc, vc, cu, sk, bt), **TOL)


def test_staged_keys_with_a_page_size_that_is_not_a_power_of_two(monkeypatch):
    from solbench.kernels import _attention_triton
    from solbench.kernels.attention import unified_attention

    monkeypatch.setattr(_attention_triton, "stage_keys", lambda *a: True)
    q, kc, vc, cu, sk, bt = _paged([9, 20], [30, 20], 6, 3, 32, bs=12, seed=7)
    got = unified_attention(q, kc, vc, cu, sk, bt, 20)
    torch.testing.assert_close(got.float(), _reference_paged(q, kc, vc, cu, sk, bt), **TOL)


def test_stage_rule():
    from solbench.kernels.attention import STAGE_MAX_BYTES, STAGE_MIN_ROWS, stage_keys

    assert stage_keys(6294 * 8, 1, 13 << 20)                        # unified #20: one long prefill
    assert not stage_keys(256 * 4 * 324, 324, 170 << 20)            # #9: 324 sequences of 256 tokens
    assert not stage_keys(STAGE_MIN_ROWS * 2, 1, STAGE_MAX_BYTES + 1)  # the buffer would not fit


def test_tiles_by_rows_per_sequence():
    from dataclasses import astuple

    from solbench.kernels.attention import default_config as _config

    def default_config(*args):
        return astuple(_config(*args))

    assert default_config(128, 8, True) == (16, 32, 2, 2)            # decode: G rows
    assert default_config(128, 1024, True) == (64, 64, 4, 2)         # unified #9: 256 tokens x G 4
    assert default_config(128, 1792, True) == (64, 64, 4, 2)         # #16-#19: 256 tokens x G 7
    assert default_config(128, 2560, True) == (128, 64, 8, 2)        # #0: 256 tokens x G 10
    assert default_config(128, 6294 * 8, True) == (128, 128, 8, 3)   # #20
    assert default_config(256, 5926 * 8, True) == (128, 64, 8, 2)    # #24: D 256


def test_short_context_decode_rule():
    from solbench.kernels.attention import AttentionConfig, short_context_config

    decode = AttentionConfig(16, 32, 2, 2)
    # paged #3-#7: 4 sequences x 4-8 KV heads, 128 keys: one 128-key tile, one pass
    assert short_context_config(decode, 128, 128, 32, 132) == AttentionConfig(16, 128, 4, 2)
    assert short_context_config(decode, 128, 48, 1, 132) == AttentionConfig(16, 64, 4, 2)
    assert short_context_config(decode, 128, 16, 1, 132).block_n == 32
    assert short_context_config(decode, 256, 128, 2, 132) is None     # paged #1: D 256 spills at 128 keys
    assert short_context_config(decode, 128, 256, 2, 132) is None     # longer contexts split
    assert short_context_config(decode, 128, 64, 4096, 132) is None   # paged #0: the launch fills the SMs
    assert short_context_config(decode, 128, 64, 4, None) is None     # no device


def test_decode_plan_precedence(monkeypatch):
    from solbench.kernels.attention import AttentionConfig, decode_plan

    monkeypatch.delenv("SOLBENCH_ATTENTION_TILES", raising=False)
    monkeypatch.delenv("SOLBENCH_DECODE_SPLITS", raising=False)
    # paged #3 (4 x 4 programs, 128 keys): the one-pass tile, no split
    assert decode_plan(128, 8, 128, 16, 132, True) == (AttentionConfig(16, 128, 4, 2), 1)
    # paged #1 (D 256): the default tile, split over its 4 key tiles
    assert decode_plan(256, 8, 128, 2, 132, True) == (AttentionConfig(16, 32, 2, 2), 4)
    assert decode_plan(128, 8, 128, 16, None, False) == (AttentionConfig(16, 64, 4, 1), 1)  # CPU
    monkeypatch.setenv("SOLBENCH_DECODE_SPLITS", "2")
    assert decode_plan(128, 8, 128, 16, 132, True) == (AttentionConfig(16, 128, 4, 2), 2)
    # An explicit tile is used as given: the short-context tile does not replace it
    monkeypatch.setenv("SOLBENCH_ATTENTION_TILES", "16,64,4,1")
    assert decode_plan(128, 8, 128, 16, 132, True) == (AttentionConfig(16, 64, 4, 1), 2)
    monkeypatch.delenv("SOLBENCH_DECODE_SPLITS")
    assert decode_plan(128, 8, 128, 16, 132, True) == (AttentionConfig(16, 64, 4, 1), 2)  # 2 tiles of 64


def test_direct_grid_rule():
    from solbench.kernels.attention import direct_grid

    assert direct_grid(324, 8, 324 * 8 + 324)       # equal-length prefills: no empty slots
    assert not direct_grid(201, 256, 4296 * 8 // 128 + 201)  # one long prefill among decodes


def test_unified_without_keys_gives_zero_and_fp16():
    from solbench.kernels.attention import unified_attention

    q, kc, vc, cu, sk, bt = _paged([2, 3], [0, 3], 2, 1, 32, dtype=torch.float16)
    sk[0] = 0  # a sequence whose queries see no key (non-causal so nothing else is masked)
    got = unified_attention(q, kc, vc, cu, sk, bt, 3, causal=False)
    assert torch.all(got[:2] == 0)
    torch.testing.assert_close(got.float(), _reference_paged(q, kc, vc, cu, sk, bt, causal=False), **TOL)


def test_unified_strided_q_and_zero_tokens():
    from solbench.kernels.attention import unified_attention

    q, kc, vc, cu, sk, bt = _paged([6, 2], [6, 11], 4, 2, 64, seed=3)
    wide = torch.randn(q.shape[0], q.shape[1], 2 * q.shape[2], dtype=q.dtype, device=DEV)
    wide[..., :64] = q
    strided = wide[..., :64]  # rows strided, last dim contiguous
    assert not strided.is_contiguous()
    got = unified_attention(strided, kc, vc, cu, sk, bt, 6)
    torch.testing.assert_close(got.float(), _reference_paged(q, kc, vc, cu, sk, bt), **TOL)
    empty = q[:0]
    assert unified_attention(empty, kc, vc, torch.zeros(1, dtype=torch.int32, device=DEV), sk[:0], bt[:0], 0).shape \
        == (0, 4, 64)


def test_varlen_dense_causal_and_not():
    from solbench.kernels.attention import varlen_attention

    gen = torch.Generator(device=DEV).manual_seed(5)
    lens_q, lens_k = [7, 30, 1], [7, 33, 12]
    q = torch.randn(sum(lens_q), 6, 72, dtype=torch.bfloat16, device=DEV, generator=gen)
    k = torch.randn(sum(lens_k), 2, 72, dtype=torch.bfloat16, device=DEV, generator=gen)
    v = torch.randn(sum(lens_k), 2, 72, dtype=torch.bfloat16, device=DEV, generator=gen)
    cq = torch.tensor([0] + lens_q, device=DEV).cumsum(0).to(torch.int32)
    ck = torch.tensor([0] + lens_k, device=DEV).cumsum(0).to(torch.int32)
    for causal in (False, True):
        got = varlen_attention(q, k, v, cq, ck, max(lens_q), causal=causal)
        ref = varlen_attention_reference(q, k, v, cq, ck, scale=72 ** -0.5, causal=causal, out_dtype=torch.float32)
        torch.testing.assert_close(got.float(), ref, **TOL)


def _poison_unused_slots(kc, vc, bt, lens, bs):
    """NaN in every cache slot no sequence reaches (what torch.empty may hold in a serving cache):
    the kernel may read whole pages, but keys past a sequence must not reach its output."""
    used = torch.zeros(kc.shape[0], bs, dtype=torch.bool, device=kc.device)
    for s, n in enumerate(lens):
        for t in range(n):
            used[int(bt[s, t // bs]), t % bs] = True
    kc.masked_fill_(~used[:, None, None, :, None], float("nan"))
    vc.masked_fill_(~used[:, None, None, :], float("nan"))


@pytest.mark.parametrize("h,hkv,ctx,splits", [(8, 2, 37, None), (4, 1, 16, None), (3, 3, 5, None),
                                              (8, 2, 45, "2"), (4, 1, 70, "3")])
def test_paged_decode_x_split(h, hkv, ctx, splits, monkeypatch):
    from solbench.kernels.attention import paged_attention_decode

    if splits:  # flash-decoding's key ranges (a CPU launch otherwise takes one pass)
        monkeypatch.setenv("SOLBENCH_DECODE_SPLITS", splits)

    gen = torch.Generator(device=DEV).manual_seed(7)
    b, d, bs, x = 3, 64, 16, 8
    lens = [ctx, max(1, ctx - 4), 1]
    nb = pool_blocks(len(lens) * max(blocks_needed(lens, bs)))  # the table's stale entries are blocks too
    query = torch.randn(b, h, d, dtype=torch.bfloat16, device=DEV, generator=gen)
    kc = torch.randn(nb, hkv, d // x, bs, x, dtype=torch.bfloat16, device=DEV, generator=gen)
    vc = torch.randn(nb, hkv, d, bs, dtype=torch.bfloat16, device=DEV, generator=gen)
    bt = random_block_table(lens, bs, nb, DEV, gen)
    sl = torch.tensor(lens, dtype=torch.int32, device=DEV)
    _poison_unused_slots(kc, vc, bt, lens, bs)
    got = paged_attention_decode(query, kc, vc, bt, sl)
    assert not got.isnan().any()
    k_nhd, v_nhd = x_split_to_nhd(kc, vc)
    k, v = packed_from_nhd(k_nhd, bt, lens), packed_from_nhd(v_nhd, bt, lens)
    ref = varlen_attention_reference(query, k, v, torch.arange(b + 1, device=DEV),
                                     torch.tensor([0] + lens, device=DEV).cumsum(0), scale=d ** -0.5, causal=False,
                                     out_dtype=torch.float32)
    torch.testing.assert_close(got.float(), ref, **TOL)


def test_errors_name_what_is_supported():
    from solbench.kernels.attention import unified_attention, varlen_attention

    q, kc, vc, cu, sk, bt = _paged([4], [4], 4, 2, 64)
    with pytest.raises(TypeError, match="supported: bfloat16, float16"):
        unified_attention(q.float(), kc, vc, cu, sk, bt, 4)
    with pytest.raises(ValueError, match="not a multiple of"):
        unified_attention(q[:, :3], kc, vc, cu, sk, bt, 4)
    with pytest.raises(TypeError, match="int32"):
        unified_attention(q, kc, vc, cu.long(), sk, bt, 4)
    with pytest.raises(ValueError, match="nhd"):
        unified_attention(q, kc[..., None], vc, cu, sk, bt, 4)
    with pytest.raises(ValueError, match="expected"):
        unified_attention(q, kc, vc, cu, sk, bt, 4, out=torch.empty_like(q[:1]))
    with pytest.raises(ValueError, match="max_seqlen_k"):
        unified_attention(q, kc, vc, cu, sk, bt, 4, max_seqlen_k=-1)
    with pytest.raises(ValueError, match="head_size"):
        varlen_attention(q, q[:, :2, :32].contiguous(), q[:, :2, :32].contiguous(), cu, cu, 4)


def test_mla_decode_matches_reference():
    """Heads not a multiple of the head tile, a sequence longer than one key tile, rope part
    narrower than its padded tile."""
    from solbench.kernels.mla import mla_decode

    gen = torch.Generator(device=DEV).manual_seed(9)
    b, h, r, p, lens = 3, 5, 64, 8, [40, 1, 7]
    q = torch.randn(b, h, r + p, dtype=torch.bfloat16, device=DEV, generator=gen)
    pages = sum(lens) + 9
    kv = torch.randn(pages, 1, 1, r + p, dtype=torch.bfloat16, device=DEV, generator=gen)
    indptr = torch.tensor([0] + lens, device=DEV).cumsum(0).to(torch.int32)
    indices = torch.randperm(pages, generator=gen, device=DEV)[:sum(lens)].to(torch.int32)
    out = torch.full((b, h, r), float("nan"), dtype=torch.bfloat16, device=DEV)
    got = mla_decode(q, kv, indptr, indices, r, out=out)
    c = kv.view(-1, r + p)[indices.long()][:, None]
    ref = varlen_attention_reference(q, c, c[..., :r], torch.arange(b + 1, device=DEV), indptr,
                                     scale=(r + p) ** -0.5, causal=False, out_dtype=torch.float32)
    torch.testing.assert_close(got.float(), ref, **TOL)
    with pytest.raises(ValueError, match="power of two"):
        mla_decode(q, kv, indptr, indices, 48)


@pytest.mark.gpu
def test_unified_attention_is_captured_and_replayed_by_a_cuda_graph():
    """Nothing syncs with the host: the call captures into a CUDA graph, and a replay on new
    inputs written into the same buffers gives the new result."""
    from solbench.kernels.attention import unified_attention

    q, kc, vc, cu, sk, bt = _paged([40, 3, 17], [40, 9, 70], 8, 2, 128)
    out = torch.empty_like(q)
    unified_attention(q, kc, vc, cu, sk, bt, 40, out=out)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        unified_attention(q, kc, vc, cu, sk, bt, 40, out=out)
    q2, kc2, vc2, *_ = _paged([40, 3, 17], [40, 9, 70], 8, 2, 128, seed=4)
    q.copy_(q2), kc.copy_(kc2), vc.copy_(vc2)
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out.float(), _reference_paged(q, kc, vc, cu, sk, bt), **TOL)
