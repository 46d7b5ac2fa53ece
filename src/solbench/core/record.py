"""The results record: one JSON object per (operator, shape, implementation), the same for
``solbench run`` and ``solbench eval`` (README, "Results records"), built here and only here.

A record's ``role`` says what it is compared as: ``ours``, ``peer`` (ranked against ours),
``reference`` (shown beside them, never ranked) or, in ``eval``, ``candidate``. Files written
before records had a role fall back to the name (``ours*`` is ours, anything else a peer).
"""
from __future__ import annotations

from typing import Iterable, Mapping

from solbench.core import roofline
from solbench.core.hardware import Hardware
from solbench.core.spec import Cost, OpSpec, Shape

SCHEMA_VERSION = 1
#: The torch baselines every record is compared with by name (``speedup.vs_<name>``).
BASELINES = ("torch_compile", "torch_eager")


def role_of(rec: Mapping) -> str:
    """The record's role; for a record without one (an older file), from its name."""
    return rec.get("role") or ("ours" if str(rec.get("impl", "")).startswith("ours") else "peer")


def key_fields(op: str, shape_id, impl: str, *, hw: str, device: str, timer: str, smoke: bool) -> dict:
    """The fields that identify a record (:func:`record_key`), first in every record."""
    return {"schema": SCHEMA_VERSION, "op": op, "shape_id": shape_id, "impl": impl, "hw": hw, "device": device,
            "timer": timer, "smoke": smoke}


def record_key(r: Mapping) -> tuple:
    """What makes two records the same measurement: a rerun into the same file skips it."""
    return (r.get("op"), str(r.get("shape_id")), r.get("impl"), r.get("hw"), r.get("device"),
            r.get("timer"), bool(r.get("smoke")))


def build(key: Mapping, *, role: str, spec: OpSpec, shape: Shape, cost: Cost, datasheet: Hardware,
          achievable: Hardware, status: str, reason: str, timing: Mapping | None, check: Mapping | None,
          compile_s: float | None, impl_facts: Mapping, wall_s: float, env: Mapping,
          importance: float | None = None) -> dict:
    """One record from its pieces: ``key`` (:func:`key_fields`), the verdict (``status`` ok, fail
    or skip, and ``reason``), the timing record (``time_us`` is its median when ``status`` is ok,
    else None), the check record, and the facts around them. SOL and S come from ``cost`` on the
    datasheet SKU and on the device's achievable ceilings. ``importance``: the operator's, unless
    given (``run --weights``). The ``speedup`` field is added once the shape's records are all
    there (:func:`add_speedups`, :func:`candidate_speedups`)."""
    rl_ds, rl_ach = roofline.roofline(cost, datasheet), roofline.roofline(cost, achievable)
    t = timing or {}
    time_us = t.get("median_us") if status == "ok" else None
    # The cold floor (calibrate): no kernel of any size beats it, so below it S says nothing about
    # the kernel; None until the device's calibration has measured it.
    cold_floor_us = (achievable.extra or {}).get("cold_floor_us")
    return {
        **key, "role": role, "status": status, "reason": reason,
        "time_us": time_us, "p20_us": t.get("p20_us") if time_us is not None else None,
        "p80_us": t.get("p80_us") if time_us is not None else None,
        "sol_us": rl_ds.sol_us, "sol_achievable_us": rl_ach.sol_us,
        "s": roofline.speed_of_light_fraction(rl_ds.sol_us, time_us),
        "s_achievable": roofline.speed_of_light_fraction(rl_ach.sol_us, time_us),
        "launch_floor_us": achievable.launch_floor_us,
        "cold_floor_us": cold_floor_us,
        "s_floor": max(rl_ach.sol_us, cold_floor_us) / time_us if cold_floor_us and time_us else None,
        "ai": rl_ds.ai, "regime": rl_ds.regime, "bound": rl_ds.bound,
        "cost": cost.to_record(), "tolerance": spec.tolerance(shape).to_record(),
        "dtype": spec.dtype, "importance": spec.importance if importance is None else importance,
        "weight": shape.weight, "description": shape.description,
        "params": dict(shape.params), "provenance": dict(shape.provenance),
        "check": check, "timing": t or None, "compile_s": compile_s, "impl_facts": dict(impl_facts),
        "peaks": {"datasheet": {"bandwidth": datasheet.bandwidth, "peaks": dict(datasheet.peaks)},
                  "achievable": {"bandwidth": achievable.bandwidth, "peaks": dict(achievable.peaks),
                                 "source": achievable.source}},
        "wall_s": round(wall_s, 3), "env": env,
    }


def _ok_times(records: Iterable[Mapping]) -> dict[str, float]:
    return {r["impl"]: r["time_us"] for r in records if r.get("status") == "ok" and r.get("time_us")}


def best_peer_us(times: Mapping[str, float], roles: Mapping[str, str], exclude: str | None = None) -> float | None:
    """The fastest time among the implementations whose role is ``peer`` (never ours, a
    reference or ``exclude``); None when none ran."""
    peers = [t for name, t in times.items() if name != exclude and roles.get(name) == "peer"]
    return min(peers) if peers else None


def add_speedups(shape_records: list[dict]) -> None:
    """Set ``speedup`` on each record of one shape (``run``): ``vs_<torch baseline>`` and
    ``vs_best_peer``, the other implementation's time over this one's, for those that ran ok."""
    times = _ok_times(shape_records)
    roles = {r["impl"]: role_of(r) for r in shape_records}
    for r in shape_records:
        t = times.get(r["impl"]) if r.get("status") == "ok" else None
        sp = {}
        if t:
            for b in BASELINES:
                if b in times:
                    sp[f"vs_{b}"] = times[b] / t
            best = best_peer_us(times, roles, exclude=r["impl"])
            if best is not None:
                sp["vs_best_peer"] = best / t
        r["speedup"] = sp


def candidate_speedups(rec: Mapping, baselines: Iterable[Mapping]) -> dict:
    """The speedups of an ``eval`` candidate's record against the ``run`` records of its shape:
    ``vs_<impl>`` for every one timed, ``vs_best_library`` (the fastest of them, ours included,
    named by ``best_library_impl``) and ``vs_best_peer`` (as in ``run``)."""
    t = rec.get("time_us")
    if not t:
        return {}
    same = [b for b in baselines if str(b["shape_id"]) == str(rec["shape_id"])]
    times = _ok_times(same)
    sp: dict = {f"vs_{n}": times[n] / t for n in sorted(times)}
    if times:
        best = min(times, key=times.get)
        sp["vs_best_library"] = times[best] / t
        sp["best_library_impl"] = best
    peer = best_peer_us(times, {b["impl"]: role_of(b) for b in same})
    if peer is not None:
        sp["vs_best_peer"] = peer / t
    return sp


def display_order(records: Iterable[Mapping]) -> list[str]:
    """The implementations of ``records`` in the order reports show them: ours first, then the
    torch baselines, then the others, each group by name."""
    rank = {b: i + 1 for i, b in enumerate(BASELINES)}
    roles: dict[str, str] = {}
    for r in records:
        roles.setdefault(r["impl"], role_of(r))
    return sorted(roles, key=lambda n: (0 if roles[n] == "ours" else rank.get(n, len(BASELINES) + 1), n))
