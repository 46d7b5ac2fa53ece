"""Our Gated DeltaNet and causal-conv kernels (solbench.kernels.linear_attention, solbench.kernels.conv)
against the operators' fp32 references, in Triton's interpreter on tiny shapes: 0 tokens, one
token, T not a multiple of the chunk, padding (-1) pool indices, grouped heads, strided inputs,
out=, fake tensors; and the tolerance question of gated_delta_rule_update at T > 1 (a tf32
chunked kernel passes, a bf16-operand one does not)."""
import dataclasses

import pytest
import torch

from solbench.core.baselines import triton_support
from solbench.core.check import compare_tensor
from solbench.core.spec import get_spec

pytestmark = pytest.mark.skipif(not triton_support(), reason="needs a GPU or TRITON_INTERPRET=1")
DEV = "cuda" if torch.cuda.is_available() else "cpu"

try:  # a one-block kernel around the chunked update's 16 x 16 inverse
    import triton
    import triton.language as tl

    from solbench.kernels.linear_attention._chunked_update_triton import _inv_unit_lower16

    @triton.jit
    def _invert16(L, X):
        o = tl.arange(0, 16)
        tl.store(X + o[:, None] * 16 + o[None, :], _inv_unit_lower16(tl.load(L + o[:, None] * 16 + o[None, :])))
except ImportError:  # no Triton: the module is skipped
    _invert16 = None

GDR = get_spec("gated_delta_rule_update")
CONV = get_spec("causal_conv1d")
CONV_ATREX = get_spec("causal_conv1d_atrex")
STATE = get_spec("chunk_gated_delta_rule_state")
OUTPUT = get_spec("chunk_delta_rule_output")


def _clone(inp):
    return {k: (v.clone() if torch.is_tensor(v) else v) for k, v in inp.items()}


def _ok(spec, shape, name, got, ref):
    errs, _ = compare_tensor(name, got, ref, spec.tolerance(shape))
    assert not errs, errs


# ---- gated_delta_rule_update ----------------------------------------------------------------------
def _gdr_shape(T, B=2, H=1, HV=2, K=16, V=24, S=4):
    base = GDR.shapes[0]
    return dataclasses.replace(base, id="t", smoke=True, params={
        **base.params, "token_count": T, "batch_size": B, "num_q_heads": H, "num_v_heads": HV, "key_dim": K,
        "value_dim": V, "state_count": S})


def _gdr_call(inp, **kw):
    from solbench.kernels.linear_attention import gated_delta_rule_update

    return gated_delta_rule_update(inp["q"], inp["k"], inp["v"], inp["a"], inp["b"], inp["A_log"], inp["dt_bias"],
                                   inp["initial_state"], inp["initial_state_indices"], scale=inp["scale"],
                                   softplus_beta=inp["softplus_beta"], softplus_threshold=inp["softplus_threshold"],
                                   use_qk_l2norm=inp["use_qk_l2norm"], **kw)


@pytest.mark.parametrize("T", [1, 7])
def test_gdr_update_matches_reference_with_a_padding_slot(T):
    shape = _gdr_shape(T)
    inp = GDR.make_inputs(shape, torch.device(DEV), 0)
    inp["initial_state_indices"][1] = -1                       # padding: zeros in, nothing written back
    ref_out, ref_pool = GDR.reference(**_clone(inp))
    pool = inp["initial_state"]
    before = pool.clone()
    out, got_pool = _gdr_call(inp)
    assert got_pool is pool
    _ok(GDR, shape, "out", out, ref_out)
    _ok(GDR, shape, "final_state", got_pool, ref_pool)
    used = int(inp["initial_state_indices"][0])
    untouched = [i for i in range(pool.shape[0]) if i != used]
    assert torch.equal(pool[untouched], before[untouched])


@pytest.mark.parametrize("T", [5, 70])
def test_gdr_update_chunked_path(T):
    # The chunked (WY, tensor-core) path: one partial chunk (forced), and a partial second chunk;
    # grouped heads and a padding slot.
    from solbench.kernels.linear_attention import RecurrentOptions

    shape = _gdr_shape(T, B=2, H=1, HV=2, K=16, V=16, S=3)
    inp = GDR.make_inputs(shape, torch.device(DEV), 3)
    inp["initial_state_indices"][0] = -1
    ref_out, ref_pool = GDR.reference(**_clone(inp))
    out, pool = _gdr_call(inp, options=RecurrentOptions(chunked=True))
    _ok(GDR, shape, "out", out, ref_out)
    _ok(GDR, shape, "final_state", pool, ref_pool)


