"""The CUDA flash attention on an sm_90 GPU: within the operators' tolerance of the fp32 reference
and close to the Triton kernel on varlen batches (causal and not, GQA groups 1-10 with 7 and 10, whose
CTAs hold 126 and 120 rows, sequences not a multiple of the tiles, one token, L_k > L_q
bottom-right, L_k < L_q with rows that see no key; each in the kernel's three variants:
ping-pong, free-running, persistent), on paged caches (keys staged dense), on
the catalog's unified #20/#21 shapes, with strided q / out and CUDA-graph capture, and head sizes
72 and 80 (the 80-column build: columns past 72 neither read nor written); NaN-filled
outputs catch unwritten rows, NaN / inf in k / v rows past a sequence's keys (padding, unused
staging rows) must not reach the output. Skipped without an sm_90 GPU or NVRTC."""
import pytest
import torch

from solbench.kernels.cuda import jit

if not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
    pytest.skip("needs an sm_90 GPU (H100 / H200)", allow_module_level=True)
if jit.nvrtc_unavailable_reason():
    pytest.skip(f"no NVRTC: {jit.nvrtc_unavailable_reason()}", allow_module_level=True)

from solbench.kernels.attention import _eager_attention, unified_attention, varlen_attention  # noqa: E402

pytestmark = pytest.mark.gpu
BF16 = torch.bfloat16


def _reference(q, k, v, cu_q, cu_k, causal, seqused_k=None, block_table=None):
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    _eager_attention(q, k, v, out, cu_q, cu_k, seqused_k, block_table, q.shape[2] ** -0.5, causal)
    return out


def _check(got, ref, what):
    assert not got.isnan().any(), f"{what}: unwritten (NaN) rows"
    err = float((got.float() - ref).norm() / ref.norm().clamp_min(1e-6))
    assert err < 1e-2, f"{what}: relative error {err:.3g}"


VARIANTS = ["", "pingpong=0", "persistent=1"]  # SOLBENCH_ATTN_CUDA: default (ping-pong), free-running, persistent


def _cu(lens):
    return torch.tensor([0, *torch.tensor(lens).cumsum(0).tolist()], dtype=torch.int32, device="cuda")


