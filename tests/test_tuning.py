"""Tuned launch configurations: candidates, the table format, look-up precedence, and that the
kernels' config functions honour a table (the measuring itself needs a GPU: `solbench tune`)."""
import json
from dataclasses import astuple
from pathlib import Path

import pytest

from solbench import tune as tuner
from solbench.kernels import rowwise
from solbench.runtime import tuning
from solbench.kernels.glu import glu_options
from solbench.kernels.rowwise import RowOptions, row_options


@pytest.fixture(autouse=True)
def no_device_facts():
    """The rules as on a machine without a GPU (no SM count, no device table), also when these
    tests run on one (device.sh gputests); a test that needs device facts sets them itself. Its
    own MonkeyPatch, undone after the test's, so the caches are cleared with the real functions."""
    import functools

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tuning, "sm_count", functools.lru_cache(maxsize=1)(lambda: None))  # reload() clears it
        mp.setattr(tuning, "_current_device_key", lambda: None)
        tuning.active_table.cache_clear()
        yield
    tuning.reload()


@pytest.fixture
def fake_gpu(tmp_path, monkeypatch):
    """A device key and an empty user table directory, as on a GPU box."""
    monkeypatch.setenv("SOLBENCH_CACHE", str(tmp_path))
    monkeypatch.delenv("SOLBENCH_TUNED", raising=False)
    monkeypatch.delenv("SOLBENCH_TUNED_TABLE", raising=False)
    monkeypatch.setattr(tuning, "_current_device_key", lambda: "Fake_GPU")
    tuning.reload()
    yield tmp_path / "tuned" / "Fake_GPU.json"
    tuning.reload()