@pytest.mark.parametrize("T,l2norm,seed", [(5, True, 4), (70, True, 5), (130, False, 6)])
def test_gdr_update_three_passes(T, l2norm, seed):
    # The three-pass form (WY terms, state chain, outputs): partial chunks, grouped heads (2 value
    # heads a key head), a padding slot, a strided out=, with and without the l2 norm; the pool
    # rows of other sequences untouched.
    from solbench.kernels.linear_attention import RecurrentOptions

    shape = _gdr_shape(T, B=2, H=2, HV=4, K=16, V=32, S=4)
    inp = GDR.make_inputs(shape, torch.device(DEV), seed)
    inp["initial_state_indices"][0] = -1
    inp["use_qk_l2norm"] = l2norm
    ref_out, ref_pool = GDR.reference(**_clone(inp))
    before = inp["initial_state"].clone()
    B, _, HV, V = inp["v"].shape
    wide = torch.full((B, T, HV, V + 8), float("nan"), dtype=inp["v"].dtype, device=DEV)
    out, pool = _gdr_call(inp, out=wide[..., :V], options=RecurrentOptions(chunked=True, passes=3))
    _ok(GDR, shape, "out", out, ref_out)
    _ok(GDR, shape, "final_state", pool, ref_pool)
    assert wide[..., V:].isnan().all()
    used = int(inp["initial_state_indices"][1])
    untouched = [i for i in range(pool.shape[0]) if i != used]
    assert torch.equal(pool[untouched], before[untouched])


def test_gdr_update_passes_are_validated():
    from solbench.kernels.linear_attention import RecurrentOptions
    from solbench.kernels.linear_attention.recurrent import recurrent_options

    assert recurrent_options(1, 128, 4, 16, 16, 132).passes == 1
    assert recurrent_options(1, 128, 4, 16, 16, 132, RecurrentOptions(passes=3)).passes == 3
    with pytest.raises(ValueError, match="passes must be 1 or 3"):
        recurrent_options(1, 128, 4, 16, 16, 132, RecurrentOptions(passes=2))


def test_gdr_update_strided_inputs_no_l2norm_and_out():
    # q, k, v as views of one fused projection (strided heads and tokens), as vLLM splits them;
    # out= given; the softplus threshold branch on one head.
    shape = _gdr_shape(3, B=1, H=2, HV=4, K=16, V=16)
    inp = GDR.make_inputs(shape, torch.device(DEV), 1)
    B, T, H, K = inp["q"].shape
    HV, V = inp["v"].shape[2:]
    fused = torch.randn(B, T, 2 * H * K + HV * V, dtype=torch.bfloat16, device=DEV)
    inp["q"] = fused[..., :H * K].view(B, T, H, K)
    inp["k"] = fused[..., H * K:2 * H * K].view(B, T, H, K)
    inp["v"] = fused[..., 2 * H * K:].view(B, T, HV, V)
    inp["dt_bias"][0] = 30.0
    inp["use_qk_l2norm"] = False
    inp["scale"] = 0.1
    ref_out, ref_pool = GDR.reference(**_clone(inp))
    out = torch.full((B, T, HV, V), float("nan"), dtype=torch.bfloat16, device=DEV)
    got, pool = _gdr_call(inp, out=out)
    assert got is out
    _ok(GDR, shape, "out", out, ref_out)
    _ok(GDR, shape, "final_state", pool, ref_pool)


def test_gdr_update_zero_tokens_leaves_the_pool():
    inp = GDR.make_inputs(_gdr_shape(1), torch.device(DEV), 2)
    for name in ("q", "k", "v", "a", "b"):
        inp[name] = inp[name][:, :0]
    before = inp["initial_state"].clone()
    out, pool = _gdr_call(inp)
    assert out.shape[1] == 0 and torch.equal(pool, before)


