"""The GLU's backend choice (issue 28): ``solbench.glu(..., backend=)``, the tuned table's
per-bucket entries, and ``solbench tune --backends-from`` writing them from a run of both."""
import json

import pytest
import torch

import solbench
from solbench import tune as tuner
from solbench.kernels import glu as glu_mod
from solbench.kernels.activation import get_activation, reference_glu
from solbench.runtime import tuning

H100 = "NVIDIA H100 80GB HBM3"


def _record(op, shape_id, impl, rows, width, time_us, device=H100, status="ok"):
    return {"op": op, "shape_id": shape_id, "impl": impl, "device": device, "status": status, "smoke": False,
            "time_us": time_us, "params": {"shape": [rows, width]}}


def _pair(op, shape_id, rows, width, triton_us, cuda_us, **kw):
    return [_record(op, shape_id, "ours_triton", rows, width, triton_us, **kw),
            _record(op, shape_id, "ours_cuda", rows, width, cuda_us, **kw)]


def test_explicit_backends_agree_and_bad_names_are_refused(device):
    x = torch.randn(5, 2 * 40, device=device, dtype=torch.bfloat16)
    ref = reference_glu(x, get_activation("silu"))
    for backend in ("auto", "triton", "cuda"):  # off CUDA, "cuda" is the torch formulation of the same math
        torch.testing.assert_close(solbench.glu(x, "silu", backend=backend).float(), ref.float(),
                                   atol=1.6e-2, rtol=1.6e-2)
    with pytest.raises(ValueError, match="auto, triton, cuda"):
        solbench.glu(x, "silu", backend="cutlass")


def test_auto_takes_the_tables_choice_only_on_cuda_and_only_with_nvrtc(monkeypatch):
    act = glu_mod.ACT_GELU_ERF
    assert glu_mod.glu_backend(8, 4096, act, torch.device("cpu")) == "triton"
    assert glu_mod.glu_backend(8, 4096, act, torch.device("cuda")) == "triton"  # no entry: Triton
    with tuning.overriding(glu_mod.BACKEND_KERNEL_ERF, 4096, {"backend": "cuda"}):
        monkeypatch.setattr(glu_mod, "cuda_backend_ready", lambda: True)
        assert glu_mod.glu_backend(8, 4096, act, torch.device("cuda")) == "cuda"
        assert glu_mod.glu_backend(8, 2048, act, torch.device("cuda")) == "triton"  # another bucket
        assert glu_mod.glu_backend(8, 4096, 0, torch.device("cuda")) == "triton"    # silu's key is apart
        assert glu_mod.glu_backend(0, 4096, act, torch.device("cuda")) == "triton"  # 0 rows launch nothing
        monkeypatch.setattr(glu_mod, "cuda_backend_ready", lambda: False)  # no NVRTC here
        assert glu_mod.glu_backend(8, 4096, act, torch.device("cuda")) == "triton"


def test_buckets_follow_the_tier_and_the_gain_rule():
    sms = 132  # few rows below 528, many from 3168
    records = (_pair("silu_and_mul", 0, 1, 2 * 1024, 2.0, 1.6)          # few rows, d 1024: CUDA 1.25x
               + _pair("gelu_tanh_and_mul", 0, 1, 2 * 1024, 2.0, 1.7)
               + _pair("silu_and_mul", 1, 8192, 2 * 4096, 100.0, 99.0)  # many rows: 1% is under the bar
               + _pair("silu_and_mul", 2, 1000, 2 * 2048, 10.0, 8.0)    # regular: one shape 1.25x faster...
               + _pair("silu_and_mul", 3, 2000, 2 * 2048, 10.0, 11.0)   # ...and one 10% slower: kept
               + _pair("gelu_and_mul", 0, 1, 2 * 1024, 3.0, 2.0)        # the erf GELU has its own key
               + [_record("silu_and_mul", 4, "ours_triton", 1, 2 * 512, 2.0)]        # one side only
               + _pair("silu_and_mul", 5, 1, 2 * 768, 2.0, 1.0, status="fail"))      # failed: not counted
    got = {(b.kernel, b.n): b for b in tuner.backend_buckets(records, sms)}
    assert set(got) == {("glu_backend@few_rows", 1024), ("glu_backend@many_rows", 4096), ("glu_backend", 2048),
                        ("glu_erf_backend@few_rows", 1024)}
    few = got[("glu_backend@few_rows", 1024)]
    assert few.adopted and few.shapes == ["silu_and_mul#0", "gelu_tanh_and_mul#0"]
    assert few.speedup == pytest.approx((1.25 * 2.0 / 1.7) ** 0.5, rel=1e-3)
    assert not got[("glu_backend@many_rows", 4096)].adopted and "under the 3% bar" in got[("glu_backend@many_rows", 4096)].note
    regular = got[("glu_backend", 2048)]
    assert not regular.adopted and "1.100x slower" in regular.note
    assert got[("glu_erf_backend@few_rows", 1024)].adopted


def test_records_of_two_devices_are_refused():
    records = _pair("silu_and_mul", 0, 1, 2048, 2.0, 1.0) + _pair("silu_and_mul", 1, 1, 2048, 2.0, 1.0, device="H200")
    with pytest.raises(ValueError, match="several devices"):
        tuner.backend_buckets(records, 132)


def test_merge_replaces_backend_entries_and_keeps_the_rest():
    old = {"version": tuning.TABLE_VERSION, "device": H100, "entries": {
        "glu": {"4096": {"config": {"block_m": 2, "block_n": 1024, "num_warps": 4}}},
        "glu_backend@few_rows": {"512": {"config": {"backend": "cuda"}}}}}
    buckets = tuner.backend_buckets(_pair("silu_and_mul", 0, 1, 2048, 2.0, 1.0)
                                    + _pair("silu_and_mul", 1, 100000, 2048, 2.0, 2.0), 132)
    table = tuner.merge_backend_entries(old, buckets, H100, "run.jsonl")
    entries = table["entries"]
    assert entries["glu"] == old["entries"]["glu"]                       # tiles untouched
    assert "512" not in entries["glu_backend@few_rows"]                   # the old choice is replaced
    assert entries["glu_backend@few_rows"]["1024"]["config"] == {"backend": "cuda"}
    assert entries["glu_backend@many_rows"]["1024"]["config"] == {"backend": "triton"}  # written, not left to fall back
    with pytest.raises(ValueError, match="H200"):
        tuner.merge_backend_entries({**old, "device": "NVIDIA H200"}, buckets, H100, "run.jsonl")


def test_cli_writes_the_table_and_explains_bad_input(tmp_path, monkeypatch):
    from solbench.cli import main

    monkeypatch.setenv("SOLBENCH_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run.jsonl"
    run.write_text("\n".join(json.dumps(r) for r in _pair("silu_and_mul", 0, 1, 2048, 2.0, 1.0)) + "\n")
    out = tmp_path / "table.json"
    assert main(["tune", "--backends-from", str(tmp_path / "missing.jsonl"), "--sms", "132"]) == 2
    assert main(["tune", "--backends-from", str(run)]) == 2           # no GPU: the SM count must be given
    assert not out.exists()
    assert main(["tune", "--backends-from", str(run), "--sms", "132", "--out", str(out)]) == 0
    table = tuning.read_table(out)
    assert table["device"] == H100
    assert table["entries"]["glu_backend@few_rows"]["1024"]["config"] == {"backend": "cuda"}
    assert main(["tune", "--backends-from", str(run), "--sms", "132"]) == 0  # default: the user's table
    assert tuning.read_table(tuning.user_table_path("NVIDIA_H100_80GB_HBM3"))["entries"]
