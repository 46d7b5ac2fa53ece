"""block_scaled_mm: hand-counted cost, the reference against vLLM's per-K-block accumulation, row
chunking, and the torch_native refusal off CUDA."""
from dataclasses import replace

import torch

from solbench.core.spec import get_spec, impls_for
from solbench.ops.block_scaled_mm import spec as spec_mod

spec = get_spec("block_scaled_mm")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_0():
    # m=349 n=2048 k=2048, 128x128 blocks: 16 K-groups, 16 N-groups.
    c = spec.cost(next(s for s in spec.shapes if s.id == 0))
    assert c.flops["fp8_e4m3_tc"] == 2 * 349 * 2048 * 2048 == 2_927_624_192
    assert c.flops["fp32"] == 2 * 349 * 2048 * 16
    assert c.bytes_read == 349 * 2048 + 2048 * 2048 + 4 * (349 * 16 + 16 * 16) == 4_932_416
    assert c.bytes_written == 349 * 2048 * 4 == 2_859_008


def _kblock_loop(a, b, sa, sb, gn=128, gk=128):
    """vLLM's kernel order: per K-block fp8 dot products, rescaled by a_scale[m, kb] * b_scale[n//gn, kb]."""
    m, k = a.shape
    n = b.shape[0]
    out = torch.zeros(m, n, dtype=torch.float64)
    col_scale = sb.double().repeat_interleave(gn, 0)[:n]          # [n, K/gk]
    for kb in range(k // gk):
        part = a[:, kb * gk:(kb + 1) * gk].double() @ b[:, kb * gk:(kb + 1) * gk].double().T
        out += part * sa[:, kb].double()[:, None] * col_scale[:, kb][None, :]
    return out


def test_reference_matches_kblock_loop():
    sh = replace(spec.shapes[0], params=dict(m=7, n=384, k=256, group_n=128, group_k=128))
    x = spec.make_inputs(sh, CPU, 4)
    assert x["a_scales"].shape == (7, 2) and x["b_scales"].shape == (3, 2)
    out = spec.reference(**x)
    assert out.dtype == torch.float32 and out.shape == (7, 384)
    torch.testing.assert_close(out.double(), _kblock_loop(x["a"], x["b"], x["a_scales"], x["b_scales"]),
                               rtol=1e-5, atol=1e-5)


def test_reference_row_chunks(monkeypatch):
    sh = spec.smoke_shapes()[1]
    x = spec.make_inputs(sh, CPU, 0)
    whole = spec.reference(**x)
    monkeypatch.setattr(spec_mod, "_REF_ROWS_ELEMS", 384 * 5)   # 5-row chunks, the last partial
    torch.testing.assert_close(spec.reference(**x), whole)


def test_native_refuses_with_reason_on_cpu():
    if torch.cuda.is_available():
        return
    s = impls_for("block_scaled_mm")["torch_native"].available()
    assert not s.ok and "CUDA" in s.reason


# ---- ours_triton: the library kernel (kernels/gemm/block_fp8.py) in the interpreter ------------------
import pytest  # noqa: E402

from solbench.core import fp8_blocks  # noqa: E402
from solbench.kernels.gemm import BlockFp8Options, block_scaled_mm, default_options  # noqa: E402
from solbench.kernels.gemm import block_fp8  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
DEV = torch.device("cuda" if HAS_CUDA else "cpu")
# Small tiles keep the interpreter quick; BLOCK_K is the scale group (128).
SMALL = BlockFp8Options(block_m=16, block_n=32, group_m=2, num_warps=4, num_stages=2, tma=False)


def _operands(m, n, k, gn=128, gk=128, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    a, sa = fp8_blocks.random_blocks((m, k), (1, gk), DEV, g)
    b, sb = fp8_blocks.random_blocks((n, k), (gn, gk), DEV, g, scale=k ** -0.5)
    return a, b, sa, sb


def _expected(a, b, sa, sb, gn=128, gk=128):
    return _kblock_loop(a.cpu(), b.cpu(), sa.cpu(), sb.cpu(), gn, gk) if a.shape[1] % gk == 0 else \
        (fp8_blocks.dequantize(a, sa, (1, gk)).double() @ fp8_blocks.dequantize(b, sb, (gn, gk)).double().T).cpu()


def _close(got, want, tol=1e-5):
    torch.testing.assert_close(got.double().cpu(), want.double(), rtol=tol, atol=tol)


@pytest.mark.parametrize("m,n,k", [(5, 96, 128), (33, 200, 384), (1, 64, 256)])
@pytest.mark.parametrize("opt", [SMALL, "split_k", replace(SMALL, tma=True), replace(SMALL, flatten=True),
                                 replace(SMALL, block_m=32, block_n=64, group_m=1, programs_per_sm=2)],
                         ids=["pointers", "split_k", "tma", "flatten", "wide"])
def test_ours_matches_the_kblock_loop(m, n, k, opt):
    # M not a multiple of the tile, one K block (K = 128) and several, N partial in the last tile;
    # 2 programs (the interpreter's SM stand-in) walk several tiles each. split_k: one split per
    # K block (1, 3 and 2 splits), added by atomics.
    a, b, sa, sb = _operands(m, n, k)
    if opt == "split_k":
        opt = replace(SMALL, split_k=k // 128)
    _close(block_scaled_mm(a, b, sa, sb, options=opt), _expected(a, b, sa, sb))


def test_ours_k_tail_and_per_column_b_scales():
    # K = 300: the last K block is partial (masked loads); group_n = 96 is not a multiple of the
    # 64-column tile, so b's scales are gathered per column instead of one per tile.
    a, b, sa, sb = _operands(17, 200, 300, gn=96)
    assert sb.shape == (3, 3)
    got = block_scaled_mm(a, b, sa, sb, (96, 128), options=replace(SMALL, block_n=64))
    _close(got, _expected(a, b, sa, sb, gn=96))


def test_ours_default_launch_and_the_op_registration():
    a, b, sa, sb = _operands(20, 160, 256)
    want = _expected(a, b, sa, sb)
    _close(block_scaled_mm(a, b, sa, sb), want)
    out = torch.full((20, 160), float("nan"), device=DEV)
    torch.ops.solbench.block_scaled_mm.out(a, b, sa, sb, out, 128, 128, [])
    _close(out, want)


def test_ours_strided_rows_column_major_scales_leading_dims_and_out():
    a, b, sa, sb = _operands(12, 96, 256)
    want = _expected(a, b, sa, sb)
    big = torch.zeros(12, 384, dtype=torch.float8_e4m3fn, device=DEV)
    big[:, 64:320] = a
    sa_cm = sa.t().contiguous().t()                     # DeepGEMM's column-major activation scales
    out_big = torch.full((12, 160), float("nan"), device=DEV)
    got = block_scaled_mm(big[:, 64:320], b, sa_cm, sb, out=out_big[:, :96], options=SMALL)
    assert got.data_ptr() == out_big.data_ptr()
    _close(out_big[:, :96], want)
    assert out_big[:, 96:].isnan().all()               # nothing written past the view
    got3 = block_scaled_mm(a.view(3, 4, 256), b, sa.view(3, 4, 2), sb, options=SMALL)
    assert got3.shape == (3, 4, 96)
    _close(got3.view(12, 96), want)


def test_ours_bf16_out_zero_tokens_and_one_token():
    a, b, sa, sb = _operands(7, 64, 128)
    got = block_scaled_mm(a, b, sa, sb, out_dtype=torch.bfloat16, options=SMALL)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.double().cpu(), _expected(a, b, sa, sb), rtol=1e-2, atol=1e-2)
    empty = block_scaled_mm(a[:0], b, sa[:0], sb)
    assert empty.shape == (0, 64)
    _close(block_scaled_mm(a[:1], b, sa[:1], sb), _expected(a[:1], b, sa[:1], sb))


def test_ours_refuses_what_it_does_not_support():
    a, b, sa, sb = _operands(4, 64, 256)
    with pytest.raises(TypeError, match="float8_e4m3fn"):
        block_scaled_mm(a.to(torch.bfloat16), b, sa, sb)
    with pytest.raises(ValueError, match="a_scales must have shape"):
        block_scaled_mm(a, b, sa[:, :1], sb)
    with pytest.raises(ValueError, match="b_scales must have shape"):
        block_scaled_mm(a, b, sa, sb.t())
    with pytest.raises(ValueError, match="group_k one of"):
        block_scaled_mm(a, b, sa, sb, (128, 96))
    with pytest.raises(ValueError, match="split_k 4 does not divide the 2 K blocks"):
        block_scaled_mm(a, b, sa, sb, options=replace(SMALL, split_k=4))
    with pytest.raises(ValueError, match="needs fp32 out"):
        block_scaled_mm(a, b, sa, sb, out_dtype=torch.bfloat16, options=replace(SMALL, split_k=2))
    with pytest.raises(TypeError, match="out has dtype"):
        block_scaled_mm(a, b, sa, sb, out=torch.empty(4, 64, dtype=torch.float64, device=DEV))
    a2, b2, sa2, sb2 = _operands(4, 64, 136)  # TMA needs 16-byte rows; 136 fp8 are not
    with pytest.raises(ValueError, match="not 16-byte aligned"):
        block_scaled_mm(a2, b2, sa2, sb2, options=replace(SMALL, tma=True))


def test_ours_fake_implementation_under_fake_tensors():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode():
        a = torch.empty(9, 256, dtype=torch.float8_e4m3fn, device=DEV)
        b = torch.empty(384, 256, dtype=torch.float8_e4m3fn, device=DEV)
        out = block_scaled_mm(a, b, torch.empty(9, 2, device=DEV), torch.empty(3, 2, device=DEV))
        assert out.shape == (9, 384) and out.dtype == torch.float32


def test_default_options_by_m_bucket():
    # Prefill: 128x128 tiles, no split (enough tiles); decode: small tiles, K split until the
    # tiles cover the SMs twice, at least 2 K blocks per split, and only with fp32 out.
    big = default_options(8192, 4096, 4096, sms=132)
    assert (big.block_m, big.block_n, big.split_k, big.num_warps, big.flatten) == (128, 128, 1, 8, True)
    mid = default_options(237, 4096, 4096, sms=132)
    assert (mid.block_m, mid.block_n, mid.split_k) == (64, 128, 1)
    dec = default_options(4, 2048, 2048, sms=132)
    # 32 tiles of 16x64; splits 2, 4, 8 (256 programs < 264 wanted), 16 would leave 1 K block.
    assert (dec.block_m, dec.block_n, dec.programs_per_sm, dec.split_k) == (16, 64, 2, 8)
    assert default_options(4, 2048, 2048, out_dtype=torch.bfloat16, sms=132).split_k == 1
    assert default_options(4, 2048, 256, sms=132).split_k == 1  # 2 K blocks: nothing to split
    assert default_options(4, 2048, 128 * 12, sms=132).split_k == 4  # splits divide the 12 K blocks
    assert block_fp8.m_bucket(1) == 16 and block_fp8.m_bucket(1000) == 1024 and block_fp8.m_bucket(10 ** 6) == 8192


def test_options_from_the_command_line(monkeypatch):
    # SOLBENCH_BLOCK_FP8 replaces fields of the heuristic's launch (read at each call); the launch
    # it describes runs and is correct: 16x32 tiles, 3 K splits added by atomics, pointer loads.
    a, b, sa, sb = _operands(33, 200, 384)
    monkeypatch.setenv(block_fp8.OPTIONS_ENV, "block_m=16,block_n=32,split_k=3,num_stages=2,tma=0,flatten=1")
    want = replace(default_options(33, 200, 384, sms=2), block_m=16, block_n=32, split_k=3, num_stages=2,
                   tma=False, flatten=True)
    assert block_fp8.env_override(default_options(33, 200, 384, sms=2)) == want
    _close(block_scaled_mm(a, b, sa, sb), _expected(a, b, sa, sb))
    monkeypatch.setenv(block_fp8.OPTIONS_ENV, "tma=-1")
    assert block_fp8.env_override(SMALL).tma is None
    monkeypatch.setenv(block_fp8.OPTIONS_ENV, "tma=2")
    with pytest.raises(ValueError, match="tma=2 must be one of"):
        block_scaled_mm(a, b, sa, sb)
    monkeypatch.setenv(block_fp8.OPTIONS_ENV, "block_m=48")
    with pytest.raises(ValueError, match="powers of two"):
        block_scaled_mm(a, b, sa, sb)
    monkeypatch.setenv(block_fp8.OPTIONS_ENV, "split_k=3")
    with pytest.raises(ValueError, match="needs fp32 out"):
        block_scaled_mm(a, b, sa, sb, out_dtype=torch.bfloat16)


def test_options_round_trip_through_the_op_encoding():
    for opt in (SMALL, replace(SMALL, tma=None), replace(SMALL, tma=True, split_k=4, flatten=True)):
        assert BlockFp8Options.decode(opt.encode()) == opt


@pytest.mark.parametrize("m", [5, 100])
def test_every_sweep_candidate_is_correct(m):
    # The device sweep times these; each must compute the same product (decode and mid buckets,
    # whose tiles stay small enough for the interpreter).
    a, b, sa, sb = _operands(m, 64, 512)
    want = _expected(a, b, sa, sb)
    cands = block_fp8.candidates(m, 64, 512, sms=2)
    assert cands[0] == default_options(m, 64, 512, sms=2) and len(set(cands)) == len(cands)
    for opt in cands:
        _close(block_scaled_mm(a, b, sa, sb, options=replace(opt, tma=bool(opt.tma))), want)
    assert all(o.split_k == 1 for o in block_fp8.candidates(m, 64, 512, out_dtype=torch.bfloat16, sms=2))


@pytest.mark.skipif(HAS_CUDA, reason="checks the CPU refusal")
def test_sweep_needs_cuda(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "block_fp8_sweep.py"
    mod_spec = importlib.util.spec_from_file_location("block_fp8_sweep", path)
    sweep = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(sweep)
    assert sweep.main([]) == 2 and "CUDA" in capsys.readouterr().err


def test_options_refuse_launches_triton_cannot_compile():
    with pytest.raises(ValueError, match="powers of two >= 16"):
        BlockFp8Options(block_m=8)
    with pytest.raises(ValueError, match="powers of two >= 16"):
        BlockFp8Options(block_n=96)
    with pytest.raises(ValueError, match="num_warps"):
        BlockFp8Options(num_warps=6)
    with pytest.raises(ValueError, match="split_k"):
        BlockFp8Options(split_k=0)
