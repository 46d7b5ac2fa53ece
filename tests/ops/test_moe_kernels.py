"""Our MoE kernels (solbench.kernels.moe) in the interpreter on tiny shapes: routing edge cases
(experts without tokens, 0 tokens, top-k duplicates, the one- and two-launch sorts agreeing), the
fused MoE on its sorted and direct paths (M not a multiple of the tile, duplicates, both
combines), the fp8 path against a torch model of the same requantization, validation errors and
the custom ops' schemas and fake implementations."""
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from solbench.core import fp8_blocks
from solbench.core.moe_routing import align_layout, random_routing, reference_moe
from solbench.kernels.moe import (FusedMoeOptions, GemmConfig, default_options, fp8_block_fused_moe, fused_moe,
                                  moe_align_block_size, moe_count_and_sort, moe_sum_reduce, topk_gating_softmax)
from solbench.kernels.moe.routing import SortOptions

BF16 = torch.bfloat16


def _ids(t, e, k, seed=0, dup=False):
    g = torch.Generator().manual_seed(seed)
    w, ids = random_routing(t, e, k, "cpu", g)
    if dup and t:
        ids[:, -1] = ids[:, 0]                                 # every token names one expert twice
    return w, ids


# ---- routing ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("t,e,k,bs", [(0, 8, 2, 4), (1, 128, 8, 128), (5, 16, 2, 4), (9, 16, 3, 24), (40, 64, 4, 16),
                                      (300, 32, 4, 8), (20, 300, 8, 64)])