def test_gdr_update_rejects_what_it_does_not_support():
    inp = GDR.make_inputs(_gdr_shape(1), torch.device(DEV), 0)
    with pytest.raises(TypeError, match="initial_state has dtype bfloat16"):
        _gdr_call({**inp, "initial_state": inp["initial_state"].bfloat16()})
    with pytest.raises(ValueError, match="initial_state_indices has shape"):
        _gdr_call({**inp, "initial_state_indices": inp["initial_state_indices"][:1]})
    with pytest.raises(ValueError, match="HV a multiple of H"):
        _gdr_call({**inp, "q": torch.cat([inp["q"]] * 3, 2), "k": torch.cat([inp["k"]] * 3, 2)})


def test_gdr_options_rule_and_command_line(monkeypatch):
    from solbench.kernels.linear_attention.recurrent import RecurrentOptions, recurrent_options

    monkeypatch.delenv("SOLBENCH_GDR", raising=False)
    # catalog #7 (8192 tokens, 32 value heads): 16-column blocks would be 256 programs of one an
    # SM (two waves of the serial chunk chain): 32 columns, one wave; #10 (16 heads): 16 columns
    assert recurrent_options(1, 8192, 32, 128, 128, 132) == RecurrentOptions(32, 4, True, 1)
    assert recurrent_options(1, 129, 16, 128, 128, 132) == RecurrentOptions(16, 4, True, 1)
    monkeypatch.setenv("SOLBENCH_GDR", "block_v=16")
    assert recurrent_options(1, 8192, 32, 128, 128, 132) == RecurrentOptions(16, 4, True, 1)
    assert recurrent_options(1, 8192, 32, 128, 128, 132, RecurrentOptions(block_v=64)).block_v == 64  # explicit wins
    monkeypatch.setenv("SOLBENCH_GDR", "warps=4")
    with pytest.raises(ValueError, match="SOLBENCH_GDR"):
        recurrent_options(1, 8192, 32, 128, 128, 132)


def test_gdr_update_fake_tensors_go_through_the_custom_op():
    from torch._subclasses.fake_tensor import FakeTensorMode

    inp = GDR.make_inputs(_gdr_shape(2), torch.device(DEV), 0)
    with FakeTensorMode(allow_non_fake_inputs=False) as mode:
        fake = {k: (mode.from_tensor(v) if torch.is_tensor(v) else v) for k, v in inp.items()}
        out, pool = _gdr_call(fake)
        assert out.shape == inp["v"].shape and pool.shape == inp["initial_state"].shape


def test_wy_block_inverse_matches_fp64_on_hard_blocks():
    # The chunked update's 16 x 16 inverse (recursive block inversion) against fp64 on the blocks
    # where a power-series form loses digits: nearly parallel keys, no decay, strengths near 1,
    # and an all-but-ones strictly lower block.
    g = torch.Generator().manual_seed(0)
    k = torch.randn(16, 128, generator=g, dtype=torch.float64) + 30 * torch.randn(1, 128, generator=g,
                                                                                      dtype=torch.float64)
    k = k / k.norm(dim=1, keepdim=True)
    beta = 0.9 + 0.1 * torch.rand(16, generator=g, dtype=torch.float64)
    blocks = [torch.tril(beta[:, None] * (k @ k.T), -1),
              torch.tril(0.9 + 0.1 * torch.rand(16, 16, generator=g, dtype=torch.float64), -1),
              torch.zeros(16, 16, dtype=torch.float64)]
    for L in blocks:
        truth = torch.linalg.inv(torch.eye(16, dtype=torch.float64) + L)
        got = torch.empty(16, 16, device=DEV)
        _invert16[(1,)](L.float().to(DEV), got)
        err = float((got.double().cpu() - truth).abs().max() / truth.abs().max())
        assert err < 2e-6, err


# ---- tolerance at T > 1: a chunked (WY) kernel with tf32 vs bf16 operands ------------------------
def _rounded(x, mode):
    if mode == "bf16":
        return x.to(torch.bfloat16).float()
    bits = x.contiguous().view(torch.int32)                   # tf32: 10 mantissa bits, nearest even
    return ((bits + 0x0FFF + ((bits >> 13) & 1)) & ~0x1FFF).view(torch.float32)


