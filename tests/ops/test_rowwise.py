"""kernels/rowwise.py: the tiling table's first-principles choices and its override hook; the
row-norm kernel's int64 row indexing."""
import inspect

import pytest

from solbench.kernels import rowwise
from solbench.kernels._rowwise_triton import row_ptrs, tile_offsets
from solbench.kernels.rowwise import RowOptions, row_options, row_grid  # noqa: F401


def test_short_rows_pack_several_rows_per_program(monkeypatch):
    from solbench.runtime import tuning

    monkeypatch.setattr(tuning, "sm_count", lambda: None)  # the tile rule alone, no device
    # hidden 128 bf16, prefill: 4096-element tiles = 32 rows, 8 warps x 32 threads x 16 elements.
    assert row_options(128, 100_000) == RowOptions(block_m=32, block_n=128, num_warps=8)
    # decode: 3 rows -> one program of 4 rows, one warp (16 elements per thread), not 32 rows.
    cfg = row_options(128, 3)
    assert (cfg.block_m, cfg.num_warps, row_grid(3, cfg)) == (4, 1, (1,))
    # hidden 1152 pads to 2048: two rows per program.
    assert row_options(1152, 300).block_m == 2


def test_on_a_device_tiles_split_until_every_sm_has_a_program(monkeypatch):
    from solbench.runtime import tuning

    monkeypatch.setattr(tuning, "sm_count", lambda: 132)  # an H100 / H200
    assert row_options(128, 100_000).block_m == 32  # thousands of programs already
    cfg = row_options(128, 3)  # 3 rows: one row per program, 3 programs, not one of 4 rows
    assert (cfg.block_m, cfg.num_warps, row_grid(3, cfg)) == (1, 1, (3,))
    assert row_options(1152, 300).block_m == 2  # 150 programs >= 132 SMs: unchanged
    assert row_options(1152, 200).block_m == 1  # 100 programs of 2 rows would idle 32 SMs


def test_wide_rows_take_one_row_and_more_warps():
    cfg = row_options(7168, 53)
    assert (cfg.block_m, cfg.block_n, cfg.num_warps, cfg.chunked) == (1, 8192, 16, False)
    # fp32 moves 8 elements per thread for the same 32 bytes: twice the warps of bf16.
    assert row_options(1024, 4096, elem_bytes=4).num_warps == 2 * row_options(1024, 4096).num_warps


def test_long_rows_are_chunked_and_limits_are_clear():
    cfg = row_options(rowwise.MAX_WHOLE_ROW + 1, 10)
    assert cfg.chunked and cfg.block_m == 1 and cfg.block_n == rowwise.CHUNK_N
    with pytest.raises(ValueError, match="hidden size 0 is not supported"):
        row_options(0, 10)
    with pytest.raises(ValueError, match="multiple of 128"):
        rowwise.check_hidden(100, "quant", multiple_of=128)


def test_given_options_win_and_are_capped_by_rows():
    given = RowOptions(block_m=8, block_n=2048, num_warps=4)
    assert row_options(2048, 1000, kernel="rms_norm", options=given).block_m == 8
    assert row_options(2048, 2, kernel="rms_norm", options=given).block_m == 2
    assert row_options(2048, 1000, kernel="rms_norm").block_m == 2


def test_row_indices_are_int64():
    from solbench.kernels import _rownorm_triton as rownorm

    src = inspect.getsource(rownorm._rownorm_kernel.fn)
    assert "tl.program_id(0).to(tl.int64)" in src                                  # chunked rows
    assert "tl.arange(0, BLOCK_M).to(tl.int64)[:, None] + tile * BLOCK_M" in inspect.getsource(rownorm._whole_rows.fn)


