"""``solbench breakdown``: where one implementation's time goes, kernel by kernel.

An operator of ours is often several launches: the MoE's sort, two grouped GEMMs and the top-k
sum; unified attention's staging copy and the attention kernel; the chunked delta rule's inverse,
WY, state and output passes. ``solbench run`` times the whole call (the figure of record); this
command says which launch that time is spent in, so the next change goes where it pays.

It runs the implementation as ``solbench run`` calls it (same inputs, ``out=``, the implementation's
``prepare``), warms it up, then profiles ``--iters`` calls under ``torch.profiler`` and sums the
device time of every kernel (and copy or fill) by name. Profiled calls are eager launches with a
warm L2 and the profiler's own overhead, so the per-call times are not the record's; the shares
are what the command is for. ``--device cpu`` profiles the CPU operators instead (the torch
formulations our kernels fall back to off CUDA), which is also how its tests run.
"""
from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field

#: Kernel names longer than this are cut in the table (the JSON keeps them whole).
NAME_WIDTH = 90


@dataclass
class Line:
    name: str
    launches_per_call: float
    us_per_call: float
    share: float


@dataclass
class Breakdown:
    op: str
    shape_id: str
    impl: str
    device: str
    iters: int
    total_us_per_call: float
    lines: list[Line] = field(default_factory=list)


def _device_events(prof, on_cuda: bool):
    """(name, microseconds) of each leaf device activity (CUDA kernels, copies, fills), or of each
    CPU operator's self time when profiling the CPU."""
    from torch.autograd import DeviceType

    for e in prof.events():
        if on_cuda:
            # Kernels, copies and fills are leaves; GPU user annotations (record_function ranges,
            # e.g. a compiled graph's) span other kernels' time and would count it twice.
            if e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False):
                yield e.name, float(e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total)
        elif e.device_type == DeviceType.CPU and e.self_cpu_time_total > 0:
            yield e.name, float(e.self_cpu_time_total)


def profile_shape(op: str, shape_id: str, impl_name: str = "ours_triton", device: str = "cuda", iters: int = 20,
                  warmup: int = 3, seed: int = 0) -> Breakdown:
    """Profile ``iters`` calls of ``impl_name`` on catalog shape ``shape_id`` of ``op``."""
    import torch

    from solbench.core.check import run_impl
    from solbench.core.spec import get_spec, impls_for

    if iters < 1 or warmup < 0:
        raise ValueError(f"breakdown: --iters must be >= 1 and warmup >= 0 (got {iters}, {warmup})")
    spec = get_spec(op)
    shape = next((s for s in spec.shapes if str(s.id) == str(shape_id)), None)
    if shape is None:
        raise ValueError(f"breakdown: {op} has no shape {shape_id} (ids: {', '.join(str(s.id) for s in spec.shapes)})")
    impls = impls_for(op)
    impl = impls.get(impl_name)
    if impl is None:
        raise ValueError(f"breakdown: {op} has no implementation {impl_name!r} (known: {', '.join(sorted(impls))})")
    on_cuda = device == "cuda"
    if on_cuda and not torch.cuda.is_available():
        raise ValueError("breakdown: --device cuda needs a CUDA GPU (none here); --device cpu profiles the CPU ops")
    if device not in ("cuda", "cpu"):
        raise ValueError(f"breakdown: --device is cuda or cpu (got {device!r})")
    dev = torch.device(device)
    for why in (impl.available(), impl.supports(shape, dev)):
        if not why:
            raise ValueError(f"breakdown: {op}/{impl_name} cannot run shape {shape_id} here: {why.reason}")
    inputs = spec.make_inputs(shape, dev, seed)
    if impl.prepare is not None:
        impl.prepare(shape, inputs)
    outs = spec.make_outputs(shape, inputs) if impl.takes_out else None
    outs = tuple(outs) if outs is not None else None

    def call():
        run_impl(spec, impl, shape, inputs, outs)

    sync = torch.cuda.synchronize if on_cuda else (lambda: None)
    with torch.no_grad():
        for _ in range(warmup):
            call()
        sync()
        activities = [torch.profiler.ProfilerActivity.CPU]
        if on_cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            for _ in range(iters):
                call()
            sync()
    totals, counts = defaultdict(float), defaultdict(int)
    for name, us in _device_events(prof, on_cuda):
        totals[name] += us
        counts[name] += 1
    grand = sum(totals.values())
    if not totals:
        raise RuntimeError(f"breakdown: the profiler recorded no {'device' if on_cuda else 'CPU operator'} activity "
                           f"for {op}/{impl_name} #{shape_id} (CUPTI unavailable?)")
    lines = [Line(name, counts[name] / iters, totals[name] / iters, totals[name] / grand if grand else 0.0)
             for name in sorted(totals, key=lambda n: -totals[n])]
    return Breakdown(op, str(shape.id), impl_name, device, iters, grand / iters, lines)


def print_breakdown(b: Breakdown, console=None, top: int = 15) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False)
    what = "kernel, copy or fill" if b.device == "cuda" else "CPU operator (self time)"
    total = (f"{b.total_us_per_call:.1f} us of device time a call" if b.device == "cuda"
             else f"{b.total_us_per_call:.1f} us of CPU operators' self time a call (Python time not included)")
    t = Table(title=f"{b.op} #{b.shape_id} {b.impl} on {b.device}: {total}, over {b.iters} profiled calls")
    for col in (what, "launches a call", "us a call", "share"):
        t.add_column(col, justify="left" if col == what else "right")
    shown = b.lines[:top]
    for line in shown:
        name = line.name if len(line.name) <= NAME_WIDTH else line.name[:NAME_WIDTH - 3] + "..."
        t.add_row(name, f"{line.launches_per_call:g}", f"{line.us_per_call:.2f}", f"{line.share:.1%}")
    rest = b.lines[top:]
    if rest:
        t.add_row(f"({len(rest)} more)", "", f"{sum(r.us_per_call for r in rest):.2f}",
                  f"{sum(r.share for r in rest):.1%}")
    console.print(t)


def cmd_breakdown(args) -> int:
    shapes = [s for s in args.shapes.split(",") if s] if args.shapes else []
    if not shapes:
        raise ValueError("breakdown: --shapes needs at least one shape id")
    for sid in shapes:
        b = profile_shape(args.op, sid, args.impl, args.device, args.iters)
        if args.json:
            print(json.dumps(asdict(b)))
        else:
            print_breakdown(b, top=args.top)
    if not args.json:
        print("Profiled eager calls with a warm L2 (profiler overhead included): the shares say where the time "
              "goes; the timer of record is `solbench run`.", file=sys.stderr)
    return 0


def register(sub) -> None:
    q = sub.add_parser("breakdown", help="where one implementation's time goes on a shape, kernel by kernel "
                                         "(torch.profiler)")
    q.add_argument("--op", required=True)
    q.add_argument("--shapes", required=True, help="catalog shape ids, comma-separated")
    q.add_argument("--impl", default="ours_triton")
    q.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                   help="cuda: device time per kernel (default); cpu: CPU operators' self time")
    q.add_argument("--iters", type=int, default=20, help="profiled calls after 3 warm-up calls (default 20)")
    q.add_argument("--top", type=int, default=15, help="rows shown (the rest are summed)")
    q.add_argument("--json", action="store_true", help="one JSON object per shape")
    q.set_defaults(func=cmd_breakdown)