def _chunked_gdr(inp, mode, C=64):
    """The chunked form of the recurrence as our chunked kernel associates it, every matrix
    product's operands rounded to ``mode`` (fp32 accumulation); the (I + L)^-1 in fp32."""
    from solbench.core.linear_attn import chunk_local_cumsum, expand_heads, l2norm, softplus_gate

    def mm(eq, a, b):
        return torch.einsum(eq, _rounded(a, mode), _rounded(b, mode))

    g = chunk_local_cumsum(softplus_gate(inp["A_log"], inp["a"], inp["dt_bias"]), C)
    beta = torch.sigmoid(inp["b"].float())
    B, T, HV, V = inp["v"].shape
    q = expand_heads(l2norm(inp["q"]), HV) * inp["scale"]
    k, v = expand_heads(l2norm(inp["k"]), HV), inp["v"].float()
    S = inp["initial_state"][inp["initial_state_indices"].long()].clone()
    out = torch.empty(B, T, HV, V)
    for t0 in range(0, T, C):
        t1 = min(T, t0 + C)
        L = t1 - t0
        qc, kc, vc, gc, bc = q[:, t0:t1], k[:, t0:t1], v[:, t0:t1], g[:, t0:t1], beta[:, t0:t1]
        gt = gc.permute(0, 2, 1)
        dg = gt[..., :, None] - gt[..., None, :]
        strict = torch.ones(L, L, dtype=torch.bool).tril(-1)
        A = mm("bihk,bjhk->bhij", kc, kc) * torch.exp(dg.masked_fill(~strict, -float("inf"))) \
            * bc.permute(0, 2, 1)[..., None]
        eye = torch.eye(L)
        inv = torch.linalg.solve_triangular(eye + A, eye.expand_as(A), upper=False, unitriangular=True)
        y = bc[..., None] * (vc - torch.exp(gc)[..., None] * mm("bihk,bhkv->bihv", kc, S))
        vn = mm("bhij,bjhv->bihv", inv, y)
        causal = torch.ones(L, L, dtype=torch.bool).tril()
        P = mm("bihk,bjhk->bhij", qc, kc) * torch.exp(dg.masked_fill(~causal, -float("inf")))
        out[:, t0:t1] = torch.exp(gc)[..., None] * mm("bihk,bhkv->bihv", qc, S) + mm("bhij,bjhv->bihv", P, vn)
        gl = gc[:, -1]
        S = S * torch.exp(gl)[..., None, None] + mm("bihk,bihv->bhkv", kc, vn * torch.exp(gl[:, None] - gc)[..., None])
    pool = inp["initial_state"].clone()
    pool[inp["initial_state_indices"].long()] = S
    return out.to(inp["v"].dtype), pool


@pytest.mark.parametrize("seed", [0, 1])
def test_tolerance_admits_a_tf32_chunked_kernel_and_not_bf16_operands(seed):
    # Catalog head size (K = V = 128) over two chunks. tf32 products pass with margin on RMS;
    # seed 1 puts one of 131072 tiny final-state elements 2e-4 off, what outlier_frac allows.
    # bf16 operands (fla's chunk kernels) miss the final state by ~1% on ~1% of its elements.
    shape = _gdr_shape(128, B=1, H=2, HV=4, K=128, V=128, S=2)
    inp = GDR.make_inputs(shape, torch.device("cpu"), seed)
    ref_out, ref_pool = GDR.reference(**_clone(inp))
    tol = GDR.tolerance(shape)
    out, pool = _chunked_gdr(inp, "tf32")
    for name, got, ref in (("out", out, ref_out), ("final_state", pool, ref_pool)):
        errs, stats = compare_tensor(name, got, ref, tol)
        assert not errs and stats["rms_rel"] < tol.rms_rtol / 2, (errs, stats)
    _, pool = _chunked_gdr(inp, "bf16")
    errs, _ = compare_tensor("final_state", pool, ref_pool, tol)
    assert errs and "elements outside" in errs[0]


def test_decode_tolerance_allows_no_outliers():
    assert GDR.tolerance(_gdr_shape(1)).outlier_frac == 0.0 and GDR.tolerance(_gdr_shape(2)).outlier_frac > 0