_COMPILE_SCRIPT = r"""
import inspect, json, re, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from solbench.kernels._rownorm_triton import _rownorm_kernel

names = list(inspect.signature(_rownorm_kernel.fn).parameters)
result = {}
for case, (consts, warps) in json.loads(sys.argv[1]).items():
    sig = {k: "constexpr" if k in consts else "*bf16" if k.endswith("_ptr") else "fp32" if k == "eps" else "i32"
           for k in names}
    # The divisibility facts Triton's launcher specializes on for 16-byte aligned tensors/strides.
    aligned = [i for i, k in enumerate(names) if k.endswith("_ptr") or k.endswith("stride") or k == "n"]
    src = ASTSource(fn=_rownorm_kernel, signature=sig, constexprs=consts,
                    attrs={(i,): [["tt.divisibility", 16]] for i in aligned})
    ptx = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps}).asm["ptx"]
    result[case] = re.findall(r"(?:ld|st)\.global[.:\w]*|cp\.async\.[.\w]*|shfl\.sync\.\w+", ptx)
print(json.dumps(result))
"""


def test_kernel_compiles_for_sm90_with_16_byte_accesses():
    """Compile the row-norm kernel for sm_90 without a GPU (PTX + ptxas, in a subprocess because
    the tests run kernels in the interpreter) and check every global access is a 16-byte vector."""
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("triton")
    base = dict(MODE=0, HAS_RES=False, HAS_Z=False, NORM_BEFORE_GATE=True, HAS_W=True, HAS_W2=False, HAS_B=False,
                SEGMENTED=False, W_PER_SEG=False, BLOCK_M=32, BLOCK_N=128, CHUNKED=False, PERSISTENT=False, STAGES=1,
                PARAMS_FIRST=True, BLOCK_T1=0, BLOCK_T2=0, LOAD_EVICT="", STORE_CACHE="", SHIFTED_STATS=False)
    cases = {
        "rms_short_rows": (base, 8),
        "fused_add_wide": ({**base, "HAS_RES": True, "BLOCK_M": 1, "BLOCK_N": 8192}, 16),
        "qk_heads": ({**base, "HAS_W2": True, "SEGMENTED": True}, 8),
        "gated": ({**base, "HAS_Z": True}, 8),
        "gated_params_after_reduction": ({**base, "HAS_Z": True, "PARAMS_FIRST": False}, 8),
        "layer_chunked": ({**base, "MODE": 1, "HAS_B": True, "HAS_RES": True, "BLOCK_M": 1, "BLOCK_N": 4096,
                           "CHUNKED": True}, 8),
        # split whole rows (kernels/rowwise.column_tiles): 1152 as 1024 + 128, 7168 as 4096 + 2048 + 1024,
        # every tile still one 16-byte vector per access
        "rms_split_1152": ({**base, "BLOCK_M": 8, "BLOCK_N": 1024, "BLOCK_T1": 128}, 4),
        # one warp, whole-vector tail (rowwise.split_tails): 1024 + 256, one register layout
        "layer_split_one_warp": ({**base, "MODE": 1, "HAS_B": True, "BLOCK_M": 1, "BLOCK_N": 1024,
                                  "BLOCK_T1": 256}, 1),
        "layer_split_7168": ({**base, "MODE": 1, "HAS_B": True, "HAS_RES": True, "BLOCK_M": 1, "BLOCK_N": 4096,
                              "BLOCK_T1": 2048, "BLOCK_T2": 1024}, 4),
        # LayerNorm statistics from one reduction of shifted sums (rownorm.shifted_stats), on a split row
        "layer_shifted_split": ({**base, "MODE": 1, "HAS_B": True, "HAS_RES": True, "SHIFTED_STATS": True,
                                 "BLOCK_M": 8, "BLOCK_N": 1024, "BLOCK_T1": 128}, 4),
        # many-wave launches: the row's loads evict-first, its stores streaming (rownorm.streaming_hints)
        "fused_add_streaming": ({**base, "HAS_RES": True, "BLOCK_M": 2, "BLOCK_N": 1024, "LOAD_EVICT": "evict_first",
                                 "STORE_CACHE": ".cs"}, 4),
        # persistent and pipelined: the next tile's loads are 16-byte cp.async copies into shared memory
        "fused_add_persistent": ({**base, "HAS_RES": True, "BLOCK_M": 2, "BLOCK_N": 1024, "PERSISTENT": True,
                                  "STAGES": 2}, 4),
    }
    env = {**os.environ, "TRITON_INTERPRET": "0", "TRITON_DEFAULT_FP_FUSION": "1"}
    proc = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT, json.dumps(cases)], env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode and ("ASTSource" in proc.stderr or "GPUTarget" in proc.stderr):
        pytest.skip(f"this triton has another offline compile API: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for case, ops in json.loads(proc.stdout.strip().splitlines()[-1]).items():
        copies = [o for o in ops if o.startswith("cp.async.") and ".shared.global" in o]
        assert any(o.startswith("ld") for o in ops) or copies, case
        assert any(o.startswith("st") for o in ops), case
        # the shifted LayerNorm statistics load each row's first value (x and the residual) as a scalar
        scalar_ok = {"ld.global.b16"} if case == "layer_shifted_split" else set()
        accesses = [o for o in ops if o.startswith(("ld", "st"))]
        assert all(".v4.b32" in o or o in scalar_ok for o in accesses), (case, sorted(set(ops)))
        assert bool(copies) == (case == "fused_add_persistent"), (case, sorted(set(ops)))
        streaming = case == "fused_add_streaming"
        row_loads = [o for o in ops if o.startswith("ld")]
        # x and residual evict-first, the weight (shared by every program) not
        assert sum("evict_first" in o for o in row_loads) == (len(row_loads) - 1 if streaming else 0), (case, ops)
        assert all((".cs." in o) == streaming for o in ops if o.startswith("st")), (case, ops)
        if case == "layer_split_one_warp":  # one register layout: the only shuffles are the reductions'
            assert not any(o.startswith("shfl.sync.idx") for o in ops), (case, ops)
            assert sum(o.startswith("shfl.sync.bfly") for o in ops) == 2 * 2 * 5, (case, ops)


def test_tunables_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("SOLBENCH_ROW_TILE_ELEMS", "8192")
    assert rowwise._env_int("SOLBENCH_ROW_TILE_ELEMS", 4096) == 8192
    monkeypatch.setenv("SOLBENCH_ROW_TILE_ELEMS", "3000")
    with pytest.raises(ValueError, match="power of two"):
        rowwise._env_int("SOLBENCH_ROW_TILE_ELEMS", 4096)
    monkeypatch.delenv("SOLBENCH_ROW_TILE_ELEMS")
    assert rowwise._env_int("SOLBENCH_ROW_TILE_ELEMS", 4096) == 4096


def test_jit_helpers_tile_a_strided_copy(device):
    """tile_offsets/row_ptrs (the helpers other row-wise kernels build on) on a strided copy with
    a ragged last tile."""
    import torch
    import triton
    import triton.language as tl

    @triton.jit  # the helpers are module globals, where jit resolves calls
    def _copy(x_ptr, y_ptr, rows, n, xs, ys, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        r, c, mask = tile_offsets(tl.program_id(0), rows, n, BLOCK_M, BLOCK_N)
        v = tl.load(row_ptrs(x_ptr, r, c, xs), mask=mask)
        tl.store(row_ptrs(y_ptr, r, c, ys), v * 2, mask=mask)

    x = torch.randn(7, 20, device=device)[:, :13]
    y = torch.full((7, 13), float("nan"), device=device)
    cfg = row_options(13, 7, 4)
    _copy[row_grid(7, cfg)](x, y, 7, 13, x.stride(0), y.stride(0), BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n)
    assert torch.equal(y, x * 2)


ROWNORM_OPS = ("rms_norm", "fused_add_rms_norm", "layer_norm", "l2_norm", "gated_rms_norm", "fused_qk_rmsnorm")


@pytest.mark.parametrize("op", ROWNORM_OPS)
def test_persistent_pipelined_launch_matches_the_reference(op, device):
    # A persistent config (what `solbench tune` may adopt for these kernels) forced on every key
    # the operator looks up: two programs per SM striding over tiles of 2 rows, 2-stage pipeline.
    # Shapes with a row count that is not a multiple of tiles x programs, and a decode-sized one.
    from solbench.runtime import tuning
    from solbench.core.check import run_impl
    from solbench.core.spec import get_spec, impls_for
    from solbench.kernels.common import next_pow2

    spec, impl = get_spec(op), impls_for(op)["ours_triton"]
    if not impl.available():
        pytest.skip(impl.available().reason)
    for shape in spec.smoke_shapes():
        inputs = spec.make_inputs(shape, device, 0)
        with tuning.recording() as keys:
            run_impl(spec, impl, shape, inputs)
        looping = [(k, n) for k, n, family, _ in keys if family == "row_persistent"]
        assert looping, f"{op} launches no kernel that can loop"
        res = _check_with_configs(spec, impl, shape, device, {
            (k, n): {"block_m": 2, "block_n": next_pow2(n), "num_warps": 2, "chunked": False,
                     "programs_per_sm": 2, "stages": 2} for k, n in looping})
        assert res.ok, (op, shape.id, res.reason)


def _check_with_configs(spec, impl, shape, device, configs):
    """check_impl (fresh seeds, NaN-poisoned outputs) with ``configs`` ({(kernel, n): cfg})
    forced on those tuned-table keys."""
    import contextlib

    from solbench.runtime import tuning
    from solbench.core.check import check_impl

    with contextlib.ExitStack() as stack:
        for (kernel, n), cfg in configs.items():
            stack.enter_context(tuning.overriding(kernel, n, cfg))
        return check_impl(spec, impl, shape, device)


def test_a_regular_tuned_tile_still_fills_the_sms_but_a_few_rows_tile_is_kept(monkeypatch):
    from solbench.runtime import tuning

    monkeypatch.setattr(tuning, "sm_count", lambda: 132)
    tile = {"block_m": 8, "block_n": 2048, "num_warps": 8, "chunked": False}
    with tuning.overriding("rms_norm", 2048, tile):
        assert row_options(2048, 100_000, kernel="rms_norm").block_m == 8  # as tuned
        cfg = row_options(2048, 300, kernel="rms_norm")  # 8 rows per program: 38 programs
        assert (cfg.block_m, cfg.num_warps, row_grid(300, cfg)) == (2, 2, (150,))
    with tuning.overriding("rms_norm" + tuning.FEW_ROWS_SUFFIX, 2048, tile):
        assert row_options(2048, 300, kernel="rms_norm").block_m == 8  # measured on such launches


def test_params_first_on_few_wave_launches(monkeypatch):
    from solbench.kernels import rownorm
    from solbench.runtime import tuning

    monkeypatch.setattr(tuning, "sm_count", lambda: 132)
    assert rownorm.params_first(1) and rownorm.params_first(8 * 132) and not rownorm.params_first(8 * 132 + 1)
    assert not rownorm.params_first(10**6)
    monkeypatch.setattr(tuning, "sm_count", lambda: None)
    assert rownorm.params_first(10**6)


@pytest.mark.parametrize("pinned", [True, False, None])
def test_a_tile_can_pin_when_the_parameters_load(pinned, monkeypatch, device):
    # RowOptions.params_first (the H200's layer_norm@many_rows:1152 pins True) overrides the rule by
    # programs per SM, which without an SM count loads them first; the output stays the reference's.
    import torch

    from solbench.kernels import _rownorm_triton
    from solbench.kernels.rownorm import layer_norm
    from solbench.runtime import tuning

    launched = []
    kernel = _rownorm_triton._rownorm_kernel

    class Recorder:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                launched.append(kwargs["PARAMS_FIRST"])
                return kernel[grid](*args, **kwargs)
            return launch

    monkeypatch.setattr(_rownorm_triton, "_rownorm_kernel", Recorder())
    x = torch.randn(5, 1152, device=device, dtype=torch.bfloat16)
    w = torch.randn(1152, device=device, dtype=torch.bfloat16)
    b = torch.randn(1152, device=device, dtype=torch.bfloat16)
    tile = {"block_m": 1, "block_n": 2048, "num_warps": 1, "chunked": False, "split": True, "params_first": pinned}
    with tuning.overriding("layer_norm", 1152, tile):
        y = layer_norm(x, w, b)
    assert launched == [True if pinned is None else pinned]
    ref = torch.nn.functional.layer_norm(x.float(), (1152,), w.float(), b.float(), 1e-5)
    torch.testing.assert_close(y.float(), ref, atol=0.05, rtol=0.02)


def test_streaming_hints_only_on_many_wave_whole_row_launches(monkeypatch):
    from solbench.kernels import rownorm
    from solbench.runtime import tuning

    none = {"LOAD_EVICT": "", "STORE_CACHE": ""}
    hints = {"LOAD_EVICT": "evict_first", "STORE_CACHE": ".cs"}
    monkeypatch.setattr(tuning, "sm_count", lambda: 132)
    assert rownorm.streaming_hints(8 * 132 + 1) == hints and rownorm.streaming_hints(8 * 132) == none
    assert rownorm.streaming_hints(10**6, chunked=True) == none  # later passes re-read the row from L2
    monkeypatch.setattr(tuning, "sm_count", lambda: None)
    assert rownorm.streaming_hints(10**6) == none  # no device facts: no hints


#: A non-power-of-two row length per row-norm operator, so the split whole-row path (two or three
#: column tiles, kernels/rowwise.column_tiles, with whole-vector tails: rowwise.split_tails) runs on
#: one warp: 1152 = 1024 + 256 (the last 128 masked), 7168 = 4096 + 2048 + 1024. Whole-vector
#: tails split no row under 512 bf16, so fused_qk_rmsnorm's heads (at most 256) never split.
SPLIT_SHAPES = {
    "rms_norm": {"token_count": 5, "hidden_size": 1152, "eps": 1e-6},
    "fused_add_rms_norm": {"token_count": 3, "hidden_size": 7168, "eps": 1e-6},
    "layer_norm": {"shape": [3, 1, 1152]},
    "l2_norm": {"num_tokens": 3, "hidden_size": 1152},
    "gated_rms_norm": {"rows": 5, "hidden_size": 1152, "eps": 1e-6, "norm_before_gate": True, "activation": "silu"},
}


def test_column_tiles_cover_the_row_with_less_padding():
    assert rowwise.column_tiles(1152) == (1024, 128, 0)
    assert rowwise.column_tiles(7168) == (4096, 2048, 1024)
    assert rowwise.column_tiles(5120) == (4096, 1024, 0)
    assert rowwise.column_tiles(2048) == (2048, 0, 0)  # a power of two: nothing to split
    assert rowwise.column_tiles(1000) == (1024, 0, 0)  # 512 + 256 + 256 saves nothing
    assert rowwise.column_tiles(1025) == (2048, 0, 0)  # a 1-element tile: not split
    for n in range(1, 5000, 7):
        main, t1, t2 = rowwise.column_tiles(n)
        assert main + t1 + t2 >= n and all(t & (t - 1) == 0 for t in (main, t1, t2))
        assert main + t1 + t2 <= rowwise.next_pow2(n)
    for n in range(1, 20000, 3):
        for min_tail in (128, 256, 1024, 4096):
            main, t1, t2 = rowwise.column_tiles(n, min_tail)
            assert main + t1 + t2 >= n and main + t1 + t2 <= rowwise.next_pow2(n)
            assert all(t == 0 or t >= min_tail for t in (t1, t2))
            if t1:  # every tile but the last inside the row (the kernel drops their column masks)
                assert main < n and (t2 == 0 or main + t1 < n)
    assert rowwise.column_tiles(1152, 256) == (1024, 256, 0)
    assert rowwise.column_tiles(1152, 1024) == (2048, 0, 0)  # a tail as wide as the main tile: no gain
    assert rowwise.column_tiles(4288, 256) == (4096, 256, 0)  # not 4096 + 256 + 256 (a tile wholly masked)


def test_split_tails_keep_one_vector_per_thread():
    # Tails narrower than one 16-byte vector per thread get their own register layout, and the
    # row is then converted between layouts with shuffles (rowwise.split_tails).
    assert rowwise.split_tails(1, 2) == 256 and rowwise.split_tails(4, 2) == 1024 and rowwise.split_tails(1, 4) == 128
    one_warp = RowOptions(block_m=1, block_n=2048, num_warps=1, split=True)
    assert one_warp.column_kwargs(1152) == {"BLOCK_N": 1024, "BLOCK_T1": 256, "BLOCK_T2": 0}
    assert one_warp.column_kwargs(1152, elem_bytes=4) == {"BLOCK_N": 1024, "BLOCK_T1": 128, "BLOCK_T2": 0}
    assert RowOptions(block_m=2, block_n=2048, num_warps=4, split=True).column_kwargs(1152) == {
        "BLOCK_N": 2048, "BLOCK_T1": 0, "BLOCK_T2": 0}  # 1024 + 1024 would save nothing
    assert RowOptions(block_m=2, block_n=2048, num_warps=4).column_kwargs(1152) == {}


@pytest.mark.parametrize("op", sorted(SPLIT_SHAPES))
@pytest.mark.parametrize("block_m", [1, 2])
def test_split_column_tiles_match_the_reference(op, block_m, device):
    # A split config (what `solbench tune` may adopt for rows that are not a power of two) forced
    # on every key the operator looks up, with NaN-poisoned outputs and three seeds (check_impl):
    # one warp with whole-vector tails (1152 = 1024 + 256, the last 128 masked).
    from solbench.runtime import tuning
    from solbench.core.check import run_impl
    from solbench.core.spec import Shape, get_spec, impls_for

    spec, impl = get_spec(op), impls_for(op)["ours_triton"]
    if not impl.available():
        pytest.skip(impl.available().reason)
    params = SPLIT_SHAPES[op]
    shape = Shape(op=op, id="split", params=params, input_kwargs=params)
    with tuning.recording() as keys:
        run_impl(spec, impl, shape, spec.make_inputs(shape, device, 0))
    warps = 1
    split = [(k, n) for k, n, family, _ in keys
             if family == "row_persistent" and rowwise.column_tiles(n, rowwise.split_tails(warps, 2))[1]]
    assert split, f"{op}: no row-norm launch with a splittable row length"
    res = _check_with_configs(spec, impl, shape, device, {
        (k, n): {"block_m": block_m, "block_n": rowwise.next_pow2(n), "num_warps": warps, "chunked": False,
                 "split": True} for k, n in split})
    assert res.ok, (op, res.reason)


def test_streaming_hints_need_an_sm_count():
    from solbench.kernels import common as kernels

    assert kernels.streaming_hints(10**6, None) == {"LOAD_EVICT": "", "STORE_CACHE": ""}  # no SM count


@pytest.mark.parametrize("stats", ["shifted", "two_pass"])
@pytest.mark.parametrize("split", [False, True])
def test_layer_norm_statistics_match_the_reference(split, stats, device, monkeypatch):
    # Both ways to the mean and variance (rownorm.shifted_stats: one reduction of the sums of d and
    # d^2, d = v - the row's first value, or the two dependent passes; without an SM count the CPU
    # runs take the two passes everywhere, so the shifted sums are checked here), on the catalog's
    # smoke shapes and a 1152-wide one, padded or split (two warps: 1024 + 512 lanes); and, for the shifted
    # sums, on rows far from zero mean, where sum(x^2) - n mean^2 would cancel.
    import torch

    from solbench.kernels import rownorm
    from solbench.runtime import tuning
    from solbench.core.check import run_impl
    from solbench.core.spec import Shape, get_spec, impls_for
    from solbench.kernels.rownorm import layer_norm

    monkeypatch.setattr(rownorm, "shifted_stats", lambda programs: stats == "shifted")
    spec, impl = get_spec("layer_norm"), impls_for("layer_norm")["ours_triton"]
    if not impl.available():
        pytest.skip(impl.available().reason)
    shapes = spec.smoke_shapes() + [Shape(op="layer_norm", id="1152", params=SPLIT_SHAPES["layer_norm"],
                                          input_kwargs=SPLIT_SHAPES["layer_norm"])]
    for shape in shapes:
        with tuning.recording() as keys:  # the keys this launch looks up (few-rows ones on a GPU)
            run_impl(spec, impl, shape, spec.make_inputs(shape, device, 0))
        res = _check_with_configs(spec, impl, shape, device, {
            (k, n): {"block_m": 2, "block_n": rowwise.next_pow2(n), "num_warps": 2, "chunked": False, "split": split}
            for k, n, family, _ in keys if family == "row_persistent"})
        assert res.ok, (shape.id, res.reason)
    if stats != "shifted":
        return
    for offset in (1e3, -3e4):  # fp32 rows whose mean is far from 0: no worse than the two passes
        x = torch.randn(6, 300, device=device) + offset
        w, b = torch.randn(300, device=device), torch.randn(300, device=device)
        exact = torch.nn.functional.layer_norm(x.double(), (300,), w.double(), b.double(), 1e-5)
        err = {}
        for stats in ("two_pass", "shifted"):
            monkeypatch.setattr(rownorm, "shifted_stats", lambda programs, s=stats: s == "shifted")
            err[stats] = float((layer_norm(x, w, b, 1e-5).double() - exact).abs().max())
        # (under the interpreter: 7.6e-5 against 2.3e-4 at 1e3, 2.8e-3 against 8.4e-3 at -3e4, where
        # fp32's spacing is 2e-3: the mean itself cannot be held closer)
        assert err["shifted"] <= 1.5 * err["two_pass"] + 1e-5, (offset, err)


def test_shifted_stats_on_few_wave_launches(monkeypatch):
    # Shifted from one program per SM up to FEW_WAVES_PER_SM, two passes on fewer or more and
    # without an SM count (CPU: the interpreter runs the shifted sums' combine function in Python).
    from solbench.kernels import rownorm
    from solbench.runtime import tuning

    monkeypatch.setattr(tuning, "sm_count", lambda: 132)
    limit = rownorm.FEW_WAVES_PER_SM * 132
    assert rownorm.shifted_stats(limit) and not rownorm.shifted_stats(limit + 1)
    assert rownorm.shifted_stats(132) and not rownorm.shifted_stats(131)
    monkeypatch.setattr(tuning, "sm_count", lambda: None)
    assert not rownorm.shifted_stats(10**6) and not rownorm.shifted_stats(1)


def test_a_register_cap_is_a_launch_option_only_when_set():
    # RowOptions.maxnreg: ptxas's .maxnreg for the launch (more warps per SM than the compiler's
    # own allocation allows); unset, the launch carries no such option.
    assert "maxnreg" not in RowOptions(1, 2048, 1).launch_kwargs()
    assert RowOptions(1, 2048, 1, split=True, maxnreg=80).launch_kwargs()["maxnreg"] == 80


def test_a_launch_takes_the_options_it_is_given(device):
    # An argument wins over the tuned table and first principles (here: 2 rows x 1 warp a program).
    import torch

    from solbench.kernels import _rownorm_triton
    from solbench.kernels.eager import rms_normalize

    launched = []
    kernel = _rownorm_triton._rownorm_kernel

    class Recorder:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                launched.append((grid, kwargs["BLOCK_M"], kwargs["num_warps"]))
                return kernel[grid](*args, **kwargs)
            return launch

    x = torch.randn(5, 128, device=device, dtype=torch.bfloat16)
    w = torch.randn(128, device=device, dtype=torch.bfloat16)
    out = torch.empty_like(x)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_rownorm_triton, "_rownorm_kernel", Recorder())
        _rownorm_triton.launch_rownorm(x, out, mode="rms", eps=1e-6, n=128, rows=5, weight=w, kernel="rms_norm",
                                       options=RowOptions(block_m=2, block_n=128, num_warps=1))
    assert launched == [((3,), 2, 1)]
    torch.testing.assert_close(out.float(), rms_normalize(x, 1e-6) * w.float(), atol=0.05, rtol=0.02)