def _write(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": tuning.TABLE_VERSION, "device": "Fake GPU", "entries": entries}))


def test_candidates_respect_register_and_row_bounds():
    for n in (128, 1152, 2048, 4096, 7168):
        cands = tuner.candidates("row", n, 2, rows=100_000)
        assert cands, n
        for c in cands:
            tile = c["block_m"] * c["block_n"]
            assert tile <= rowwise.MAX_TILE and c["block_n"] >= n
            assert 16 <= tile * 2 / (32 * c["num_warps"]) <= 128
    # Never more rows per tile than the problem has.
    assert all(c["block_m"] <= 4 for c in tuner.candidates("row", 128, 2, rows=3))
    # Rows past the whole-row limit are tuned as chunked loops of one row per program.
    assert all(c["chunked"] and c["block_m"] == 1 for c in tuner.candidates("row", 32768, 2, rows=100))


def test_persistent_candidates_only_for_kernels_that_loop_and_never_for_few_rows():
    plain = tuner.candidates("row", 2048, 2, rows=100_000)
    loops = tuner.candidates("row_persistent", 2048, 2, rows=100_000)
    persistent = [c for c in loops if c.get("programs_per_sm")]
    assert not any(c.get("programs_per_sm") for c in plain) and loops[:len(plain)] == plain
    assert persistent and all(c["stages"] == 2 and c["block_m"] * c["block_n"] in (2048, 4096, 8192)
                              for c in persistent)
    # the pipeline's shared memory (one tile of x and residual ahead) stays within the SM budget
    assert all(c["programs_per_sm"] * 2 * c["block_m"] * c["block_n"] * 2 <= rowwise.PERSISTENT_SMEM_PER_SM
               for c in persistent)
    assert not any(c.get("programs_per_sm") for c in tuner.candidates("row_persistent", 2048, 2, rows=100,
                                                                       few_rows=True))


def test_persistent_entries_apply_where_the_kernel_loops(fake_gpu):
    cfg = {"block_m": 2, "block_n": 2048, "num_warps": 8, "chunked": False, "programs_per_sm": 4, "stages": 2}
    _write(fake_gpu, {"rms_norm": {"2048": {"config": cfg}}})
    tuning.reload()
    looping = row_options(2048, 10_000, 2, kernel="rms_norm", persistent_ok=True)
    assert looping.persistent and looping.stages == 2
    assert rowwise.row_grid(10_000, looping, sm_count=132) == (528,)     # 4 programs per SM
    assert rowwise.row_grid(100, looping, sm_count=132) == (50,)         # never more programs than tiles
    flat = row_options(2048, 10_000, 2, kernel="rms_norm")                # a kernel without the loop
    assert not flat.persistent and flat.block_m == 2 and rowwise.row_grid(10_000, flat) == (5000,)


def test_first_principles_leave_no_sm_without_a_program(monkeypatch):
    from solbench.kernels.common import fill_sms

    # 126 rows of 2048 packed two per program would be 63 programs on a 132-SM part
    assert fill_sms(2, 4, lambda bm: -(-126 // bm), 132) == (1, 2)
    assert fill_sms(4, 8, lambda bm: -(-10_000 // bm), 132) == (4, 8)   # plenty of programs: unchanged
    assert fill_sms(2, 4, lambda bm: 1, None) == (2, 4)                  # no device facts: unchanged
    assert row_options(2048, 126, 2).block_m == 2                          # CPU: no SM count
    monkeypatch.setattr(tuning, "sm_count", lambda: 132)
    cfg = row_options(2048, 126, 2)
    # still fewer programs than SMs at one row each: a 16-byte vector per thread, more warps per row
    assert cfg.block_m == 1 and cfg.num_warps == rowwise._warps_for(2048, 2, rowwise.DECODE_BYTES_PER_THREAD) == 8
    assert row_options(1280, 7, 2).num_warps == 8 and row_options(5120, 1, 2).num_warps == 16  # rms_norm #28, #47
    wide = row_options(2048, 264, 2)  # every SM has a program: bandwidth-bound, 32 B per thread
    assert (wide.block_m, wide.num_warps) == (2, rowwise._warps_for(2 * 2048, 2))
    assert row_options(2048, 100_000, 2).block_m == 2                      # prefill: rows still packed
    # the GLU: 183 rows of d = 1024 were 46 programs of 4 rows; now one row per program
    monkeypatch.setattr(tuning, "lookup", lambda *a, **k: None)
    assert glu_options(183, 1024).block_m == 1 and glu_options(100_000, 1024).block_m == 8


def test_glu_candidates_include_a_dividing_column_block():
    widths = {c["block_n"] for c in tuner.candidates("glu", 1536, 2, rows=10_000)}
    assert 512 in widths and 1024 in widths  # 512 divides 1536: no half-masked column block
    assert {c["block_n"] for c in tuner.candidates("glu", 768, 2, rows=10_000)} >= {256}
    with pytest.raises(ValueError, match="family"):
        tuner.candidates("nope", 128, 2, rows=1)


def test_lookup_precedence_override_table_first_principles(fake_gpu):
    assert tuning.lookup("rms_norm", 4096, family="row") is None
    assert tuning.source() == "first principles"
    _write(fake_gpu, {"rms_norm": {"4096": {"config": {"block_m": 2, "block_n": 4096, "num_warps": 4,
                                                       "chunked": False}, "speedup": 1.2}}})
    tuning.reload()
    assert tuning.source() == str(fake_gpu)
    assert tuning.lookup("rms_norm", 4096, family="row")["num_warps"] == 4
    with tuning.overriding("rms_norm", 4096, {"block_m": 1, "block_n": 4096, "num_warps": 16, "chunked": False}):
        assert tuning.lookup("rms_norm", 4096, family="row")["num_warps"] == 16
        with tuning.first_principles():  # an explicit override still wins (that is how candidates run)
            assert tuning.lookup("rms_norm", 4096, family="row")["num_warps"] == 16
    with tuning.first_principles():
        assert tuning.lookup("rms_norm", 4096, family="row") is None
    assert tuning.lookup("rms_norm", 4096, family="row")["num_warps"] == 4
    with pytest.raises(ValueError, match="family"):
        tuning.lookup("rms_norm", 4096, family="bogus")


def test_disabled_by_environment(fake_gpu, monkeypatch):
    _write(fake_gpu, {"rms_norm": {"4096": {"config": {"block_m": 2, "block_n": 4096, "num_warps": 4}}}})
    monkeypatch.setenv("SOLBENCH_TUNED", "0")
    tuning.reload()
    assert tuning.lookup("rms_norm", 4096, family="row") is None
    assert "SOLBENCH_TUNED=0" in tuning.source()


def test_a_chosen_table_replaces_the_device_tables(fake_gpu, tmp_path, monkeypatch):
    _write(fake_gpu, {"rms_norm": {"4096": {"config": {"block_m": 2, "block_n": 4096, "num_warps": 4}}}})
    chosen = tmp_path / "variant.json"
    _write(chosen, {"rms_norm": {"2048": {"config": {"block_m": 1, "block_n": 2048, "num_warps": 8}}}})
    monkeypatch.setenv("SOLBENCH_TUNED_TABLE", str(chosen))
    tuning.reload()
    assert tuning.source() == str(chosen)
    assert tuning.lookup("rms_norm", 4096, family="row") is None  # the user table is not consulted
    assert tuning.lookup("rms_norm", 2048, family="row")["num_warps"] == 8
    monkeypatch.setenv("SOLBENCH_TUNED_TABLE", str(tmp_path / "missing.json"))
    tuning.reload()
    with pytest.raises(FileNotFoundError, match="SOLBENCH_TUNED_TABLE"):
        tuning.lookup("rms_norm", 4096, family="row")
    monkeypatch.setenv("SOLBENCH_TUNED_TABLE", "")  # empty: the device's own tables, as unset
    tuning.reload()
    assert tuning.lookup("rms_norm", 4096, family="row")["num_warps"] == 4


def test_table_variant_sets_and_drops_entries(tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "table_variant.py"
    spec = importlib.util.spec_from_file_location("table_variant", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    base = tmp_path / "base.json"
    _write(base, {"rms_norm": {"4096": {"config": {"block_m": 2}}}, "glu": {"1024": {"config": {"block_m": 1}}}})
    out = tmp_path / "out.json"
    assert mod.main(["--base", str(base), "--set", 'rms_norm:1152={"block_m": 2, "num_warps": 4}',
                     "--drop", "glu:1024", "--out", str(out)]) == 0
    entries = tuning.read_table(out)["entries"]
    assert entries["rms_norm"]["1152"]["config"] == {"block_m": 2, "num_warps": 4}
    assert entries["rms_norm"]["4096"]["config"] == {"block_m": 2} and "glu" not in entries
    assert tuning.read_table(base)["entries"]["glu"]  # the base is untouched
    for bad in (["--drop", "glu:2048"], ["--set", "rms_norm=1"], ["--set", "rms_norm:1152={oops"], []):
        with pytest.raises(SystemExit):
            mod.main(["--base", str(base), *bad, "--out", str(tmp_path / "bad.json")])


def test_row_config_uses_the_table_and_caps_rows(fake_gpu):
    untuned = row_options(4096, 10_000, 2, kernel="rms_norm")
    _write(fake_gpu, {"rms_norm": {"4096": {"config": {"block_m": 4, "block_n": 4096, "num_warps": 16,
                                                       "chunked": False}}}})
    tuning.reload()
    assert row_options(4096, 10_000, 2, kernel="rms_norm") == RowOptions(4, 4096, 16, False)
    assert row_options(4096, 1, 2, kernel="rms_norm").block_m == 1   # decode: one row, one program
    assert row_options(4096, 10_000, 2, kernel="l2_norm") == untuned  # other kernels unaffected
    # options given by the caller still win
    assert row_options(4096, 10_000, 2, kernel="rms_norm", options=RowOptions(1, 4096, 2)).num_warps == 2


def test_glu_config_uses_the_table(fake_gpu):
    _write(fake_gpu, {"glu": {"1536": {"config": {"block_m": 16, "block_n": 512, "num_warps": 8}}}})
    tuning.reload()
    assert astuple(glu_options(10_000, 1536)) == (16, 512, 8)
    assert astuple(glu_options(3, 1536)) == (4, 512, 8)
    assert astuple(glu_options(10_000, 2048)) != (16, 512, 8)


def test_gelu_tiles_are_their_own_key_and_divide_d_by_default(fake_gpu):
    # The erf GELU is near the issue limit: its first-principles column block divides d (768 ->
    # 256, 1536 -> 512) and it never borrows the memory-bound modes' tuned tiles.
    from solbench.kernels.glu import ACT_GELU_ERF, KERNEL_ERF

    with tuning.recording() as seen:
        assert glu_options(10_000, 768, act=ACT_GELU_ERF).block_n == 256
        assert glu_options(10_000, 1536, act=ACT_GELU_ERF).block_n == 512
        assert glu_options(10_000, 1536).block_n == 1024  # silu: unchanged rule
        assert glu_options(10_000, 1000, act=ACT_GELU_ERF).block_n == 1024  # no power-of-two divisor >= 128
    assert (KERNEL_ERF, 768, "glu", 2) in seen and ("glu", 1536, "glu", 2) in seen
    with tuning.overriding("glu", 1536, {"block_m": 2, "block_n": 2048, "num_warps": 8}):
        assert glu_options(10_000, 1536, act=ACT_GELU_ERF).block_n == 512


def test_tune_keeps_the_entries_it_did_not_measure():
    from solbench.tune import KeyResult, keep_unmeasured

    current = {"glu": {"1536": {"config": {"block_m": 2}}, "768": {"config": {"block_m": 4}}},
               "rms_norm": {"4096": {"config": {"block_m": 1}}}}
    measured_not_adopted = KeyResult("glu", 768, "glu", [], {}, measurements=[{"config": None}])
    budget_cut = KeyResult("rms_norm", 4096, "row", [], {}, note="not tuned: time budget reached")
    entries = {"glu_erf": {"768": {"config": {"block_m": 8}}}}
    kept = keep_unmeasured(entries, [measured_not_adopted, budget_cut], current, "packaged.json")
    assert kept == 2
    assert entries["glu"] == {"1536": {"config": {"block_m": 2}, "kept_from": "packaged.json"}}
    assert entries["rms_norm"]["4096"]["kept_from"] == "packaged.json"
    assert entries["glu_erf"] == {"768": {"config": {"block_m": 8}}}


def test_tune_writes_no_machine_path_into_a_table(tmp_path):
    from solbench.tune import KeyResult, keep_unmeasured

    packaged = tuning.packaged_table_path("NVIDIA_H200")
    assert tuning.portable_source(str(packaged)) == "solbench/runtime/tuned/NVIDIA_H200.json"
    assert tuning.portable_source(str(tmp_path / "cache" / "tuned" / "Fake_GPU.json")) == "Fake_GPU.json"
    assert tuning.portable_source("first principles (SOLBENCH_TUNED=0)") == "first principles (SOLBENCH_TUNED=0)"
    current = {"glu": {"1536": {"config": {"block_m": 2}}},
               "rms_norm": {"4096": {"config": {"block_m": 1}, "kept_from": str(tmp_path / "older.json")}}}
    entries: dict = {}
    keep_unmeasured(entries, [KeyResult("glu", 768, "glu", [], {})], current, str(packaged))
    assert entries["glu"]["1536"]["kept_from"] == "solbench/runtime/tuned/NVIDIA_H200.json"
    assert entries["rms_norm"]["4096"]["kept_from"] == "older.json"


def test_shipped_tables_name_no_machine_path():
    def strings(v):
        if isinstance(v, dict):
            for x in v.values():
                yield from strings(x)
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)
        elif isinstance(v, str):
            yield v

    tables = sorted(tuning.packaged_dir().glob("*.json"))
    assert tables
    for path in tables:
        absolute = [s for s in strings(json.loads(path.read_text())) if s.startswith(("/", "~")) or s[1:3] == ":\\"]
        assert not absolute, (path.name, absolute[:3])


def test_a_budgeted_tune_is_continued_from_its_log(tmp_path):
    from solbench.tune import KeyResult, measured_keys, write_log

    log = tmp_path / "tune_log.jsonl"
    write_log([KeyResult("glu", 768, "glu", ["silu_and_mul#0"], {}, measurements=[{"config": None}]),
               KeyResult("rms_norm", 4096, "row", [], {}, note="not tuned: time budget reached"),
               KeyResult("rms_norm", 128, "row", [], {}, note="skipped: measured by an earlier run")], log)
    # only the key it measured is skipped next time; the budget-cut and skipped ones are tuned
    assert measured_keys(log) == {("glu", "768")}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        measured_keys(tmp_path / "missing.jsonl")


def test_few_rows_row_candidates_go_down_to_8_bytes_per_thread():
    def warps(few):
        return {c["num_warps"] for c in tuner.candidates("row", 512, 2, rows=3, few_rows=few) if c["block_m"] == 1}
    assert warps(True) == {1, 2, 4} and warps(False) == {1, 2}  # 4 warps x 32 threads x 8 B = one 512-wide bf16 row


def test_tune_keys_select_by_kernel_or_kernel_and_width():
    from solbench.tune import key_selected

    assert key_selected("rms_norm@few_rows", 1280, ["*@few_rows"])
    assert not key_selected("rms_norm", 1280, ["*@few_rows"])
    assert key_selected("rms_norm", 1280, ["glu", "rms_norm:1280"])
    assert not key_selected("rms_norm", 128, ["rms_norm:1280"])


def test_few_rows_glu_candidates_include_short_threads():
    from solbench.tune import candidates

    few = candidates("glu", 1024, 2, rows=183, few_rows=True)
    # gelu #10 on the H200: 183 rows of 1024 outputs; 8 warps of 4 outputs per thread is a candidate
    assert {"block_m": 1, "block_n": 1024, "num_warps": 8} in few
    assert all(c["block_m"] * c["block_n"] * 2 // (32 * c["num_warps"]) >= 8 for c in few)  # >= 8 B a thread
    assert {"block_m": 1, "block_n": 1024, "num_warps": 8} not in candidates("glu", 1024, 2, rows=100_000)


def test_recording_collects_keys():
    with tuning.recording() as seen:
        row_options(2048, 64, 2, kernel="fused_add_rms_norm")
        row_options(2048, 64, 2)  # an anonymous kernel has no table key
    assert seen == {("fused_add_rms_norm", 2048, "row", 2)}


@pytest.mark.parametrize("bad", [
    "not json", json.dumps({"version": 99, "entries": {}}),
    json.dumps({"version": tuning.TABLE_VERSION, "entries": {"k": {"x": {"config": {}}}}}),
    json.dumps({"version": tuning.TABLE_VERSION, "entries": {"k": {"128": {"block_m": 1}}}}),
])
def test_malformed_tables_are_errors_that_name_the_file(tmp_path, bad):
    p = tmp_path / "t.json"
    p.write_text(bad)
    with pytest.raises(ValueError, match="t.json"):
        tuning.read_table(p)


def test_packaged_tables_are_valid():
    for p in tuning.packaged_dir().glob("*.json"):
        table = tuning.read_table(p)
        for kernel, by_n in table["entries"].items():
            for n, entry in by_n.items():
                cfg = entry["config"]
                if "backend" in cfg:  # a backend choice (tune --backends-from): both sides measured
                    assert set(cfg) == {"backend"} and cfg["backend"] in ("triton", "cuda"), (p, kernel, n)
                    assert cfg["backend"] == "triton" or entry["cuda_speedup"] > 1.0, (p, kernel, n)
                    assert len(entry["times_us"]["cuda"]) == len(entry["times_us"]["triton"]) == len(entry["shapes"])
                    continue
                if tuning.base_kernel(kernel) not in ("glu", "glu_erf"):
                    RowOptions(**cfg)
                assert entry["speedup"] > 1.0, (p, kernel, n)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU refusal")
def test_tune_needs_a_gpu(capsys):
    from solbench.cli import main

    assert main(["tune"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().out


def test_exported_glu_candidate_carries_the_packaged_tiles(monkeypatch):
    """examples/candidates/silu_and_mul_ours_triton.py is our kernel exported standalone: its copy
    of the tuned GLU tiles must be the packaged tables' and its launch rule ours, shape for shape
    (else eval would not reproduce run)."""
    import importlib.util
    from pathlib import Path

    pytest.importorskip("triton")
    path = Path(__file__).resolve().parents[1] / "examples" / "candidates" / "silu_and_mul_ours_triton.py"
    spec = importlib.util.spec_from_file_location("exported_candidate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)

    def tiles(entries):
        return {int(d): (e["config"]["block_m"], e["config"]["block_n"], e["config"]["num_warps"])
                for d, e in entries.items()}

    regular, few = {}, {}
    for p in tuning.packaged_dir().glob("*.json"):
        table = tuning.read_table(p)
        regular[table["device"]] = tiles(table["entries"].get("glu", {}))
        few[table["device"]] = tiles(table["entries"].get("glu" + tuning.FEW_ROWS_SUFFIX, {}))
        # the export knows the few-rows tier only: a many-rows GLU entry would need it there too
        assert not table["entries"].get("glu" + tuning.MANY_ROWS_SUFFIX), p
    assert mod.TUNED_TILES == {k: v for k, v in regular.items() if v}
    assert mod.FEW_ROWS_TILES == {k: v for k, v in few.items() if v}
    assert mod.FEW_ROWS_PER_SM == tuning.FEW_ROWS_PER_SM
    # The same launch as ours on an H200 (its packaged table, 132 SMs), decode to prefill, and on
    # a device without a table.
    h200 = tuning.read_table(tuning.packaged_table_path("NVIDIA_H200"))["entries"]
    for gpu, entries in (("NVIDIA H200", h200), ("Other GPU", {})):
        monkeypatch.setattr(tuning, "active_table", lambda entries=entries: ("test", entries))
        monkeypatch.setattr(tuning, "sm_count", lambda: 132)
        for rows in (1, 7, 128, 183, 527, 528, 4096, 100_000):
            for d in (256, 768, 1024, 1536, 2048, 2560, 4096, 7168):
                assert mod.launch_config(rows, d, gpu, 132) == astuple(glu_options(rows, d)), (gpu, rows, d)


@pytest.fixture
def few_rows_below_528(monkeypatch):
    """A device with 132 SMs: launches of fewer than 4 x 132 rows are "few rows"."""
    import functools

    monkeypatch.setattr(tuning, "few_rows_limit", functools.lru_cache(maxsize=1)(lambda: 528))


def test_few_rows_launches_prefer_their_own_entry_then_the_regular_one(fake_gpu, few_rows_below_528):
    _write(fake_gpu, {"rms_norm": {"2048": {"config": {"block_m": 2, "block_n": 2048, "num_warps": 4}}},
                      "rms_norm@few_rows": {"2048": {"config": {"block_m": 1, "block_n": 2048, "num_warps": 8}}}})
    tuning.reload()
    with tuning.recording() as seen:
        assert row_options(2048, 100, 2, kernel="rms_norm").num_warps == 8      # few rows: its entry
        assert row_options(2048, 10_000, 2, kernel="rms_norm").num_warps == 4   # many rows: the regular one
        assert row_options(1024, 100, 2, kernel="rms_norm").block_m == 4        # no entry: first principles
    assert seen == {("rms_norm@few_rows", 2048, "row", 2), ("rms_norm", 2048, "row", 2),
                    ("rms_norm@few_rows", 1024, "row", 2)}
    _write(fake_gpu, {"rms_norm": {"2048": {"config": {"block_m": 2, "block_n": 2048, "num_warps": 4}}}})
    tuning.reload()
    assert row_options(2048, 100, 2, kernel="rms_norm").num_warps == 4  # falls back to the regular entry
    assert tuning.key_for("glu", None) == "glu" and tuning.base_kernel("glu@few_rows") == "glu"


def test_many_rows_launches_prefer_their_own_entry_then_the_regular_one(fake_gpu, monkeypatch):
    # 132 SMs: from 24 x 132 = 3168 rows a launch looks up kernel@many_rows first (the split one-warp
    # layer_norm tile of the H200 table), below that the regular entry, below 528 the few-rows one.
    import functools

    monkeypatch.setattr(tuning, "sm_count", functools.lru_cache(maxsize=1)(lambda: 132))
    assert tuning.many_rows_limit() == tuning.MANY_ROWS_PER_SM * 132 == 3168
    assert [tuning.key_for("layer_norm", r) for r in (527, 528, 3167, 3168)] == [
        "layer_norm@few_rows", "layer_norm", "layer_norm", "layer_norm@many_rows"]
    assert tuning.base_kernel("glu@many_rows") == "glu" and tuning.is_tier_key("glu@many_rows")
    assert not tuning.is_tier_key("glu")
    _write(fake_gpu, {"layer_norm": {"1152": {"config": {"block_m": 2, "block_n": 2048, "num_warps": 4}}},
                      "layer_norm@many_rows": {"1152": {"config": {"block_m": 1, "block_n": 2048, "num_warps": 1,
                                                                   "split": True}}}})
    tuning.reload()  # clears the (patched) sm_count's cache, which still answers 132
    with tuning.recording() as seen:
        many = row_options(1152, 40_000, 2, kernel="layer_norm", persistent_ok=True)
        regular = row_options(1152, 3_000, 2, kernel="layer_norm", persistent_ok=True)
        fallback = row_options(1024, 40_000, 2, kernel="layer_norm", persistent_ok=True)
    assert (many.num_warps, many.split, many.block_m) == (1, True, 1)
    assert (regular.num_warps, regular.split, regular.block_m) == (4, False, 2)
    assert fallback == row_options(1024, 40_000, 2)  # no entry for either key: first principles
    assert ("layer_norm@many_rows", 1152, "row_persistent", 2) in seen
    assert ("layer_norm", 1152, "row_persistent", 2) in seen


def test_a_many_rows_key_is_tuned_after_and_against_its_regular_entry():
    from solbench.tune import baseline_config, regular_keys_first

    current = {"layer_norm": {"1152": {"config": {"block_m": 2, "block_n": 2048, "num_warps": 4}}}}
    assert baseline_config("layer_norm@many_rows", 1152, current) == current["layer_norm"]["1152"]["config"]
    order = [(("layer_norm@many_rows", 1152, "row_persistent", 2), []), (("layer_norm", 1152, "row_persistent", 2), [])]
    assert [k[0] for k, _ in regular_keys_first(order)] == ["layer_norm", "layer_norm@many_rows"]


def test_few_rows_keys_are_tuned_on_the_smallest_and_largest_shapes():
    from types import SimpleNamespace as NS

    from solbench.tune import representatives

    entries = [(None, None, NS(id=i), NS(total_bytes=b)) for i, b in enumerate((1e4, 2e6, 3e7, 4e8))]
    assert [e[2].id for e in representatives(entries, few_rows=True)] == [0, 3]
    # the smallest, the nearest to 32 MB, the largest
    assert [e[2].id for e in representatives(entries)] == [0, 2, 3]
    assert [e[2].id for e in representatives(entries[2:])] == [2, 3]  # no repeats


def test_few_rows_keys_follow_their_regular_key_and_its_new_entry():
    from solbench.tune import KeyResult, regular_keys_first, table_so_far

    order = [(("rms_norm@few_rows", 1152, "row_persistent", 2), []), (("glu", 1024, "glu", 2), []),
             (("rms_norm", 1152, "row_persistent", 2), []), (("rms_norm@few_rows", 2048, "row_persistent", 2), [])]
    assert [(k[0], k[1]) for k, _ in regular_keys_first(order)] == [
        ("glu", 1024), ("rms_norm", 1152), ("rms_norm@few_rows", 1152), ("rms_norm@few_rows", 2048)]
    current = {"rms_norm": {"1152": {"config": {"block_m": 1}}, "1024": {"config": {"block_m": 4}}}}
    new = {"rms_norm": {"1152": {"config": {"block_m": 2}}}}
    measured = [KeyResult("rms_norm", 1152, "row_persistent", [], {}, measurements=[{}]),
                KeyResult("rms_norm", 1024, "row_persistent", [], {}, measurements=[{}])]
    table = table_so_far(current, new, measured)
    assert table["rms_norm"] == {"1152": {"config": {"block_m": 2}}}  # 1024 measured, not adopted: gone
    assert table_so_far(current, {}, [])["rms_norm"]["1024"] == {"config": {"block_m": 4}}


def test_a_few_rows_key_must_beat_the_entry_those_shapes_use_today():
    from solbench.tune import baseline_config

    current = {"rms_norm": {"2048": {"config": {"block_m": 2, "block_n": 2048, "num_warps": 4}}}}
    assert baseline_config("rms_norm@few_rows", 2048, current) == {"block_m": 2, "block_n": 2048, "num_warps": 4}
    assert baseline_config("rms_norm@few_rows", 4096, current) is None   # no regular entry: first principles
    assert baseline_config("rms_norm", 2048, current) is None             # regular keys: first principles


def test_tune_makes_a_representatives_input_sets_once(monkeypatch):
    # solbench tune times dozens of configurations per shape; a decode shape rotates thousands of
    # input sets, so they are made once per key (runner.time_impl's sets_cache), not per candidate.
    import torch

    from solbench.core.spec import get_spec, impls_for
    from solbench.runner import RunConfig, time_impl

    spec = get_spec("rms_norm")
    impl = impls_for("rms_norm")["torch_eager"]
    shape = spec.smoke_shapes()[0]
    made = []
    real = spec.make_inputs
    monkeypatch.setattr(spec, "make_inputs", lambda *a, **k: made.append(1) or real(*a, **k))
    cache: dict = {}
    device = torch.device("cpu")
    for _ in range(3):
        status, reason, facts = time_impl(spec, impl, shape, device, RunConfig(), spec.cost(shape), cache)
        assert status == "ok", reason
    assert len(made) == 2 and len(cache) == 1  # two CPU sets, made for the first timing only
    time_impl(spec, impl, shape, device, RunConfig(), spec.cost(shape))
    assert len(made) == 4  # without a cache: made again


# ---- the GEMM families: block_scaled_mm per (N, K, M bucket), fused_moe per layer and rows bucket ----

def test_block_fp8_table_entries_apply_per_n_k_and_m_bucket():
    from dataclasses import asdict

    import torch

    from solbench.kernels.gemm import block_fp8

    key, bucket = block_fp8.tuned_key(2048, 2048, 128, torch.bfloat16), block_fp8.m_bucket(4533)
    assert key == "block_fp8_mm:2048x2048:g128:bf16" and bucket == 8192
    first = block_fp8.tuned_options(4533, 2048, 2048, 128, torch.bfloat16, 132)
    assert first == block_fp8.default_options(4533, 2048, 2048, 128, torch.bfloat16, 132)
    cfg = dict(asdict(first), block_m=64, num_warps=4, programs_per_sm=2, flatten=False)
    with tuning.overriding(key, bucket, cfg):
        assert block_fp8.tuned_options(4533, 2048, 2048, 128, torch.bfloat16, 132) == block_fp8.BlockFp8Options(**cfg)
        # another M bucket and another output dtype are other keys
        for m, dtype in ((349, torch.bfloat16), (4533, torch.float32)):
            assert block_fp8.tuned_options(m, 2048, 2048, 128, dtype, 132) == \
                block_fp8.default_options(m, 2048, 2048, 128, dtype, 132)


def test_block_fp8_family_candidates_are_valid_options_and_tune_finds_the_key(monkeypatch):
    import torch

    from solbench.core import fp8_blocks
    from solbench.kernels.gemm import block_fp8, block_scaled_mm

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    g = torch.Generator().manual_seed(0)
    a, sa = fp8_blocks.random_blocks((5, 256), (1, 128), "cpu", g)
    b, sb = fp8_blocks.random_blocks((64, 256), (128, 128), "cpu", g, scale=256 ** -0.5)
    with tuning.recording() as seen:
        block_scaled_mm(a, b, sa, sb, out_dtype=torch.bfloat16)
    key = block_fp8.tuned_key(64, 256, 128, torch.bfloat16)
    assert (key, block_fp8.m_bucket(5), key, 1) in seen
    cands = tuner.candidates(key, 16, 1, rows=5)
    assert cands and all(block_fp8.BlockFp8Options(**c).split_k == 1 for c in cands)  # bf16 out: no split-K
    assert json.loads(json.dumps(cands)) == cands  # a table holds them as they are


def test_moe_table_entries_apply_on_the_sorted_path_only():
    from solbench.kernels.moe import fused

    key = fused.tuned_key(128, 2048, 768, 8, False)
    bucket = fused.rows_bucket(15809, 8, 128)
    assert key == "fused_moe:bf16:E128:H2048:I768:k8" and bucket == 1024
    base = fused.tuned_options(15809, 128, 2048, 768, 8, False, 132)
    assert base == fused.default_options(15809, 128, 2048, 768, 8, False, 132)
    cand = fused.tune_candidates(bucket, 128, 2048, 768, 8, False, 132)
    assert base not in cand and len(set(cand)) == len(cand) >= 6
    assert any(c.gemm1.persistent for c in cand) and any(c.gemm1.gate_up_tile for c in cand)
    with tuning.overriding(key, bucket, fused.options_config(cand[0])):
        assert fused.tuned_options(15809, 128, 2048, 768, 8, False, 132) == cand[0]
        assert fused.tuned_options(3, 128, 2048, 768, 8, False, 132).direct  # decode never looks up
    for fp8 in (False, True):
        for b in (1, 16, 256, 4096):
            for c in fused.tune_candidates(b, 128, 2048, 768, 8, fp8):
                assert fused.options_of_config(json.loads(json.dumps(fused.options_config(c)))) == c


def test_a_moe_table_entry_runs_and_is_recorded(monkeypatch):
    import torch

    from solbench.kernels.moe import fused, fused_moe
    from solbench.kernels.moe.routing import topk_gating_softmax

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    g = torch.Generator().manual_seed(3)
    t, h, i, e, k = 21, 64, 48, 16, 4
    x = torch.randn(t, h, generator=g).to(torch.bfloat16)
    w1 = (torch.randn(e, 2 * i, h, generator=g) * h ** -0.5).to(torch.bfloat16)
    w2 = (torch.randn(e, h, i, generator=g) * i ** -0.5).to(torch.bfloat16)
    tw, ti = topk_gating_softmax(torch.randn(t, e, generator=g), k, renormalize=True)
    want = fused_moe(x, w1, w2, tw, ti)
    key, bucket = fused.tuned_key(e, h, i, k, False), fused.rows_bucket(t, k, e)
    cfg = {"gemm1": {"block_m": 16, "block_n": 32, "block_k": 32, "group_m": 1, "num_warps": 4, "num_stages": 2,
                     "gate_up_tile": 1, "persistent": 1},
           "gemm2": {"block_m": 16, "block_n": 32, "block_k": 32, "group_m": 1, "num_warps": 4, "num_stages": 2,
                     "gate_up_tile": 0, "persistent": 0}, "combine": "atomic"}
    with tuning.recording() as seen, tuning.overriding(key, bucket, cfg):
        got = fused_moe(x, w1, w2, tw, ti)
    assert (key, bucket, key, 2) in seen
    torch.testing.assert_close(got, want, rtol=3e-2, atol=1.5e-2)


def test_compute_bound_shapes_are_tuned_up_to_a_flop_cap():
    from solbench.core.spec import Cost

    def cost(flops, nbytes, path="bf16_tc"):
        return Cost(flops={path: flops}, bytes_read=nbytes, bytes_written=0.0)

    assert not tuner.too_big_to_tune(cost(1.19e12, 1.4e9))   # fused_moe #12: compute-bound, 1.4 GB
    assert not tuner.too_big_to_tune(cost(2.68e12, 11.4e9, "fp8_e4m3_tc"))  # fp8 MoE #1: ~3.8 ms of bytes
    assert tuner.too_big_to_tune(cost(4.0e12, 0.5e9))        # a bf16 GEMM of ~5.7 ms
    assert tuner.too_big_to_tune(cost(1e9, 1.3e9))           # memory-bound past 1.2 GB
    assert not tuner.too_big_to_tune(cost(0.0, 1.0e9))


def test_a_stale_table_entry_warns_and_falls_back(recwarn):
    import torch

    from solbench.kernels.gemm import block_fp8

    key = block_fp8.tuned_key(2048, 2048, 128, torch.bfloat16)
    with tuning.overriding(key, 8192, {"block_m": 64, "retired_field": 1}):
        opt = block_fp8.tuned_options(4533, 2048, 2048, 128, torch.bfloat16, 132)
    assert opt == block_fp8.default_options(4533, 2048, 2048, 128, torch.bfloat16, 132)
    assert any("is not a valid config" in str(w.message) and key in str(w.message) for w in recwarn)


def test_attention_prefill_tiles_come_from_the_table_per_head_size_group_and_mask(monkeypatch):
    from dataclasses import asdict

    from solbench.kernels import attention as attn

    monkeypatch.delenv("SOLBENCH_ATTENTION_TILES", raising=False)
    key = attn.tuned_key(128, 8, True)
    assert key == "attention:d128:g8:causal"
    default = attn.default_config(128, 6294 * 8, True)
    assert attn.launch_config(128, 6294 * 8, True, 8, True) == default
    tile = attn.AttentionConfig(64, 128, 4, 2)
    with tuning.recording() as seen, tuning.overriding(key, 65536, asdict(tile)):
        assert attn.launch_config(128, 6294 * 8, True, 8, True) == tile
        # another group, the full mask, a decode row count and the CPU are other launches
        assert attn.launch_config(128, 6294 * 8, True, 4, True) == default
        assert attn.launch_config(128, 6294 * 8, True, 8, False) == default
        assert attn.launch_config(128, 8, True, 8, True) == attn.default_config(128, 8, True)
        assert attn.launch_config(128, 6294 * 8, False, 8, True) == attn.default_config(128, 6294 * 8, False)
        monkeypatch.setenv("SOLBENCH_ATTENTION_TILES", "128,64,8,2")  # an A/B's tiles win
        assert attn.launch_config(128, 6294 * 8, True, 8, True) == attn.AttentionConfig(128, 64, 8, 2)
    assert (key, 65536, key, 2) in seen
    monkeypatch.delenv("SOLBENCH_ATTENTION_TILES")
    for d, rows in ((128, 4096), (80, 40960), (256, 8192)):
        attn.launch_config(d, rows, True, 1, False)  # a key's family is registered by its first look-up
        cands = tuner.candidates(attn.tuned_key(d, 1, False), rows, 2, rows=rows)
        assert cands and asdict(attn.default_config(d, rows, True)) not in cands
        assert all(attn.AttentionConfig(**c).block_n <= (128 if d <= 128 else 64) for c in cands)
