"""What every profile reader produces: kernel rows with as much launch context as the format has.

A *summary* format (nsys ``cuda_gpu_kern_sum``, the torch ``key_averages`` table) gives one row per
kernel name with its total time and instance count. A *trace* format (nsys ``cuda_gpu_trace``, the
nsys SQLite export, Chrome/Kineto JSON) gives one row per launch, in stream order, with the stream,
the start time and, where recorded, the CPU operator that launched it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator


class ProfileError(ValueError):
    """A profile that cannot be read. The message names the file and, where it has one, the line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


@dataclass(slots=True)
class Kernel:
    """One kernel name (summary formats) or one launch (trace formats).

    ``total_us`` is the summed device time of the ``count`` instances. ``launch`` identifies the
    launching CPU operator instance (equal values = one launch of one operator); ``cpu_op`` is its
    name. ``graph`` marks kernels replayed from a CUDA graph: they have no launching operator, so
    they are classified by name only. ``truncated`` marks names the tool cut short (``...``).
    """
    name: str
    total_us: float
    count: int = 1
    stream: int | None = None
    start_us: float | None = None
    cpu_op: str | None = None
    launch: int | None = None
    graph: bool = False
    truncated: bool = False
    line: int | None = None


@dataclass
class ShapeCall:
    """One call of a CPU operator whose input shapes were recorded (torch profiler
    ``record_shapes=True``), with the kernel time it launched."""
    cpu_op: str
    input_dims: list
    input_types: list
    concrete: list
    kernel_names: list[str]
    device_us: float


@dataclass
class Profile:
    path: str
    format: str
    kernels: list[Kernel] = field(default_factory=list)
    ordered: bool = False           # trace formats: kernels are sorted by (stream, start)
    shape_calls: list[ShapeCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Places where a reader had to guess ("line N: ..."): printed as warnings, never silent.
    warnings: list[str] = field(default_factory=list)
    # Rows that are not kernels but ranges around them (ProfilerStep#, nccl:*, "## ... ##",
    # record_function ranges): (name, device us, line). Excluded from the kernel time.
    annotations: list[tuple[str, float, int]] = field(default_factory=list)

    def warn(self, line: int | None, message: str) -> None:
        self.warnings.append(f"line {line}: {message}" if line is not None else message)

    @property
    def total_us(self) -> float:
        return sum(k.total_us for k in self.kernels)

    def __iter__(self) -> Iterator[Kernel]:
        return iter(self.kernels)