# ---- causal_conv1d ----------------------------------------------------------------------------------
def _conv_inputs(lens, dim=40, width=4, has=None, pool=6, seed=0):
    base = CONV.shapes[0]
    shape = dataclasses.replace(base, id="t", smoke=True, params={
        **base.params, "token_count": sum(lens), "dim": dim, "width": width, "seq_lens": lens, "state_count": pool,
        **({"has_initial_state": has} if has is not None else {})})
    return shape, CONV.make_inputs(shape, torch.device(DEV), seed)


def _conv_call(inp, **kw):
    from solbench.kernels.conv import causal_conv1d

    return causal_conv1d(inp["x"], inp["weight"], inp["bias"], inp["initial_state"], inp["query_start_loc"],
                         inp["cache_indices"], inp["has_initial_state"], activation=inp["activation"],
                         seq_lens=inp["seq_lens_cpu"], **kw)


@pytest.mark.parametrize("opts,width", [(None, 4), (dict(block_t=4), 4), (dict(stream=1), 4),
                                        (dict(stream=1, block_t=4, block_d=16, num_warps=1), 4),
                                        (dict(stream=1, block_t=8), 3), (dict(stream=1, block_t=4), 2)])
def test_conv_varlen_matches_reference(opts, width):
    # Sequences shorter than the state (1, 2 tokens), several token blocks (11 with block_t 4),
    # with and without a state; block_t 4 makes the first block write the pool line while later
    # blocks of the same sequence still compute. stream=1: the streaming kernel (lengths not a
    # multiple of its four-token step, channels past dim with block_d 16, widths below four).
    from solbench.kernels.conv import ConvOptions

    shape, inp = _conv_inputs([1, 11, 2, 5], width=width, has=[True, True, False, True])
    ref_out, ref_pool = CONV.reference(**_clone(inp))
    out, pool = _conv_call(inp, options=ConvOptions(**opts) if opts else None)
    assert pool is inp["initial_state"] and out.stride() == inp["x"].stride()
    _ok(CONV, shape, "out", out, ref_out)
    assert torch.equal(pool, ref_pool)                      # pool lines are copies of inputs


def test_conv_options_from_the_command_line(monkeypatch):
    from solbench.kernels.conv import ConvOptions, conv_options

    assert conv_options(1, 14807, 8192, 132) == ConvOptions(32, 128, 4, 0)       # catalog #8
    monkeypatch.setenv("SOLBENCH_CONV", "block_t=8,block_d=32")
    assert conv_options(1, 14807, 8192, 132) == ConvOptions(8, 32, 1, 0)
    assert conv_options(1, 14807, 8192, 132, ConvOptions(block_t=16)) == ConvOptions(16, 32, 2, 0)  # explicit wins
    monkeypatch.setenv("SOLBENCH_CONV", "stream=1")
    assert conv_options(1, 14807, 8192, 132) == ConvOptions(64, 1024, 4, 1)     # 16-byte rows a thread
    assert conv_options(1, 2, 8192, 132) == ConvOptions(4, 1024, 4, 1)          # one four-token step
    monkeypatch.setenv("SOLBENCH_CONV", "block_t=8,block_d=32")
    shape, inp = _conv_inputs([1, 11, 2, 5], has=[True, True, False, True])   # several 8-token blocks
    ref_out, ref_pool = CONV.reference(**_clone(inp))
    out, pool = _conv_call(inp)
    _ok(CONV, shape, "out", out, ref_out)
    assert torch.equal(pool, ref_pool)
    for bad in ("block_t=24", "num_warps=3", "width=2", "stream=2", "stream=1,block_t=2"):
        monkeypatch.setenv("SOLBENCH_CONV", bad)
        with pytest.raises(ValueError, match="SOLBENCH_CONV|block_t|num_warps|stream"):
            conv_options(1, 100, 64, 132)
    monkeypatch.setenv("SOLBENCH_CONV", "stream=1")
    _, wide = _conv_inputs([5], width=5)
    with pytest.raises(ValueError, match="width <= 4, got 5"):
        _conv_call(wide)