def test_align_matches_the_layout_up_to_num_tokens_post_pad(device, t, e, k, bs):
    _, ids = _ids(t, e, k)
    s, ex, ntpp = moe_align_block_size(ids.to(device), e, bs)
    lay = align_layout(ids, e, bs)
    used = int(lay["offsets"][-1])
    assert int(ntpp) == used
    # The sort is stable, so even the order inside a segment is the reference's.
    assert torch.equal(s[:used].cpu().long(), lay["sorted_ids"][:used])
    assert torch.equal(ex[:used // bs].cpu().long(), lay["block_experts"][:used // bs])
    if t and e > t * k:
        assert (lay["counts"] == 0).any()                      # experts that receive no token


def test_one_and_two_launch_sorts_agree():
    from solbench.kernels.moe._routing_triton import launch_sort

    # 2000 slots, some dropped (ids outside [0, E)): one launch with several histogram loads and
    # ranked tiles per program, and two launches (per-chunk histograms) of 8 programs.
    _, ids = _ids(250, 32, 8, seed=3, dup=True)
    ids[7, 2], ids[100, 0], ids[249, 7] = -1, 32, 99
    lay = align_layout(ids.clamp(0, 31), 32, 16)
    outs = []
    for opt in (SortOptions(sub=32, chunk=128, single=True, num_warps=4, hsub=256),
                SortOptions(sub=64, chunk=256, single=False, num_warps=4)):
        s = torch.full((2000 + 32 * 15,), -1, dtype=torch.int32)
        ex = torch.full((s.numel() // 16 + 1,), -1, dtype=torch.int32)
        nt = torch.zeros(1, dtype=torch.int32)
        launch_sort(ids, 32, 16, s, expert_ids=ex, ntpp=nt, options=opt)
        outs.append((s[:int(nt)], ex[:int(nt) // 16], nt))
    assert all(torch.equal(a, b) for a, b in zip(*outs))
    s, ex, nt = outs[0]
    dropped = {7 * 8 + 2, 100 * 8, 249 * 8 + 7}
    assert set(s.tolist()) - {2000} == set(range(2000)) - dropped
    assert int(nt) <= int(lay["offsets"][-1])                 # clamping the dropped ids can only add blocks
    # Segments ascend by expert and keep the slot order inside.
    flat = ids.flatten().long()
    kept = torch.tensor(sorted(set(range(2000)) - dropped))
    assert torch.equal(s[s < 2000].long(), kept[torch.sort(flat[kept], stable=True).indices])


@pytest.mark.parametrize("t", [0, 1, 37])
def test_count_and_sort_is_the_stable_sort(device, t):
    _, ids = _ids(t, 16, 4, dup=True)
    s, c, cs = moe_count_and_sort(ids.to(device), 16)
    flat = ids.flatten().long()
    assert torch.equal(s.cpu().long(), torch.sort(flat, stable=True).indices)
    assert torch.equal(c.cpu().long(), torch.bincount(flat, minlength=16))
    assert cs.cpu().tolist() == [0] + torch.cumsum(torch.bincount(flat, minlength=16), 0).tolist()


@pytest.mark.parametrize("k,renorm", [(1, False), (6, True), (8, False)])
def test_topk_gating_softmax_ties_and_renormalization(device, k, renorm):
    g = torch.Generator().manual_seed(0)
    # Logits on a coarse grid: many exact ties, which go to the lower expert index.
    x = (torch.randn(19, 24, generator=g) * 2).round()
    w, ids = topk_gating_softmax(x.to(device), k, renormalize=renorm)
    p = torch.softmax(x, -1)
    order = torch.sort(-x + torch.arange(24) * 1e-4, dim=-1, stable=True).indices[:, :k]   # lower index first
    assert torch.equal(ids.cpu().long(), order)
    want = p.gather(1, order)
    if renorm:
        want = want / want.sum(-1, keepdim=True)
    torch.testing.assert_close(w.cpu(), want, rtol=1e-5, atol=1e-6)
    w0, i0 = topk_gating_softmax(torch.empty(0, 24, device=device), k)
    assert w0.shape == i0.shape == (0, k)


def test_topk_softmax_launch_rule_and_override(device, monkeypatch):
    from solbench.kernels.moe.routing import topk_softmax_launch

    assert topk_softmax_launch(1, 128) == (1, 1)            # decode: one row, one warp
    assert topk_softmax_launch(4083, 128) == (4, 4)         # a warp per row
    assert topk_softmax_launch(8192, 128) == (1, 1)         # past 4096 tokens, one-warp programs
    assert topk_softmax_launch(13526, 256) == (1, 1)        # 256 logits: one warp, no shared-memory rounds
    assert topk_softmax_launch(64, 256) == (1, 1)
    assert topk_softmax_launch(8192, 1024) == (2, 8)        # wide rows: 2048 logits over 8 warps
    monkeypatch.setenv("SOLBENCH_TOPK_SOFTMAX", "2,1")
    assert topk_softmax_launch(13526, 256) == (2, 1)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(37, 256, generator=g)                    # an odd row count: the last program is partial
    w, ids = topk_gating_softmax(x.to(device), 8)
    p = torch.softmax(x, -1)
    top = torch.topk(p, 8, dim=-1)
    assert torch.equal(ids.cpu().long(), top.indices)
    torch.testing.assert_close(w.cpu(), top.values, rtol=1e-5, atol=1e-6)
    for bad in ("3,1", "2,3", "2", "0,1"):
        monkeypatch.setenv("SOLBENCH_TOPK_SOFTMAX", bad)
        with pytest.raises(ValueError, match="SOLBENCH_TOPK_SOFTMAX"):
            topk_softmax_launch(64, 256)


def test_topk_gating_softmax_signed_zeros_and_extreme_logits(device):
    # -0.0 equals +0.0 (the lower index wins); -inf, huge and tiny logits keep their order.
    x = torch.tensor([[-0.0, 0.0, -1.0, -2.0, -3.0],
                      [0.0, -0.0, -1.0, -2.0, -3.0],
                      [float("-inf"), -1e30, 1e-30, -1e-30, 3e38],
                      [-5.0, -5.0, -5.0, -5.0, -5.0],
                      [1.5, -7.25, 1.5, 1.5000001, -0.0]])
    w, ids = topk_gating_softmax(x.to(device), 3)
    assert ids.cpu().tolist() == [[0, 1, 2], [0, 1, 2], [4, 2, 3], [0, 1, 2], [3, 0, 2]]
    torch.testing.assert_close(w.cpu(), torch.softmax(x, -1).gather(1, ids.cpu().long()), rtol=1e-5, atol=1e-6)


def test_sum_reduce_scale_and_empty(device):
    x = torch.randn(7, 3, 40, dtype=BF16, device=device)
    out = torch.full((7, 40), float("nan"), device=device)     # an fp32 out is allowed
    moe_sum_reduce(x, 2.5, out=out)
    torch.testing.assert_close(out.cpu(), x.float().sum(1).cpu() * 2.5, rtol=1e-5, atol=1e-5)
    assert moe_sum_reduce(torch.empty(0, 3, 40, dtype=BF16, device=device)).shape == (0, 40)


# ---- fused MoE -------------------------------------------------------------------------------------

def _bf16_case(t, h, i, e, k, device, dup=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, h, generator=g).to(BF16)
    w1 = (torch.randn(e, 2 * i, h, generator=g) * h ** -0.5).to(BF16)
    w2 = (torch.randn(e, h, i, generator=g) * i ** -0.5).to(BF16)
    tw, ti = _ids(t, e, k, seed, dup)
    ref = reference_moe(x.float(), tw, ti, e, lambda j: (w1[j].float(), w2[j].float()), torch.float32)
    args = [v.to(device) for v in (x, w1, w2, tw, ti)]
    return args, ref


SORTED16 = FusedMoeOptions(GemmConfig(16, 32, 32, group_m=2), GemmConfig(16, 64, 32, group_m=2))


@pytest.mark.parametrize("t,opt,dup", [
    (3, None, False),                                       # direct (decode) path
    (3, None, True),                                        # direct, a token naming an expert twice
    (21, SORTED16, False),                                  # sorted, 84 slots: no multiple of 16
    (21, SORTED16, True),                                   # sorted with duplicates
    (21, FusedMoeOptions(SORTED16.gemm1, SORTED16.gemm2, combine="atomic"), True),
    # gate and up in one interleaved tile; I = 48 leaves the second 32-column tile part-empty
    (21, FusedMoeOptions(replace(SORTED16.gemm1, gate_up_tile=1), SORTED16.gemm2), True),
])
def test_fused_moe_paths(device, t, opt, dup):
    # E=16, k=4: with 3 tokens most experts receive nothing; with 21 some still do.
    args, ref = _bf16_case(t, 64, 48, 16, 4, device, dup)
    out = fused_moe(*args, options=opt)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    torch.testing.assert_close(out.cpu(), ref, rtol=3e-2, atol=1.5e-2)


@pytest.mark.parametrize("t,e,k,group_m", [(9, 16, 2, 2), (9, 16, 2, 8), (21, 16, 4, 3)])
def test_fused_moe_persistent_walk_groups_only_occupied_blocks(device, monkeypatch, t, e, k, group_m):
    # Grouped order over the occupied blocks alone: with a count of them that group_m does not
    # divide, grouping over the worst-case block count sent the last group's tiles to unwritten
    # blocks (and skipped real ones).
    from solbench.kernels.moe import _fused_triton

    monkeypatch.setattr(_fused_triton, "sm_count", lambda t: 2)
    args, ref = _bf16_case(t, 64, 48, e, k, device, False, seed=group_m)
    g = GemmConfig(16, 32, 32, group_m=group_m, persistent=1)
    out = fused_moe(*args, options=FusedMoeOptions(g, replace(g, block_n=64)))
    torch.testing.assert_close(out.cpu(), ref, rtol=3e-2, atol=1.5e-2)


@pytest.mark.parametrize("combine,gate_up_tile", [("sum", 0), ("atomic", 0), ("sum", 1)])
def test_fused_moe_persistent_tiles(device, monkeypatch, combine, gate_up_tile):
    # Both GEMMs walk the tiles of the occupied blocks with 3 programs (as if the GPU had 3 SMs),
    # so every program takes several tiles of different experts; unoccupied blocks past
    # num_tokens_post_pad are never visited (their sorted ids are unwritten).
    from solbench.kernels.moe import _fused_triton

    monkeypatch.setattr(_fused_triton, "sm_count", lambda t: 3)
    args, ref = _bf16_case(21, 64, 48, 16, 4, device, True)
    g1 = replace(SORTED16.gemm1, persistent=1, gate_up_tile=gate_up_tile)
    out = fused_moe(*args, options=FusedMoeOptions(g1, replace(SORTED16.gemm2, persistent=2), combine=combine))
    torch.testing.assert_close(out.cpu(), ref, rtol=3e-2, atol=1.5e-2)


def test_fused_moe_bf16_out_and_zero_tokens(device):
    args, ref = _bf16_case(5, 64, 48, 8, 2, device)
    out = torch.full((5, 64), float("nan"), dtype=BF16, device=device)
    for combine in ("sum", "atomic"):                          # atomic: an fp32 scratch, then a cast
        out.fill_(float("nan"))
        fused_moe(*args, out=out, options=FusedMoeOptions(GemmConfig(16, 32, 32), GemmConfig(16, 32, 32),
                                                          combine=combine))
        torch.testing.assert_close(out.cpu().float(), ref, rtol=3e-2, atol=2e-2)
    empty, _ = _bf16_case(0, 64, 48, 8, 2, device)
    assert fused_moe(*empty).shape == (0, 64)


def test_default_options_by_bucket():
    dec = default_options(1, 128, 2048, 768, 8, fp8=False, sm_count=132)
    assert dec.direct and dec.gemm1.block_m == 1
    # 8 slots x 768/BN programs reach two per SM only at BN=16; K tiles then hold 8k elements.
    assert dec.gemm1.block_n == 16 and 8 * 768 // 16 >= 264 and dec.gemm1.block_k == 512
    big = default_options(45936, 128, 2048, 768, 8, fp8=False)
    assert not big.direct and big.gemm1.block_m == 128 and big.combine == "sum"
    f8 = default_options(3804, 256, 7168, 2048, 8, fp8=True)
    assert f8.gemm1.block_n == 128 and f8.gemm1.block_k == 128 and f8.gemm1.block_m == 64
    assert f8.gemm1.gate_up_tile == 1 and big.gemm1.gate_up_tile == 0


def test_fp8_decode_options():
    # fp8 decode (DeepSeek-like T=1, E=256, H=7168, I=2048, k=8 on 132 SMs): GEMM1 in 4 warps and
    # GEMM2 loads of 16k one-byte weights; bf16 keeps 8 warps and 8k-element loads.
    f8 = default_options(1, 256, 7168, 2048, 8, fp8=True, sm_count=132)
    assert f8.direct and f8.gemm1.num_warps == 4 and (f8.gemm2.block_n, f8.gemm2.block_k) == (16, 1024)
    bf = default_options(1, 256, 7168, 2048, 8, fp8=False, sm_count=132)
    assert bf.gemm1.num_warps == 8 and (bf.gemm2.block_n, bf.gemm2.block_k) == (16, 512)
    assert default_options(4000, 128, 2048, 768, 8, fp8=True).combine == "sum"


def test_gemm_options_from_the_command_line(device, monkeypatch):
    # Each path's overrides replace fields of its heuristic's GEMM configs (read at each call), so
    # one run can A/B the sorted and the decode launches; the launches they describe are correct.
    from solbench.kernels.moe import fused

    monkeypatch.setenv("SOLBENCH_MOE_GEMM1", "block_k=32,num_stages=2")
    monkeypatch.setenv("SOLBENCH_MOE_GEMM2", "block_n=32,block_k=32,group_m=2")
    monkeypatch.setenv("SOLBENCH_MOE_DECODE1", "block_n=16,block_k=32")
    sorted_opt = fused.env_override(default_options(21, 16, 64, 48, 4, fp8=False))
    assert not sorted_opt.direct and sorted_opt.gemm1.block_k == 32 and sorted_opt.gemm1.num_stages == 2
    assert (sorted_opt.gemm2.block_n, sorted_opt.gemm2.block_k, sorted_opt.gemm2.group_m) == (32, 32, 2)
    dec = fused.env_override(default_options(3, 16, 64, 48, 4, fp8=False))
    assert dec.direct and (dec.gemm1.block_n, dec.gemm1.block_k) == (16, 32)
    assert dec.gemm2 == default_options(3, 16, 64, 48, 4, fp8=False).gemm2   # the sorted path's envs stay out
    for t in (21, 3):
        args, ref = _bf16_case(t, 64, 48, 16, 4, device)
        torch.testing.assert_close(fused_moe(*args).cpu(), ref, rtol=3e-2, atol=1.5e-2)
    monkeypatch.setenv("SOLBENCH_MOE_GEMM1", "block_m=32")
    with pytest.raises(ValueError, match="block_m must match"):
        fused.env_override(default_options(21, 16, 64, 48, 4, fp8=False))
    for env in ("SOLBENCH_MOE_DECODE1", "SOLBENCH_MOE_DECODE2"):
        monkeypatch.setenv(env, "block_m=16")
    with pytest.raises(ValueError, match="block_m=1 is the direct"):
        fused.env_override(default_options(3, 16, 64, 48, 4, fp8=False))
    monkeypatch.setenv("SOLBENCH_MOE_DECODE2", "stages=2")
    with pytest.raises(ValueError, match="SOLBENCH_MOE_DECODE2=.*unknown or repeated field 'stages'"):
        fused.env_override(default_options(3, 16, 64, 48, 4, fp8=False))


# ---- fp8 -----------------------------------------------------------------------------------------------

def _fp8_case(t, h, i, e, k, device, dup=False):
    g = torch.Generator().manual_seed(1)
    b = (128, 128)
    x, xs = fp8_blocks.random_blocks((t, h), (1, 128), "cpu", g)
    w1, s1 = fp8_blocks.random_blocks((e, 2 * i, h), b, "cpu", g, scale=h ** -0.5)
    w2, s2 = fp8_blocks.random_blocks((e, h, i), b, "cpu", g, scale=i ** -0.5)
    tw, ti = _ids(t, e, k, 1, dup)
    return (x, w1, w2, tw, ti, xs, s1, s2)


def _fp8_model(x, w1, w2, tw, ti, xs, s1, s2, requant: bool):
    """fp32 torch model of the kernel: dequantized GEMM1, silu*mul, the 1x128 group requant
    (scale = max(amax, 1e-10) / 448, round to nearest even) when ``requant``, GEMM2."""
    b = (128, 128)
    xd = fp8_blocks.dequantize(x, xs, (1, 128))
    out = torch.zeros(x.shape[0], w2.shape[1])
    for t in range(x.shape[0]):
        for j in range(ti.shape[1]):
            e = int(ti[t, j])
            hh = fp8_blocks.dequantize(w1[e], s1[e], b) @ xd[t]
            a = F.silu(hh[: hh.numel() // 2]) * hh[hh.numel() // 2:]
            if requant:
                g = a.view(-1, 128)
                s = g.abs().amax(-1, keepdim=True).clamp_min(1e-10) / 448.0
                a = ((g / s).clamp(-448, 448).to(torch.float8_e4m3fn).float() * s).view(-1)
            out[t] += tw[t, j] * (fp8_blocks.dequantize(w2[e], s2[e], b) @ a)
    return out


@pytest.mark.parametrize("t,dup,gate_up_tile", [(2, True, 0), (9, False, 0), (9, True, 1)])
def test_fp8_fused_moe_matches_a_model_of_its_requantization(device, t, dup, gate_up_tile):
    # T=2 takes the direct path (activation kept in fp32), T=9 the sorted path (1x128 fp8 requant
    # in GEMM1's epilogue). The model reproduces the fp8 rounding, so the check is tight: what is
    # left is the bf16 per-slot rows (the interpreter truncates them, ~0.3% RMS), while a
    # truncating fp8 conversion alone gives ~4% and a wrong group scale far more.
    args = _fp8_case(t, 256, 256, 8, 2, device, dup)
    opt = None if t <= 4 else FusedMoeOptions(GemmConfig(16, 128, 128, group_m=1, gate_up_tile=gate_up_tile),
                                              GemmConfig(16, 64, 128, group_m=1),
                                              combine="sum")
    out = fp8_block_fused_moe(*[a.to(device) for a in args], out=torch.empty(t, 256, device=device), options=opt)
    want = _fp8_model(*args, requant=t > 4)
    rel = (out.cpu() - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt()
    assert rel < 6e-3, rel


def test_fp8_fused_moe_persistent_tiles(device, monkeypatch):
    from solbench.kernels.moe import _fused_triton

    monkeypatch.setattr(_fused_triton, "sm_count", lambda t: 2)
    args = _fp8_case(9, 256, 256, 8, 2, device, True)
    opt = FusedMoeOptions(GemmConfig(16, 128, 128, group_m=1, gate_up_tile=1, persistent=1),
                          GemmConfig(16, 64, 128, group_m=1, persistent=1), combine="sum")
    out = fp8_block_fused_moe(*[a.to(device) for a in args], out=torch.empty(9, 256, device=device), options=opt)
    want = _fp8_model(*args, requant=True)
    rel = (out.cpu() - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt()
    assert rel < 6e-3, rel


@pytest.mark.parametrize("bk1,bk2", [(256, 512), (1024, 128)])
def test_fp8_decode_tiles_spanning_several_scale_groups(device, bk1, bk2):
    # One-row tiles of 2-8 128-groups, each group's partial sum scaled by its own block scale;
    # H=384 leaves the last K tile partly past the end. No requantization here: exact to fp32.
    args = _fp8_case(2, 384, 256, 8, 2, device, dup=True)
    opt = FusedMoeOptions(GemmConfig(1, 32, bk1, group_m=1), GemmConfig(1, 16, bk2, group_m=1), direct=True)
    out = fp8_block_fused_moe(*[a.to(device) for a in args], out=torch.empty(2, 384, device=device), options=opt)
    want = _fp8_model(*args, requant=False)
    torch.testing.assert_close(out.cpu(), want, rtol=1e-4, atol=1e-5)


# ---- validation and custom ops ---------------------------------------------------------------------------

def test_validation_errors_name_what_is_supported():
    args, _ = _bf16_case(3, 64, 48, 8, 2, "cpu")
    x, w1, w2, tw, ti = args
    with pytest.raises(TypeError, match="topk_ids has dtype int64; supported: int32"):
        fused_moe(x, w1, w2, tw, ti.long())
    with pytest.raises(ValueError, match=r"w2 .* \(needs \[E, H, I\]\)"):
        fused_moe(x, w1, w2[:, :, :40], tw, ti)
    with pytest.raises(TypeError, match="hidden_states has dtype float32"):
        fused_moe(x.float(), w1, w2, tw, ti)
    with pytest.raises(ValueError, match="expected 'atomic' or 'sum'"):
        FusedMoeOptions(GemmConfig(16, 32, 32), GemmConfig(16, 32, 32), combine="add")
    with pytest.raises(ValueError, match="block_m must match"):
        FusedMoeOptions(GemmConfig(16, 32, 32), GemmConfig(32, 32, 32))
    with pytest.raises(ValueError, match="gate_up_tile is 0 or 1, persistent 0"):
        FusedMoeOptions(GemmConfig(16, 32, 32, gate_up_tile=2), GemmConfig(16, 32, 32))
    with pytest.raises(ValueError, match=r"persistent 0 \(off\) to 4"):
        FusedMoeOptions(GemmConfig(16, 32, 32, persistent=5), GemmConfig(16, 32, 32))
    with pytest.raises(ValueError, match="persistent tiles are the sorted path's"):
        FusedMoeOptions(GemmConfig(1, 32, 32, persistent=1), GemmConfig(1, 32, 32), direct=True)
    with pytest.raises(ValueError, match=r"top_k=9 must be in \[1, min\(num_experts=8"):
        topk_gating_softmax(torch.randn(2, 8), 9)
    with pytest.raises(ValueError, match="multiples of 128"):
        fp8_block_fused_moe(*_fp8_case(2, 192, 256, 4, 2, "cpu"))


def test_custom_ops_schema_and_fake():
    args, _ = _bf16_case(3, 64, 48, 8, 2, "cpu")
    out = torch.empty(3, 64)
    opt = default_options(3, 8, 64, 48, 2, False)
    from solbench.kernels.moe.fused import _pack

    torch.library.opcheck(torch.ops.solbench.fused_moe.out, (*args, out, _pack(opt), True, "sum"),
                          test_utils=("test_schema", "test_faketensor"))
    _, ids = _ids(6, 8, 2)
    torch.library.opcheck(torch.ops.solbench.moe_count_and_sort.out,
                          (ids, 8, torch.empty(12, dtype=torch.int32), torch.empty(8, dtype=torch.int32),
                           torch.empty(9, dtype=torch.int32)), test_utils=("test_schema", "test_faketensor"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_capture_of_the_sorted_path():
    args, ref = _bf16_case(40, 256, 128, 16, 4, "cuda")
    out = torch.empty(40, 256, device="cuda")
    fused_moe(*args, out=out)                                  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fused_moe(*args, out=out)
    out.fill_(float("nan"))
    graph.replay()
    torch.testing.assert_close(out.cpu(), ref, rtol=3e-2, atol=1.5e-2)


# ---- the torch formulations (CPU tensors without the interpreter) ------------------------------------------

@pytest.fixture
def eager_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_routing_torch_formulations_off_cuda(eager_cpu):
    _, ids = _ids(21, 16, 4, dup=True)
    ids[3, 1] = 16                                              # outside [0, E): dropped, as the kernel does
    keep = ids.flatten() < 16
    s, ex, ntpp = moe_align_block_size(ids, 16, 8)
    lay = align_layout(ids.flatten()[keep], 16, 8)              # the layout of the routed slots only
    used = int(lay["offsets"][-1])
    assert int(ntpp) == used and torch.equal(ex[:used // 8].long(), lay["block_experts"][:used // 8])
    real = keep.nonzero().flatten()                             # the kept slots' flat indices
    want = torch.where(lay["sorted_ids"][:used] < keep.sum(), real[lay["sorted_ids"][:used].clamp_max(
        int(keep.sum()) - 1)], ids.numel())
    assert torch.equal(s[:used].long(), want)
    s, c, cs = moe_count_and_sort(ids, 16)
    n = int(keep.sum())
    assert torch.equal(s[:n].long(), real[torch.sort(ids.flatten()[keep].long(), stable=True).indices])
    assert cs[-1] == n and torch.equal(c.long(), torch.bincount(ids.flatten()[keep].long(), minlength=16))
    x = (torch.randn(9, 24, generator=torch.Generator().manual_seed(0)) * 2).round().to(BF16)
    w, i = topk_gating_softmax(x, 5, renormalize=True)
    order = torch.sort(-x.float() + torch.arange(24) * 1e-4, dim=-1, stable=True).indices[:, :5]
    assert torch.equal(i.long(), order)                          # equal logits: the lower expert first
    want = torch.softmax(x.float(), -1).gather(1, order)
    torch.testing.assert_close(w, want / want.sum(-1, keepdim=True))
    y = torch.randn(5, 3, 40, dtype=BF16)
    assert torch.equal(moe_sum_reduce(y, 2.5), (y.float().sum(1) * 2.5).to(BF16))


def test_fused_moe_torch_formulations_off_cuda(eager_cpu):
    args, ref = _bf16_case(21, 64, 48, 16, 4, "cpu", dup=True)
    torch.testing.assert_close(fused_moe(*args), ref, rtol=1e-5, atol=1e-5)
    out = torch.full((21, 64), float("nan"), dtype=BF16)
    assert fused_moe(*args, out=out) is out and torch.equal(out, ref.to(BF16))
    f8 = _fp8_case(9, 256, 128, 8, 2, "cpu", dup=True)
    torch.testing.assert_close(fp8_block_fused_moe(*f8).float(), _fp8_model(*f8, requant=False).to(BF16).float(),
                               rtol=1e-2, atol=1e-2)
    assert fused_moe(*_bf16_case(0, 64, 48, 8, 2, "cpu")[0]).shape == (0, 64)
