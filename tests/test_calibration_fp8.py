"""Calibrated fp8: `calibrate` measures the fp8 tensor-core rate with an fp8 matmul (per-tensor
torch._scaled_mm) and the fp8 paths' achievable SOL uses it; without a GPU it is absent with a
reason, and nothing is derived from the bf16 rate."""
from types import SimpleNamespace

import pytest
import torch

from solbench.core import calibration, hardware
from solbench.core.roofline import roofline
from solbench.core.spec import get_spec

T = 1e12
H100 = hardware.SKUS["H100"]


def _cal(peaks, **kw):
    return {"peaks": peaks, "bandwidth": 3.0e12, "launch_floor_us": 1.2, "device": "NVIDIA H100 80GB HBM3",
            "date": "2026-12-07", **kw}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path")
def test_cpu_calibration_has_no_fp8_rate_and_says_why():
    data = calibration.measure(quick=True)
    assert "fp8_e4m3_tc" not in data["peaks"]
    assert "no CUDA device" in data["fp8_matmul"]["skipped"]


def test_fp8_unsupported_reasons():
    assert "no CUDA device" in calibration.fp8_unsupported(None)
    assert "sm_80 has no fp8" in calibration.fp8_unsupported(80)
    assert calibration.fp8_unsupported(90) is None  # this torch has torch._scaled_mm


def test_fp8_rate_is_an_fp8_scaled_mm_timed_like_bf16(monkeypatch):
    # The measurement itself, on whatever device torch runs _scaled_mm here, with a stand-in timer
    # that runs the timed call once and reports 1 ms: the rate is 2 * size^3 / 1 ms.
    calls = []
    real = torch._scaled_mm

    def spy(a, b, **kw):
        calls.append((a.dtype, b.dtype, b.stride(), kw["out_dtype"], kw["scale_a"].numel()))
        return real(a, b, **kw)

    monkeypatch.setattr(torch, "_scaled_mm", spy)

    def timer(fn, n_sets, flush):
        assert n_sets == 2 and flush is False
        fn(0)
        return SimpleNamespace(median_us=1000.0)

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rate = calibration.fp8_matmul_rate(dev, 64, timer)
    assert rate == pytest.approx(2 * 64**3 / 1e-3)
    assert calls == [(torch.float8_e4m3fn, torch.float8_e4m3fn, (1, 64), torch.bfloat16, 1)]


def test_measured_fp8_rate_is_the_fp8_ceiling_not_the_bf16_ratio():
    # bf16 measured at 75% of its datasheet; fp8 measured at 1409 TFLOP/s (71% of its datasheet).
    hw = hardware.calibrated_hardware(_cal({"bf16_tc": 0.75 * 989 * T, "fp8_e4m3_tc": 1409 * T}), H100)
    assert hw.peak("fp8_e4m3_tc") == 1409 * T
    assert hw.peak("fp8_e5m2_tc") == 1409 * T          # same tensor-core instructions
    assert hw.peak("tf32_tc") == pytest.approx(0.75 * 494.5 * T)  # other paths keep the ratio rule
    spec = get_spec("block_scaled_mm")
    cost = spec.cost(spec.shapes[14])                  # 4096^3
    rl = roofline(cost, hw)
    # Tensor-core and CUDA-core paths overlap: the compute time is the slower of the two.
    assert rl.compute_us == pytest.approx(max(cost.flops["fp8_e4m3_tc"] / (1409 * T),
                                              cost.flops["fp32"] / hw.peak("fp32")) * 1e6)


def test_unmeasured_fp8_keeps_the_datasheet_rate_and_says_so():
    hw = hardware.calibrated_hardware(_cal({"bf16_tc": 0.75 * 989 * T},
                                           fp8_matmul={"skipped": "sm_80 has no fp8 tensor cores"}), H100)
    assert hw.peak("fp8_e4m3_tc") == 1979 * T and hw.peak("fp8_e5m2_tc") == 1979 * T
    assert "fp8 at the datasheet rate (sm_80 has no fp8 tensor cores)" in hw.notes
    assert hw.peak("bf16_tc") == 0.75 * 989 * T


def test_the_run_uses_a_saved_fp8_rate(tmp_path, monkeypatch):
    # What `run` reads (achievable_for_device) takes the fp8 rate of the saved calibration.
    monkeypatch.setenv("SOLBENCH_CACHE", str(tmp_path))
    cal = _cal({"fp32": 1e12, "bf16_tc": 2e12, "fp16_tc": 2e12, "fp8_e4m3_tc": 5e12})
    hardware.save_calibration(hardware.device_key(), cal)
    hw = hardware.achievable_for_device(auto_calibrate=False)
    assert hw.peak("fp8_e4m3_tc") == 5e12
    hardware.save_calibration(hardware.device_key(), _cal({"fp32": 1e12, "bf16_tc": 2e12, "fp16_tc": 2e12}))
    if not torch.cuda.is_available():  # no datasheet on the CPU: the path falls back to 16-bit
        assert hardware.achievable_for_device(auto_calibrate=False).peak("fp8_e4m3_tc") == 2e12