@pytest.mark.parametrize("opts", [None, dict(stream=1, block_t=4)])
def test_conv_padding_sequence_is_skipped_and_no_activation_no_bias(opts):
    from solbench.kernels.conv import ConvOptions

    shape, inp = _conv_inputs([3, 2], has=[True, True], seed=1)
    inp["activation"], inp["bias"] = None, None
    ref_out, ref_pool = CONV.reference(**{**_clone(inp), "bias": torch.zeros_like(inp["weight"][:, 0])})
    inp["cache_indices"][1] = -1
    before = inp["initial_state"].clone()
    out = torch.full_like(inp["x"], float("nan"))
    _conv_call(inp, out=out, options=ConvOptions(**opts) if opts else None)
    _ok(CONV, shape, "out", out[:, :3], ref_out[:, :3])
    assert torch.isnan(out[:, 3:].float()).all()              # the padding sequence is not written
    line = int(inp["cache_indices"][0])
    assert torch.equal(inp["initial_state"][line], ref_pool[line])
    others = [i for i in range(before.shape[0]) if i != line]
    assert torch.equal(inp["initial_state"][others], before[others])


def test_conv_zero_tokens_and_zero_sequences():
    from solbench.kernels.conv import causal_conv1d, causal_conv1d_single

    _, inp = _conv_inputs([2])
    before = inp["initial_state"].clone()
    x0 = inp["x"][:, :0]
    out, pool = causal_conv1d(x0, inp["weight"], inp["bias"], inp["initial_state"],
                              torch.zeros(1, dtype=torch.int32, device=DEV), inp["cache_indices"][:0],
                              inp["has_initial_state"][:0], seq_lens=[])
    assert out.shape == (x0.shape[0], 0) and torch.equal(pool, before)
    assert causal_conv1d_single(x0, inp["weight"], inp["bias"]).shape == x0.shape


@pytest.mark.parametrize("opts", [None, dict(stream=1, block_t=4)])
def test_conv_atrex_single_sequence_with_and_without_state(opts):
    from solbench.kernels.conv import ConvOptions, causal_conv1d_single

    options = ConvOptions(**opts) if opts else None
    for shape in CONV_ATREX.smoke_shapes():
        inp = CONV_ATREX.make_inputs(shape, torch.device(DEV), 0)
        assert inp["x"].is_contiguous()                        # Atrex's layout: tokens contiguous
        state = inp["initial_state"].clone()
        _ok(CONV_ATREX, shape, "out", causal_conv1d_single(**inp, options=options), CONV_ATREX.reference(**inp))
        assert torch.equal(inp["initial_state"], state)       # read only
    zero = {**inp, "initial_state": torch.zeros_like(inp["initial_state"])}
    _ok(CONV_ATREX, shape, "out", causal_conv1d_single(**{**inp, "initial_state": None}, options=options),
        CONV_ATREX.reference(**zero))


def test_conv_atrex_cost_has_no_index_arrays_and_no_write_back():
    shape = next(s for s in CONV_ATREX.shapes if s.id == 6)     # 4195 tokens, dim 8192, width 4
    c = CONV_ATREX.cost(shape)
    assert c.bytes_read == 4195 * 8192 * 2 + 8192 * 4 * 2 + 8192 * 2 + 8192 * 3 * 2
    assert c.bytes_written == 4195 * 8192 * 2
    prod = CONV.cost(next(s for s in CONV.shapes if s.id == 6))
    assert prod.bytes_read - c.bytes_read == 4 + 8 + 1 and prod.bytes_written - c.bytes_written == 8192 * 3 * 2


# ---- chunk_gated_delta_rule_state / chunk_delta_rule_output -------------------------------------
def _state_shape(T, C=64, Hg=1, H=2, K=32, V=32, S=3):
    base = STATE.shapes[0]
    return dataclasses.replace(base, id="t", smoke=True, params={
        **base.params, "token_count": T, "chunk_size": C, "num_k_heads": Hg, "num_v_heads": H, "key_dim": K,
        "value_dim": V, "state_count": S})


