"""Hardware ceilings: datasheet SKUs, device detection, and calibration of the current device.

Peaks are dense (no structured sparsity), in FLOP/s per dtype path, and memory bandwidth in B/s.
Paths: ``bf16_tc``, ``fp16_tc``, ``fp8_e4m3_tc``, ``tf32_tc`` (tensor cores), ``fp32`` (CUDA cores).
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

from solbench.runtime import cache_root, current_device, device_key, device_name  # noqa: F401 (hardware's API)

T = 1e12


@dataclass(frozen=True)
class Hardware:
    name: str
    peaks: Mapping[str, float]          # FLOP/s per path
    bandwidth: float                    # B/s
    source: str = "datasheet"           # "datasheet" | "calibrated" | "estimate"
    l2_bytes: int | None = None
    launch_floor_us: float | None = None
    notes: str = ""
    extra: Mapping[str, float] = field(default_factory=dict)

    def peak(self, path: str) -> float:
        """FLOP/s for a path; a path the part lacks falls back to the nearest one it has
        (fp8 runs at the 16-bit tensor-core rate on parts without fp8, tf32 at fp32...)."""
        for p in _FALLBACK.get(path, (path,)):
            v = self.peaks.get(p)
            if v:
                return float(v)
        raise KeyError(f"{self.name} has no peak for FLOP path {path!r} (has {sorted(self.peaks)})")

    def to_record(self) -> dict:
        d = asdict(self)
        d["peaks"] = dict(self.peaks)
        d["extra"] = dict(self.extra)
        return d


_FALLBACK = {
    "bf16_tc": ("bf16_tc", "fp16_tc", "fp32"),
    "fp16_tc": ("fp16_tc", "bf16_tc", "fp32"),
    "fp8_e4m3_tc": ("fp8_e4m3_tc", "bf16_tc", "fp16_tc", "fp32"),
    "fp8_e5m2_tc": ("fp8_e5m2_tc", "fp8_e4m3_tc", "bf16_tc", "fp32"),
    "tf32_tc": ("tf32_tc", "fp32"),
    "fp32": ("fp32",),
}


def _sku(name, bf16, fp8, tf32, fp32, tbps, l2_mb, notes=""):
    peaks = {"bf16_tc": bf16 * T, "fp16_tc": bf16 * T, "fp32": fp32 * T}
    if fp8:
        peaks["fp8_e4m3_tc"] = fp8 * T
        peaks["fp8_e5m2_tc"] = fp8 * T
    if tf32:
        peaks["tf32_tc"] = tf32 * T
    return Hardware(name=name, peaks=peaks, bandwidth=tbps * T, source="datasheet",
                    l2_bytes=int(l2_mb * 2**20) if l2_mb else None, notes=notes)


# Dense peaks from the vendors' datasheets. H20, XPU-A, H100, H200 and A100 as given in the
# project's core issue; fp32/tf32 of H100/H200/A100 and all of B200 from NVIDIA's datasheets.
SKUS: dict[str, Hardware] = {
    "H20": _sku("H20", 148, 296, 74, 44, 4.0, 60),
    "XPU-A": _sku("XPU-A", 232.65, 465.3, None, 29.1, 5.3, None,
                  notes="the accelerator the catalog's deployed times were measured on"),
    "H100": _sku("H100", 989, 1979, 494.5, 67, 3.35, 50, notes="H100 SXM5 80GB"),
    "H200": _sku("H200", 989, 1979, 494.5, 67, 4.8, 60, notes="H200 SXM 141GB"),
    "A100": _sku("A100", 312, None, 156, 19.5, 2.039, 40, notes="A100 80GB SXM; no fp8 (runs at bf16 rate)"),
    "B200": _sku("B200", 2250, 4500, 1100, 75, 8.0, 126, notes="HGX B200, dense, per GPU"),
}

_ALIASES = [
    (r"\bH200\b", "H200"), (r"\bH100\b", "H100"), (r"\bH800\b", "H100"), (r"\bH20\b", "H20"),
    (r"\bA100\b", "A100"), (r"\bA800\b", "A100"), (r"\bB200\b", "B200"),
]


def sku_names() -> list[str]:
    return list(SKUS)


def get_sku(name: str) -> Hardware:
    if name.upper() == "CPU":
        return cpu_hardware()
    for k, hw in SKUS.items():
        if k.lower() == name.lower():
            return hw
    raise KeyError(f"unknown hardware {name!r}; known: {', '.join(list(SKUS) + ['CPU'])}")


def match_sku(device_name: str) -> str | None:
    for pattern, sku in _ALIASES:
        if re.search(pattern, device_name, re.IGNORECASE):
            return sku
    return None


def cpu_hardware() -> Hardware:
    """The local CPU. There is no datasheet to read, so its ceilings are calibrated (or, before a
    calibration, a deliberately rough estimate flagged as such)."""
    cal = load_calibration(device_key("cpu"))
    if cal:
        return calibrated_hardware(cal, base=None)
    cores = os.cpu_count() or 1
    # 2 FMA units x 8 fp32 lanes x 2 FLOP x ~3 GHz per core; ~10 GB/s per core of memory bandwidth.
    return Hardware(name="CPU", peaks={"fp32": cores * 96e9, "bf16_tc": cores * 96e9, "fp16_tc": cores * 96e9},
                    bandwidth=cores * 10e9, source="estimate", notes="uncalibrated estimate")


# ---- the device (detected by solbench.runtime, whose tuned tables key on it too) -----------------

def datasheet_for_device(device=None) -> Hardware:
    device = device or current_device()
    if device.type != "cuda":
        return cpu_hardware()
    sku = match_sku(device_name(device))
    if sku is None:
        raise KeyError(f"no datasheet for {device_name(device)!r}; pass --hw with one of {', '.join(SKUS)}")
    return SKUS[sku]


# ---- calibration --------------------------------------------------------------------------------

def cache_dir() -> Path:
    return cache_root() / "calibration"


def load_calibration(key: str) -> dict | None:
    p = cache_dir() / f"{key}.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def save_calibration(key: str, data: dict) -> Path:
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{key}.json"
    p.write_text(json.dumps(data, indent=1))
    return p


#: Tensor-core paths that run the fp8 instructions: their calibrated rate is the fp8 matmul's own
#: (core/calibration), never the 16-bit ratio applied to the datasheet.
FP8_PATHS = ("fp8_e4m3_tc", "fp8_e5m2_tc")


def calibrated_hardware(cal: Mapping, base: Hardware | None) -> Hardware:
    """Achievable ceilings: measured bandwidth and matmul rates. The fp8 paths take the measured
    fp8 matmul rate (e5m2 runs the same tensor-core instructions as e4m3), or, where none was
    measured, the datasheet's fp8 rate (still a lower bound on time, marked in ``notes``). Other
    paths that were not measured keep the datasheet value scaled by the measured/datasheet ratio
    of the 16-bit tensor cores."""
    peaks = dict(base.peaks) if base else {}
    measured = dict(cal.get("peaks", {}))
    if base and "bf16_tc" in measured and base.peaks.get("bf16_tc"):
        ratio = measured["bf16_tc"] / base.peaks["bf16_tc"]
        peaks = {k: v if k in FP8_PATHS else v * ratio for k, v in peaks.items()}
    peaks.update(measured)
    notes = f"calibrated {cal.get('date', '')} on {cal.get('device', '')}"
    fp8 = measured.get("fp8_e4m3_tc")
    if fp8:
        peaks.update({p: fp8 for p in FP8_PATHS if p not in measured})
    elif any(p in peaks for p in FP8_PATHS):
        why = (cal.get("fp8_matmul") or {}).get("skipped", "not measured")
        notes += f"; fp8 at the datasheet rate ({why})"
    return Hardware(name=f"{base.name} (calibrated)" if base else "CPU", peaks=peaks,
                    bandwidth=float(cal["bandwidth"]), source="calibrated", l2_bytes=cal.get("l2_bytes"),
                    launch_floor_us=cal.get("launch_floor_us"), notes=notes,
                    extra={k: v for k, v in cal.get("extra", {}).items()})


def calibrate(force: bool = False, quick: bool = False, progress=None) -> dict:
    """Measure the current device; cached per device unless ``force``."""
    key = device_key()
    if not force:
        cached = load_calibration(key)
        if cached:
            return cached
    from solbench.core import calibration

    data = calibration.measure(quick=quick, progress=progress)
    data["device"] = device_name()
    data["date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    save_calibration(key, data)
    return data


def calibrate_by_size(progress=None) -> dict:
    """Add the copy-by-size curve (core/calibration.copy_by_size) to this device's calibration,
    measuring the calibration first if there is none. The calibrated bandwidth itself is left as
    it was, so figures already computed against it stay comparable."""
    from solbench.core import calibration

    key = device_key()
    data = calibrate(progress=progress)
    data["copy_by_size"] = calibration.copy_by_size(progress=progress)
    data["copy_by_size_date"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    save_calibration(key, data)
    return data


def achievable_for_device(auto_calibrate: bool = True) -> Hardware:
    device = current_device()
    base = datasheet_for_device(device) if device.type == "cuda" else None
    cal = load_calibration(device_key())
    if cal is None and auto_calibrate:
        cal = calibrate(quick=device.type == "cpu")
    if cal is None:
        return base or cpu_hardware()
    return calibrated_hardware(cal, base)
