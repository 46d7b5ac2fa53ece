"""Checks on timings that stay heuristics: the side-stream check (run by the worker, so a hint
against naive stream tricks, not a defence) and the suspicious-speed judge (run by the judge on
the time it accepted).

The defences that hold against a hostile candidate live in the judge (:mod:`solbench.eval.judge`):
every output is judged in the judge's process from bytes, inputs are compared bit for bit, timed
calls are audited after the fact against committed digests, and every timing pass is checked
against the judge's own clock.
"""
from __future__ import annotations

import time
from typing import Callable


def side_stream_check(call: Callable[[int], None], n_sets: int, reps: int = 20,
                      clock: Callable[[], float] = time.perf_counter) -> dict:
    """Work the timer's events miss: device-wide synchronized wall time against event time on the
    current stream. An honest candidate's events span its work (also when it is host-bound: the
    stream idles between launches); unjoined side-stream work only shows up in the wall time."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    t0 = clock()
    start.record()
    for r in range(reps):
        call(r % n_sets)
    end.record()
    torch.cuda.synchronize()  # every stream of the device
    wall_us = (clock() - t0) * 1e6
    event_us = start.elapsed_time(end) * 1e3
    flagged = wall_us > 2 * event_us + 200.0
    return {"wall_us": wall_us, "event_us": event_us, "reps": reps,
            "flag": (f"stream tricks: {reps} calls took {wall_us:.0f} us device-wide but {event_us:.0f} us on the "
                     "timed stream; work runs on a stream the caller's stream does not wait for") if flagged else None}


#: How far below the achievable SOL a time may fall before it is called impossible. The calibrated
#: copy bandwidth is itself a measurement (of torch's elementwise copy), and a good kernel beats it
#: by a few percent on the largest shapes: the H200's exported silu kernel measured S = 1.01-1.02
#: on shapes #7/#8. Cheats (cached outputs, skipped work) are off by far more than this margin,
#: and nothing may beat the datasheet SOL at all.
ACHIEVABLE_MARGIN = 0.05


def speed_flags(time_us: float | None, sol_achievable_us: float | None, sol_us: float | None) -> list[str]:
    """A measured time below the datasheet SOL, or more than :data:`ACHIEVABLE_MARGIN` below the
    achievable SOL (calibrated ceilings), cannot be honest."""
    if time_us is None or time_us <= 0:
        return []
    flags = []
    if sol_us and time_us < sol_us:
        flags.append(f"suspicious speed: {time_us:.3g} us is below the datasheet SOL {sol_us:.3g} us; not scored")
    elif sol_achievable_us and time_us < sol_achievable_us * (1.0 - ACHIEVABLE_MARGIN):
        flags.append(f"suspicious speed: {time_us:.3g} us is more than {ACHIEVABLE_MARGIN:.0%} below the achievable "
                     f"SOL {sol_achievable_us:.3g} us (S = {sol_achievable_us / time_us:.2f}); not scored")
    return flags
