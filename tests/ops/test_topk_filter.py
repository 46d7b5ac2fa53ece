"""topk_filter: FlashInfer's tie rule by hand, hand-counted cost, default top_k, and the mask check."""
import torch

from solbench.core.check import check_impl
from solbench.core.spec import Impl, get_spec

spec = get_spec("topk_filter")
CPU = torch.device("cpu")
NEG = float("-inf")


def test_cost_by_hand_shape_0():
    c = spec.cost(next(s for s in spec.shapes if s.id == 0))    # one row of 151936 fp32 logits
    assert c.bytes_read == c.bytes_written == 151_936 * 4 == 607_744
    assert c.flops == {}


def test_ties_with_kth_value_are_kept():
    x = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0]])
    assert spec.reference(x, 3).tolist() == [[3.0, NEG, 2.0, 2.0, NEG]]
    assert spec.reference(x, 2).tolist() == [[3.0, NEG, 2.0, 2.0, NEG]]   # 2nd value tied: 3 kept
    assert spec.reference(x, 1).tolist() == [[3.0, NEG, NEG, NEG, NEG]]
    assert torch.equal(spec.reference(x, 5), x) and torch.equal(spec.reference(x, 9), x)


def test_default_top_k_and_tied_inputs():
    sh = next(s for s in spec.shapes if s.id == 3)              # the catalog records no top_k
    x = spec.make_inputs(sh, CPU, 0)
    assert x["top_k"] == 50 and x["logits"].shape == (3, 4002)
    assert torch.equal(x["logits"], x["logits"].bfloat16().float())


def test_dropping_a_tie_is_rejected():
    sh = next(s for s in spec.shapes if s.id == 3)

    def exactly_k(logits, top_k):
        # torch.topk indices: keeps exactly k entries, dropping ties with the k-th value.
        idx = logits.topk(top_k, dim=-1).indices
        return torch.full_like(logits, NEG).scatter(-1, idx, logits.gather(-1, idx))

    tie = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0]])
    ref = {"out": spec.reference(tie, 2)}
    assert spec.check_invariants(sh, {"logits": tie, "top_k": 2}, {"out": exactly_k(tie, 2)}, ref)
    kept_extra = ref["out"].clone()
    kept_extra[0, 1] = 1.0
    assert spec.check_invariants(sh, {"logits": tie, "top_k": 2}, {"out": kept_extra}, ref)
    # On the catalog's shape the tie-dropping formulation fails the full checker for some seed.
    res = check_impl(spec, Impl(spec.name, "exactly_k", exactly_k), sh, CPU, seeds=(0, 1, 2, 3))
    assert not res.ok and "masked" in res.reason


# ---- our kernel (Triton interpreter on CPU, compiled on a GPU) ---------------------------------------
import pytest  # noqa: E402

from solbench.core.spec import impls_for  # noqa: E402


def _kernels():
    impl = impls_for(spec.name)["ours_triton"]
    if not impl.available():
        pytest.skip(impl.available().reason)
    from solbench.kernels import topk

    return topk


def _launch(*args):
    """The Triton launcher itself (the public function picks the options)."""
    from solbench.kernels._topk_triton import launch

    launch(*args)


@pytest.fixture(params=[1, 2], ids=lambda b: f"bits{b}")
def bits(request, monkeypatch):
    """Key bits settled a round (TopkOptions.bits_per_round), for the public function through
    SOLBENCH_TOPK and for the launcher's options directly."""
    monkeypatch.setenv("SOLBENCH_TOPK", f"bits_per_round={request.param}")
    return request.param


def _logits(rows, vocab, device, seed=0, bf16_grid=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, vocab, generator=g) * 3
    return (x.bfloat16().float() if bf16_grid else x).to(device)


@pytest.mark.parametrize("k", range(1, 9))
def test_ours_ties_signed_zeros_and_k_past_vocab(k, device, bits):
    topk = _kernels()
    x = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0, -0.0, -1.0]], device=device)   # -0.0 ties with 0.0
    assert torch.equal(topk.top_k_mask_logits(x, k), spec.reference(x, k))


@pytest.mark.parametrize("rows,vocab,k", [(0, 16, 3), (1, 1, 1), (1, 97, 5), (5, 40, 12), (3, 33, 33), (2, 20, 50)])
def test_ours_rows_path(rows, vocab, k, device, bits):
    topk = _kernels()
    for bf16_grid in (True, False):
        x = _logits(rows, vocab, device, rows + vocab, bf16_grid)
        out = torch.full_like(x, float("nan"))
        assert topk.top_k_mask_logits(x, k, out=out) is out
        assert torch.equal(out, spec.reference(x, k))


