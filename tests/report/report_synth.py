"""Synthetic results records for the report tests, built with the runner's schema.

The shapes, descriptions, provenance, importance and weights are the real catalog's; costs and
times are made up but consistent: SOL, S and speedups are computed from them with the same core
functions the runner uses, so every figure the report shows can be checked against the records.
"""
from __future__ import annotations

import json
import random
import zlib

from solbench.catalog import make_shapes, operator_entries
from solbench.core import hardware, roofline
from solbench.core.record import SCHEMA_VERSION, add_speedups
from solbench.core.spec import Cost

# How close to the achievable SOL each made-up implementation gets (median).
EFFICIENCY = {"ours_triton": 0.8, "torch_compile": 0.5, "torch_eager": 0.25, "liger": 0.6}
STRUCTURAL = {"moe_align_block_size", "moe_count_and_sort", "reshape_and_cache", "topk_filter"}
COMPUTE = {"attention_forward", "unified_attention", "block_scaled_mm", "fused_moe", "fp8_blockscale_fused_moe",
           "mla_decode_attention", "paged_attention_decode", "chunk_gated_delta_rule_state", "chunk_delta_rule_output"}

ENV = {"python": "3.11.7", "torch": "2.11.0+cu128", "platform": "Linux-6.8.0-x86_64-with-glibc2.39",
       "commit": "0123456789ab", "triton": "3.6.0", "device": "NVIDIA H200", "cuda": "12.8", "sm_count": 132,
       "capability": "9.0", "memory_gb": 139.8, "timer": "graph", "triton_interpret": False, "driver": "570.86.15",
       "clock_sm_mhz": "1980", "clock_mem_mhz": "3201", "clock_sm_max_mhz": "1980", "power_limit_w": "700.00"}


def achievable(sku: hardware.Hardware) -> hardware.Hardware:
    return hardware.Hardware(name=f"{sku.name} (calibrated)", peaks={k: v * 0.8 for k, v in sku.peaks.items()},
                             bandwidth=sku.bandwidth * 0.88, source="calibrated", launch_floor_us=2.1)


def synthetic_cost(op: str, shape_id, dtype: str) -> Cost:
    h = zlib.crc32(f"{op}/{shape_id}".encode())
    nbytes = float(2 ** (14 + h % 14))          # 16 KB .. 128 MB
    if op in STRUCTURAL:
        return Cost(flops={}, bytes_read=nbytes * 0.75, bytes_written=nbytes * 0.25)
    if op in COMPUTE:
        path = "fp8_e4m3_tc" if dtype.startswith("fp8") else "bf16_tc"
        return Cost(flops={path: nbytes * (20 + h % 400), "fp32": nbytes}, bytes_read=nbytes * 0.8,
                    bytes_written=nbytes * 0.2)
    return Cost(flops={"fp32": nbytes * 1.5}, bytes_read=nbytes * 0.6, bytes_written=nbytes * 0.4)


def make_records(ops=None, impls=("ours_triton", "torch_compile", "torch_eager", "liger"), hw="H200",
                 device="NVIDIA H200", timer="graph", seed=0, max_shapes=None, spread=0.02, jitter=0.0,
                 slow=None, fail=None, smoke=False, impls_per_op=None):
    """Records for ``ops`` (default: the whole catalog).

    ``jitter``: relative run-to-run noise on every median (p20/p80 follow the new median).
    ``slow``: {(op, impl): factor} multiplies those times (a deliberate regression).
    ``fail``: {(op, impl): reason} marks those records FAIL on every shape.
    ``impls_per_op``: {op: [impls]} overrides ``impls`` for some operators.
    """
    rng = random.Random(seed)
    entries = operator_entries()
    ds = hardware.SKUS[hw]
    ach = achievable(ds)
    env = dict(ENV, timer=timer, device=device)
    slow, fail = slow or {}, fail or {}
    out = []
    for name in (ops or list(entries)):
        e = entries[name]
        shapes = make_shapes(e)[:max_shapes] if max_shapes else make_shapes(e)
        for shape in shapes:
            cost = synthetic_cost(name, shape.id, e["dtype"])
            rl_ds, rl_ach = roofline.roofline(cost, ds), roofline.roofline(cost, ach)
            h = zlib.crc32(f"{name}/{shape.id}".encode())
            recs = []
            for impl in (impls_per_op or {}).get(name, impls):
                base_eff = EFFICIENCY.get(impl, 0.4) * (0.6 + 0.4 * ((h >> 8) % 100) / 100)
                t = rl_ach.sol_us / base_eff + 2.0     # + a launch floor, as on a real device
                t *= slow.get((name, impl), 1.0)
                if jitter:
                    t *= 1.0 + rng.gauss(0.0, jitter)
                status, reason = "ok", ""
                if impl == "liger":
                    status, reason = "skip", "liger_kernel is not importable (ModuleNotFoundError: No module named 'liger_kernel')"
                if (name, impl) in fail:
                    status, reason = "fail", fail[(name, impl)]
                time_us = t if status == "ok" else None
                rec = {
                    "schema": SCHEMA_VERSION, "op": name, "shape_id": shape.id, "impl": impl, "hw": ds.name,
                    "device": device, "timer": timer, "smoke": smoke, "status": status, "reason": reason,
                    "time_us": time_us, "p20_us": t * (1 - spread) if time_us else None,
                    "p80_us": t * (1 + spread) if time_us else None,
                    "sol_us": rl_ds.sol_us, "sol_achievable_us": rl_ach.sol_us,
                    "s": roofline.speed_of_light_fraction(rl_ds.sol_us, time_us),
                    "s_achievable": roofline.speed_of_light_fraction(rl_ach.sol_us, time_us),
                    "launch_floor_us": ach.launch_floor_us, "ai": rl_ds.ai, "regime": rl_ds.regime,
                    "bound": rl_ds.bound, "cost": cost.to_record(),
                    "tolerance": {"atol": 0.01, "rtol": 0.016, "rms_rtol": 0.008}, "dtype": e["dtype"],
                    "importance": e["importance"], "weight": shape.weight, "description": shape.description,
                    "params": dict(shape.params), "provenance": dict(shape.provenance),
                    "check": {"ok": True, "reason": "", "max_abs": 0.01, "max_rel": 0.004, "rms_rel": 0.001,
                              "seeds": [0, 1, 2]} if status == "ok" else None,
                    "timing": {"median_us": t, "mode": timer} if time_us else None,
                    "compile_s": 3.5 if impl == "torch_compile" and status == "ok" else None, "impl_facts": {},
                    "peaks": {"datasheet": {"bandwidth": ds.bandwidth, "peaks": dict(ds.peaks)},
                              "achievable": {"bandwidth": ach.bandwidth, "peaks": dict(ach.peaks), "source": "calibrated"}},
                    "wall_s": 0.5, "env": env,
                }
                recs.append(rec)
            add_speedups(recs)
            out.extend(recs)
    return out


def write_jsonl(path, records) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return str(path)