def _paged_caches(lens, hkv, page, d, g):
    """nhd K/V caches holding sequences of ``lens`` keys in shuffled blocks (3 spare), the block
    table, and NaN in each sequence's unused slots of its last page (read in place, they must
    not reach the output)."""
    pages = [-(-n // page) for n in lens]
    kc = torch.randn(sum(pages) + 3, page, hkv, d, device="cuda", generator=g).to(BF16)
    vc = torch.randn(sum(pages) + 3, page, hkv, d, device="cuda", generator=g).to(BF16)
    perm = torch.randperm(sum(pages) + 3, device="cuda", generator=g)[:sum(pages)].int()
    bt = torch.zeros(len(lens), max(pages), dtype=torch.int32, device="cuda")
    at = 0
    for s, n in enumerate(pages):
        bt[s, :n] = perm[at:at + n]
        at += n
        kc[bt[s, n - 1].long(), lens[s] % page or page:] = float("nan")
        vc[bt[s, n - 1].long(), lens[s] % page or page:] = float("nan")
    return kc, vc, bt


@pytest.mark.parametrize("lens_q,lens_k,h,hkv", [([1000], [1000], 8, 8), ([37, 300, 1, 129], [37, 300, 1, 129], 32, 4),
                                                 ([64, 200], [300, 200], 16, 2), ([2018], [2018], 32, 8),
                                                 ([500, 77], [500, 77], 28, 4), ([260], [260], 40, 4),
                                                 ([300, 5, 2018], [150, 5, 2018], 32, 8)])  # rows with no key
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
def test_varlen_matches_the_reference_and_triton(lens_q, lens_k, h, hkv, causal, variant, monkeypatch):
    monkeypatch.setenv("SOLBENCH_ATTN_CUDA", variant)
    g = torch.Generator(device="cuda").manual_seed(sum(lens_q))
    q = torch.randn(sum(lens_q), h, 128, device="cuda", generator=g).to(BF16)
    k = torch.randn(sum(lens_k), hkv, 128, device="cuda", generator=g).to(BF16)
    v = torch.randn(sum(lens_k), hkv, 128, device="cuda", generator=g).to(BF16)
    cu_q, cu_k = _cu(lens_q), _cu(lens_k)
    out = torch.full_like(q, float("nan"))
    varlen_attention(q, k, v, cu_q, cu_k, max(lens_q), causal=causal, out=out, backend="cuda")
    what = f"{lens_q}/{lens_k} {h}/{hkv} causal={causal} {variant}"
    _check(out, _reference(q, k, v, cu_q, cu_k, causal), what)
    tri = varlen_attention(q, k, v, cu_q, cu_k, max(lens_q), causal=causal)
    _check(out, tri.float(), what + " against triton")


# (q_last: chunked prefill, each sequence's last q_last keys are the queries; 0: all of them)
@pytest.mark.parametrize("lens,h,hkv,page,q_last", [([6294], 32, 4, 16, 0), ([2018], 32, 8, 16, 0),
                                                    ([100, 17, 300], 16, 2, 16, 0), ([100, 17, 300], 16, 2, 64, 90),
                                                    ([300, 129], 8, 2, 128, 90)])
# and the caches read in place, one TMA box a page (alone and persistent)
@pytest.mark.parametrize("variant", VARIANTS + ["paged=1", "paged=1,persistent=1"])
def test_paged_prefill_matches_the_reference(lens, h, hkv, page, q_last, variant, monkeypatch):
    monkeypatch.setenv("SOLBENCH_ATTN_CUDA", variant)
    # The staging buffers are new_empty and staging writes each sequence's keys only: fill the
    # rest with NaN, so keys past a sequence's end in its last tile must not reach the output,
    # not even as 0 * NaN.
    from solbench.kernels import _attention_triton as tri

    staged = tri._stage

    def stage_then_poison(k, v, seqused_k, block_table, stage_rows):
        assert "paged=1" not in variant, "the caches read in place are not staged"
        ks, vs = staged(k, v, seqused_k, block_table, stage_rows)
        for s, n in enumerate(seqused_k.tolist()):
            ks[s * stage_rows + n:(s + 1) * stage_rows] = float("nan")
            vs[s * stage_rows + n:(s + 1) * stage_rows] = float("nan")
        return ks, vs

    monkeypatch.setattr(tri, "_stage", stage_then_poison)
    g = torch.Generator(device="cuda").manual_seed(len(lens))
    kc, vc, bt = _paged_caches(lens, hkv, page, 128, g)
    lens_q = [min(n, q_last) if q_last else n for n in lens]
    q = torch.randn(sum(lens_q), h, 128, device="cuda", generator=g).to(BF16)
    cu_q = _cu(lens_q)
    used = torch.tensor(lens, dtype=torch.int32, device="cuda")
    out = torch.full_like(q, float("nan"))
    unified_attention(q, kc, vc, cu_q, used, bt, max(lens_q), out=out, backend="cuda")
    _check(out, _reference(q, kc, vc, cu_q, None, True, used, bt), f"paged {lens} {variant}")


@pytest.mark.parametrize("lens,hkv", [([100, 300], 2),
                                      # 5120 items on 132 SMs: persistent CTAs reuse stages they zeroed
                                      ([37, 300, 129, 5, 77, 201, 1, 64] * 8, 8)])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("d", [128, 72])
def test_rows_past_the_last_key_do_not_reach_the_output(lens, hkv, causal, variant, d, monkeypatch):
    # k / v with padding rows after cu_k[-1] (a serving buffer's spare capacity) holding NaN and
    # inf: the last tile's TMA load reads them, p is 0 there, and 0 * NaN would be NaN.
    monkeypatch.setenv("SOLBENCH_ATTN_CUDA", variant)
    g = torch.Generator(device="cuda").manual_seed(5)
    q = torch.randn(sum(lens), 4 * hkv, d, device="cuda", generator=g).to(BF16)
    k = torch.randn(sum(lens) + 200, hkv, d, device="cuda", generator=g).to(BF16)
    v = torch.randn(sum(lens) + 200, hkv, d, device="cuda", generator=g).to(BF16)
    # the last sequence's last tile reads past its end: inf first, then NaN
    k[sum(lens):] = float("nan")
    v[sum(lens):sum(lens) + 20], v[sum(lens) + 20:] = float("inf"), float("nan")
    cu = _cu(lens)
    out = torch.full_like(q, float("nan"))
    varlen_attention(q, k, v, cu, cu, max(lens), causal=causal, out=out, backend="cuda")
    _check(out, _reference(q, k[:sum(lens)], v[:sum(lens)], cu, cu, causal), f"padded k/v d={d} causal={causal} {variant}")


def test_strided_q_and_out_and_graph_capture():
    lens = [300, 77]
    g = torch.Generator(device="cuda").manual_seed(9)
    qkv = torch.randn(sum(lens), 8 + 2 + 2, 128, device="cuda", generator=g).to(BF16)  # one fused projection
    q, k, v = qkv[:, :8], qkv[:, 8:10], qkv[:, 10:]
    cu = _cu(lens)
    wide = torch.full((sum(lens), 8, 136), float("nan"), device="cuda", dtype=BF16)
    out = wide[..., :128]
    varlen_attention(q, k, v, cu, cu, 300, causal=True, out=out, backend="cuda")  # compile and load first
    torch.cuda.synchronize()
    _check(out, _reference(q, k, v, cu, cu, True), "strided")
    assert wide[..., 128:].isnan().all()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        varlen_attention(q, k, v, cu, cu, 300, causal=True, out=out, backend="cuda")
    qkv.normal_()
    out.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    _check(out, _reference(q, k, v, cu, cu, True), "graph replay")


@pytest.mark.parametrize("d", [72, 80])
@pytest.mark.parametrize("lens_q,lens_k,h,hkv", [([1000], [1000], 16, 16), ([37, 300, 1, 129], [37, 300, 1, 129], 32, 4),
                                                 ([64, 200], [300, 200], 16, 2),
                                                 ([500, 77], [500, 77], 28, 4)])  # G = 7: 126-row q boxes
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
def test_head_sizes_72_and_80(d, lens_q, lens_k, h, hkv, causal, variant, monkeypatch):
    monkeypatch.setenv("SOLBENCH_ATTN_CUDA", variant)
    g = torch.Generator(device="cuda").manual_seed(d + sum(lens_q))
    # q inside a fused projection (strided heads), out inside a wider NaN buffer: the 80-column
    # tile's columns past 72 must not be stored (they would land in the next head).
    qkv = torch.randn(sum(lens_q), h + 2, d, device="cuda", generator=g).to(BF16)
    q = qkv[:, :h]
    k = torch.randn(sum(lens_k), hkv, d, device="cuda", generator=g).to(BF16)
    v = torch.randn(sum(lens_k), hkv, d, device="cuda", generator=g).to(BF16)
    cu_q, cu_k = _cu(lens_q), _cu(lens_k)
    wide = torch.full((sum(lens_q), h, d + 8), float("nan"), device="cuda", dtype=BF16)
    out = wide[..., :d]
    varlen_attention(q, k, v, cu_q, cu_k, max(lens_q), causal=causal, out=out, backend="cuda")
    what = f"d={d} {lens_q}/{lens_k} {h}/{hkv} causal={causal} {variant}"
    _check(out, _reference(q, k, v, cu_q, cu_k, causal), what)
    assert wide[..., d:].isnan().all(), what + ": wrote past the head size"
    packed = varlen_attention(q, k, v, cu_q, cu_k, max(lens_q), causal=causal, backend="cuda")
    torch.testing.assert_close(packed, out, rtol=0, atol=0)
    _check(out, varlen_attention(q, k, v, cu_q, cu_k, max(lens_q), causal=causal).float(), what + " against triton")


@pytest.mark.parametrize("d", [72, 80])
@pytest.mark.parametrize("variant", ["", "paged=1", "paged=1,persistent=1"])
def test_head_sizes_72_and_80_paged(d, variant, monkeypatch):
    monkeypatch.setenv("SOLBENCH_ATTN_CUDA", variant)
    lens, h, hkv, page = [100, 17, 300], 16, 2, 16
    g = torch.Generator(device="cuda").manual_seed(d)
    kc, vc, bt = _paged_caches(lens, hkv, page, d, g)
    q = torch.randn(sum(lens), h, d, device="cuda", generator=g).to(BF16)
    cu_q = _cu(lens)
    used = torch.tensor(lens, dtype=torch.int32, device="cuda")
    out = torch.full_like(q, float("nan"))
    unified_attention(q, kc, vc, cu_q, used, bt, max(lens), out=out, backend="cuda")
    _check(out, _reference(q, kc, vc, cu_q, None, True, used, bt), f"paged d={d} {variant}")