@pytest.mark.parametrize("T,C", [(1, 64), (40, 16), (0, 64)])
def test_chunk_state_matches_reference(T, C):
    from solbench.kernels.linear_attention import chunk_gated_delta_rule_state

    shape = _state_shape(max(T, 1), C)
    inp = STATE.make_inputs(shape, torch.device(DEV), 0)
    if T == 0:
        inp = {**inp, **{n: inp[n][:, :0] for n in ("k", "w", "u", "g")}}
    ref = STATE.reference(**_clone(inp))
    outs = STATE.make_outputs(shape, inp) if T else None
    got = chunk_gated_delta_rule_state(inp["k"], inp["w"], inp["u"], inp["g"], inp["initial_state"],
                                       inp["initial_state_indices"], chunk_size=C, out=outs)
    for name, a, b in zip(STATE.output_names, got, ref):
        _ok(STATE, shape, name, a, b)


def test_chunk_state_options_rule_and_override(monkeypatch):
    from solbench.kernels.linear_attention.chunk import ChunkOptions, state_options

    assert state_options(1, 32, 128, 132) == ChunkOptions(32, 4, 3)  # 32 x 8 programs is two waves; 32 x 4 is one
    assert state_options(1, 16, 128, 132) == ChunkOptions(16, 4, 3)  # 16 x 8 = 128 programs: one wave
    assert state_options(1, 2, 128, 132).block_v == 16            # a chain per value block of 16
    assert state_options(1, 80, 128, 132).block_v == 64            # wider than 64 is never taken
    assert state_options(1, 80, 32, 132).block_v == 32             # nor wider than the head
    assert state_options(1, 80, 128, None).block_v == 16           # no SM count (the interpreter)
    monkeypatch.setenv("SOLBENCH_CHUNK_STATE", "block_v=32,num_stages=2")
    assert state_options(1, 2, 128, 132) == ChunkOptions(32, 4, 2)
    assert state_options(1, 2, 128, 132, ChunkOptions(block_v=64)) == ChunkOptions(64, 4, 2)  # the caller's wins
    shape = _state_shape(40, 16, V=64)
    inp = STATE.make_inputs(shape, torch.device(DEV), 0)
    ref = STATE.reference(**_clone(inp))
    from solbench.kernels.linear_attention import chunk_gated_delta_rule_state

    got = chunk_gated_delta_rule_state(inp["k"], inp["w"], inp["u"], inp["g"], inp["initial_state"],
                                       inp["initial_state_indices"], chunk_size=16)
    for name, a, b in zip(STATE.output_names, got, ref):
        _ok(STATE, shape, name, a, b)
    for bad in ("24", "block_v=32,num_warps=3", "wide=2"):
        monkeypatch.setenv("SOLBENCH_CHUNK_STATE", bad)
        with pytest.raises(ValueError, match="SOLBENCH_CHUNK_STATE|block_v|num_warps"):
            state_options(1, 2, 128, 132)


@pytest.mark.parametrize("T", [1, 37])
def test_chunk_output_matches_reference(T):
    # T = 1 runs a 16-token chunk (upstream's short-prompt rule); 37 with chunk 16 ends in a partial chunk.
    from solbench.kernels.linear_attention import chunk_delta_rule_output

    base = OUTPUT.shapes[0]
    shape = dataclasses.replace(base, id="t", smoke=True, params={
        **base.params, "token_count": T, "chunk_size": 16, "num_q_heads": 1, "num_v_heads": 2, "key_dim": 32,
        "value_dim": 48})
    inp = OUTPUT.make_inputs(shape, torch.device(DEV), 0)
    out = torch.full_like(inp["v"], float("nan"))
    got = chunk_delta_rule_output(**inp, out=out)
    assert got is out
    _ok(OUTPUT, shape, "out", out, OUTPUT.reference(**inp))


def test_chunk_output_checks_the_state_count():
    from solbench.kernels.linear_attention import chunk_delta_rule_output

    inp = OUTPUT.make_inputs(OUTPUT.smoke_shapes()[0], torch.device(DEV), 0)
    with pytest.raises(ValueError, match="h has shape"):
        chunk_delta_rule_output(**{**inp, "h": torch.cat([inp["h"]] * 2, 1)})


def test_chunk_output_zero_tokens():
    from solbench.kernels.linear_attention import chunk_delta_rule_output

    inp = OUTPUT.make_inputs(OUTPUT.smoke_shapes()[0], torch.device(DEV), 0)
    empty = {**inp, **{n: inp[n][:, :0] for n in ("q", "k", "v", "g")}, "h": inp["h"][:, :0]}
    assert chunk_delta_rule_output(**empty).shape == empty["v"].shape


