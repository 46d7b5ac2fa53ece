"""Speed of light: SOL = max(max_d W_d / P_d, (Q_read + Q_write) / B).

Execution paths run concurrently (tensor-core MMAs beside CUDA-core epilogues, softmax or block
rescales in other warps, loads in flight under both), so a lower bound takes the slowest path,
not the sum: a kernel that perfectly overlaps them reaches the max, and none can beat it. A path
a cost declares ``serial`` (its comment says why it cannot overlap) adds to that max instead.

The launch floor is reported beside SOL, never folded into it: a 3 KB decode shape has a SOL of
about a nanosecond, and its gap to the floor is a different question from its gap to SOL.
"""
from __future__ import annotations

from dataclasses import dataclass

from solbench.core.hardware import Hardware
from solbench.core.spec import Cost

COMPUTE_BOUND_AI = 10.0  # FLOP/byte above which an operator is called compute-bound (regime C)


@dataclass(frozen=True)
class Roofline:
    sol_us: float
    compute_us: float
    memory_us: float
    ai: float | None        # FLOP per byte; None when the op moves no bytes
    regime: str             # "C" | "M" | "I"
    bound: str              # "compute" | "memory"


def regime(cost: Cost) -> str:
    if cost.total_flops <= 0:
        return "I"
    ai = arithmetic_intensity(cost)
    return "C" if ai is not None and ai > COMPUTE_BOUND_AI else "M"


def arithmetic_intensity(cost: Cost) -> float | None:
    return cost.total_flops / cost.total_bytes if cost.total_bytes > 0 else None


def roofline(cost: Cost, hw: Hardware) -> Roofline:
    times = {path: w / hw.peak(path) for path, w in cost.flops.items() if w}
    serial = set(cost.serial)
    compute_s = max((t for p, t in times.items() if p not in serial), default=0.0) \
        + sum(t for p, t in times.items() if p in serial)
    memory_s = cost.total_bytes / hw.bandwidth
    sol_s = max(compute_s, memory_s)
    return Roofline(sol_us=sol_s * 1e6, compute_us=compute_s * 1e6, memory_us=memory_s * 1e6,
                    ai=arithmetic_intensity(cost), regime=regime(cost),
                    bound="compute" if compute_s > memory_s else "memory")


def speed_of_light_fraction(sol_us: float, time_us: float | None) -> float | None:
    """S = SOL / T (1.0 means at the bound)."""
    if time_us is None or time_us <= 0:
        return None
    return sol_us / time_us