def test_ours_half_precision_and_strided_rows(device):
    topk = _kernels()
    big = _logits(4, 80, device, 7)
    x = big[:, :64].bfloat16()                 # a row stride of its own
    got = topk.top_k_mask_logits(x, 6)
    assert got.dtype == torch.bfloat16 and torch.equal(got.float(), spec.reference(x.float(), 6))


# Small options make the chunked path (rows wider than row_max) run on tiny rows.
WIDE = dict(row_max=64, chunk=32, cand_max=1024)


@pytest.mark.parametrize("rows,vocab,k", [(2, 300, 5), (1, 257, 20), (2, 200, 40), (1, 65, 64)])
def test_ours_chunked_path(rows, vocab, k, device, bits):
    topk = _kernels()
    for bf16_grid in (True, False):
        x = _logits(rows, vocab, device, vocab + k, bf16_grid)
        out = torch.full_like(x, float("nan"))
        _launch(x, out, k, topk.TopkOptions(**WIDE, bits_per_round=bits))
        assert torch.equal(out, spec.reference(x, k))


def test_ours_chunked_path_with_more_ties_than_candidates_fit(device, bits):
    # One value fills whole chunks: a chunk has more ties with its k-th value than its 2k
    # candidate slots, so the search falls back to the row itself.
    topk = _kernels()
    x = _logits(2, 96, device, 3)
    x[0, 10:90] = 4.5                          # chunk 1 holds 32 ties, more than its 16 slots
    x[1] = 1.0
    x[1, 77] = 2.0
    out = torch.empty_like(x)
    _launch(x, out, 5, topk.TopkOptions(**WIDE, bits_per_round=bits))
    assert torch.equal(out, spec.reference(x, 5))


def test_ours_streamed_search_for_large_k(device):
    topk = _kernels()
    x = _logits(1, 96, device, 4)
    out = torch.empty_like(x)
    _launch(x, out, 50, topk.TopkOptions(row_max=64, chunk=32, cand_max=64))   # 4 chunks x 32 > 64
    assert torch.equal(out, spec.reference(x, 50))


def test_ours_rejects_bad_arguments(device):
    topk = _kernels()
    x = _logits(2, 16, device)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        topk.top_k_mask_logits(x, 0)
    with pytest.raises(TypeError, match="Python int"):
        topk.top_k_mask_logits(x, torch.tensor([3, 4]))
    with pytest.raises(TypeError, match="dtype"):
        topk.top_k_mask_logits(x.double(), 3)
    with pytest.raises(ValueError, match=r"\[rows, vocab\]"):
        topk.top_k_mask_logits(x[0], 3)
    with pytest.raises(ValueError, match="overlaps"):
        topk.top_k_mask_logits(x, 3, out=x)
    with pytest.raises(ValueError, match="bits_per_round must be 1 or 2"):
        topk.TopkOptions(bits_per_round=4)


def test_ours_options_from_the_command_line(monkeypatch, device):
    topk = _kernels()
    monkeypatch.setenv("SOLBENCH_TOPK", "bits_per_round=2,chunk=2048")
    assert topk.options() == topk.TopkOptions(chunk=2048, bits_per_round=2)
    x = _logits(2, 16, device)
    for bad, msg in (("bits_per_round=3", "bits_per_round must be 1 or 2"), ("rounds=2", "SOLBENCH_TOPK")):
        monkeypatch.setenv("SOLBENCH_TOPK", bad)
        with pytest.raises(ValueError, match=msg):
            topk.top_k_mask_logits(x, 3)


# ---- the torch formulation (CPU tensors without the interpreter) ------------------------------------

def test_torch_formulation_off_cuda(monkeypatch):
    # Ties and signed zeros, k past the vocabulary, 0 rows, bf16 logits, NaN ordered by its sign as
    # the kernel orders it (a positive NaN above +inf, a negative one below -inf).
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from solbench.kernels.topk import top_k_mask_logits

    x = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0, -0.0, -1.0]])
    for k in range(1, 9):
        assert torch.equal(top_k_mask_logits(x, k), spec.reference(x, k))
    assert top_k_mask_logits(torch.empty(0, 5), 2).shape == (0, 5)
    xb = _logits(3, 50, CPU).bfloat16()
    assert torch.equal(top_k_mask_logits(xb, 7).float(), spec.reference(xb.float(), 7))
    nan = torch.tensor([float("nan")]).view(torch.int32)
    y = torch.tensor([[1.0, 0.0, float("inf"), -float("inf"), 2.0]])
    y[0, 1] = nan.view(torch.float32)[0]                  # a positive NaN: the largest key
    y[0, 3] = (nan | torch.tensor([-2 ** 31], dtype=torch.int32)).view(torch.float32)[0]   # negative NaN
    got = top_k_mask_logits(y, 2)
    assert torch.isnan(got[0, 1]) and got[0, 2] == float("inf")
    assert torch.isneginf(got[0, [0, 3, 4]]).all()