def test_conv_fake_tensors_go_through_the_custom_ops():
    from torch._subclasses.fake_tensor import FakeTensorMode

    from solbench.kernels.conv import causal_conv1d_single

    _, inp = _conv_inputs([3, 2])
    with FakeTensorMode() as mode:
        fake = {k: (mode.from_tensor(v) if torch.is_tensor(v) else v) for k, v in inp.items()}
        out, pool = _conv_call(fake)
        assert out.shape == inp["x"].shape and pool.shape == inp["initial_state"].shape
        assert causal_conv1d_single(fake["x"], fake["weight"], None).shape == inp["x"].shape


# ---- the torch formulations (CPU tensors without the interpreter) ---------------------------------
@pytest.fixture
def eager_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_eager_gdr_update_padding_slot_and_zero_tokens(eager_cpu):
    shape = _gdr_shape(3)
    inp = GDR.make_inputs(shape, torch.device("cpu"), 4)
    inp["initial_state_indices"][0] = -1
    ref_out, ref_pool = GDR.reference(**_clone(inp))
    out, pool = _gdr_call(inp)
    _ok(GDR, shape, "out", out, ref_out)
    _ok(GDR, shape, "final_state", pool, ref_pool)
    empty = {**inp, **{n: inp[n][:, :0] for n in ("q", "k", "v", "a", "b")}}
    before = inp["initial_state"].clone()
    assert _gdr_call(empty)[0].shape[1] == 0 and torch.equal(inp["initial_state"], before)


def test_eager_conv_skips_padding_and_shifts_short_sequences(eager_cpu):
    shape, inp = _conv_inputs([1, 6, 2], has=[True, False, True])
    inp = {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in inp.items()}
    ref_out, ref_pool = CONV.reference(**_clone(inp))
    out, pool = _conv_call(inp)
    _ok(CONV, shape, "out", out, ref_out)
    assert torch.equal(pool, ref_pool)
    inp["cache_indices"][2] = -1
    out = torch.full_like(inp["x"], float("nan"))
    _conv_call(inp, out=out)
    assert torch.isnan(out[:, 7:].float()).all() and not torch.isnan(out[:, :7].float()).any()


def test_eager_chunk_stages_zero_tokens_and_partial_chunks(eager_cpu):
    from solbench.kernels.linear_attention import chunk_delta_rule_output, chunk_gated_delta_rule_state

    shape = _state_shape(40, 16)
    inp = STATE.make_inputs(shape, torch.device("cpu"), 1)
    for T in (40, 0):
        cut = {**inp, **{n: inp[n][:, :T] for n in ("k", "w", "u", "g")}}
        ref = STATE.reference(**_clone(cut))
        got = chunk_gated_delta_rule_state(cut["k"], cut["w"], cut["u"], cut["g"], cut["initial_state"],
                                           cut["initial_state_indices"], chunk_size=16)
        for name, a, b in zip(STATE.output_names, got, ref):
            _ok(STATE, shape, name, a, b)
    inp = OUTPUT.make_inputs(OUTPUT.smoke_shapes()[1], torch.device("cpu"), 0)
    _ok(OUTPUT, OUTPUT.smoke_shapes()[1], "out", chunk_delta_rule_output(**inp), OUTPUT.reference(**inp))
    empty = {**inp, **{n: inp[n][:, :0] for n in ("q", "k", "v", "g")}, "h": inp["h"][:, :0]}
    assert chunk_delta_rule_output(**empty).shape == empty["v"].shape


def test_the_ops_are_registered_in_aten_forms():
    import solbench  # noqa: F401

    for name, overloads in (("causal_conv1d_", ("default",)), ("causal_conv1d_single", ("default", "out")),
                            ("gated_delta_rule_update_", ("default",)),
                            ("chunk_gated_delta_rule_state", ("default", "out")),
                            ("chunk_delta_rule_output", ("default", "out"))):
        packet = getattr(torch.ops.solbench, name)
        assert set(overloads) <= set(packet.overloads()), (name, packet.overloads())
