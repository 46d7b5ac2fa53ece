"""Timers. Each returns a :class:`Timing`: the median and the p20/p80 of per-call times.

GPU ``graph`` (default): the calls are captured into a CUDA graph and replayed, timed with CUDA
events. Inputs rotate over enough sets to exceed twice the L2, so every call starts cold; calls too
small for that (:data:`MAX_ROTATING_SETS`) are each preceded by a read of a 2xL2 buffer, and a graph
of flushes alone is subtracted, replay by replay. A call that allocates its outputs gets a fresh
buffer per captured call (the timer keeps each return value alive), so its outputs rotate like
``out=`` buffers instead of staying resident and dirty in L2.

GPU ``eager``: each call is launched from Python between two events, the stream first held by a
device-side spin, so the events time the device's work and not the host's launch. With
``eager="device_sync"`` (the evaluator's choice, and the fallback when a graph capture fails on
unjoined streams) a sample is the wall time between two device-wide syncs: side streams count.

CPU: ``time.perf_counter`` around each call, median. Nothing is allocated, cloned or synchronized
inside the timed region: the caller's ``call(i)`` only launches work on input set ``i``.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence


@dataclass
class Timing:
    median_us: float
    p20_us: float
    p80_us: float
    mode: str                 # "graph" | "eager" | "eager_device_sync" | "cpu"
    n_sets: int = 1
    calls_per_sample: int = 1
    samples: int = 0
    cold_l2: str = ""         # "rotate" | "flush" | "warm" | "" (CPU)
    notes: list[str] = field(default_factory=list)

    def to_record(self) -> dict:
        return asdict(self)


def quantiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """(median, p20, p80) with linear interpolation; a single sample is its own spread."""
    if not samples:
        raise ValueError("no samples to summarize")
    xs = sorted(float(x) for x in samples)

    def q(p: float) -> float:
        pos = p * (len(xs) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    return statistics.median(xs), q(0.2), q(0.8)


#: At most this many rotating input sets: calls down to about 3 KB (2 x 50 MB of L2 / 32768) rotate
#: instead of being flushed, because a subtracted ~36 us flush drifts by ~0.3 us between processes,
#: a 10% error on a 3 us call (docs/DECISIONS.md). Most sets are copies (:func:`input_sets`).
MAX_ROTATING_SETS = 32768
#: ... unless making that many sets would take longer than this (see :func:`make_sets`).
MAX_SET_MAKING_S = 3.0
#: Sets whose making time projects the rest's (see :func:`make_sets`).
SETS_TO_PROJECT = 64
#: Sets launched once before the timing starts.
WARMUP_SETS = 8


def plan_sets(bytes_per_call: float, l2_bytes: int, max_sets: int = MAX_ROTATING_SETS,
              max_total_bytes: float = 4e9, *, outputs_rotate: bool = True,
              bytes_written: float = 0.0) -> tuple[int, bool]:
    """How many rotating input sets, and whether an L2 flush is still needed.

    Enough sets that together they are over twice the L2 means each set has been evicted by the
    time it comes round again. When that would take more than ``max_sets`` sets (calls of a few
    KB), two sets plus a flush are used instead (see :data:`MAX_ROTATING_SETS`).

    Rotation only keeps *outputs* cold when they rotate too: ``out=`` buffers per set, or, under
    graph timing, an allocating call that returns its outputs (the timer keeps each captured
    call's outputs alive, so each gets its own buffer; see the module docstring). A call whose
    outputs land on one address every time (an eager timing of an allocating implementation)
    would keep outputs smaller than twice the L2 resident and dirty between calls, so part of
    their write traffic never reaches HBM and the call looks faster than it is. Such calls
    (``outputs_rotate=False``) are flushed instead.

    Rotation is preferred to a flush wherever it fits: it is what a kernel meets in a serving step
    (the previous kernel's data resident and dirty) and what the copy ceiling was calibrated with,
    while a flush biases the next call's time both ways (docs/DECISIONS.md).
    """
    if bytes_per_call <= 0:
        return 2, True
    if not outputs_rotate and bytes_written < 2 * l2_bytes:
        return 2, True
    need = math.ceil(2 * l2_bytes / bytes_per_call) + 1
    if need <= max_sets and need * bytes_per_call <= max_total_bytes:
        return max(2, need), False
    if 2 * bytes_per_call > max_total_bytes:
        return 1, False  # one set is already many times the L2
    return 2, True


def plan_for(cost, l2_bytes: int, *, allocates_outputs: bool, mode: str) -> tuple[int, bool]:
    """:func:`plan_sets` for one call of ``cost`` (a core/spec Cost). Outputs the implementation
    allocates itself rotate with the inputs only under graph timing (each captured call keeps its
    own buffer); timed eagerly they land on one address every call, so they count as not rotating.
    Pass ``eager_flush=allocates_outputs`` to :func:`time_gpu` along with the plan."""
    return plan_sets(cost.total_bytes, l2_bytes, outputs_rotate=not allocates_outputs or mode == "graph",
                     bytes_written=cost.bytes_written)


#: Input sets made from fresh seeds; the rest of a plan's sets are copies of these (see input_sets).
DISTINCT_SETS = 8
#: The most memory a plan of many sets may hold in inputs (see input_sets).
MAX_SETS_BYTES = 2e9
#: The longest replay (us) a plan of many sets may take; slower calls are flushed (see time_gpu).
#: High enough that every compiled kernel of a 1-token shape rotates (so the implementations of a
#: shape are timed alike), low enough that a replay costs 5 samples x 150 ms at most.
MAX_ROTATION_REPLAY_US = 150_000.0


def input_sets(n_sets: int, flush: bool, make_inputs: Callable[[int], dict]) -> tuple[list[dict], bool]:
    """The input sets of a :func:`plan_sets` plan and whether to flush: up to :data:`DISTINCT_SETS`
    made by ``make_inputs(i)``, the rest copies of them (core/inputs.rotating_sets; a memory copy
    keeps a set cold as well as fresh values would). Sets that cannot be copied (tensors inside
    containers) are each made, within :func:`make_sets`' budget.

    The plan counts the bytes a call moves, not the memory its inputs hold: a call that writes
    a few KB into a cache of GBs (reshape_and_cache's decode shapes) would plan thousands of sets
    of the whole cache. A plan of more than :data:`DISTINCT_SETS` sets whose inputs would hold
    more than :data:`MAX_SETS_BYTES` together is flushed instead."""
    if n_sets > DISTINCT_SETS:
        from solbench.core.inputs import copyable, footprint, rotating_sets

        first = make_inputs(0)
        if n_sets * footprint(first) > MAX_SETS_BYTES:
            return [first, make_inputs(1)], True
        make = lambda i: first if i == 0 else make_inputs(i)  # noqa: E731 - the set just made is the first
        if copyable(first):
            return rotating_sets(make, n_sets, DISTINCT_SETS), flush
        return make_sets(n_sets, flush, make)
    return make_sets(n_sets, flush, make_inputs)


def make_sets(n_sets: int, flush: bool, make_set: Callable[[int], object],
              budget_s: float = MAX_SET_MAKING_S, clock: Callable[[], float] = time.perf_counter) -> tuple[list, bool]:
    """``([make_set(0), ...], flush)`` for a plan of :func:`plan_sets`. Many small sets (a decode
    call rotates thousands) are only affordable when one is cheap to make: the plan falls back to
    two sets and a flush once making them has taken ``budget_s``, or earlier, when the first
    :data:`SETS_TO_PROJECT` project more than three times that (a projection from a handful of
    sets is fooled by one slow allocation)."""
    sets: list = []
    started = clock()
    for i in range(n_sets):
        sets.append(make_set(i))
        if n_sets <= 2 * SETS_TO_PROJECT:
            continue
        spent = clock() - started
        if spent > budget_s or (i + 1 == SETS_TO_PROJECT and spent / (i + 1) * n_sets > 3 * budget_s):
            return sets[:2], True
    return sets, flush


class _Flusher:
    """Reads a buffer of twice the L2 so the next kernel starts cold. A read (not a memset) so
    that the L2 is left holding clean lines: no write-back is charged to the next kernel. One
    buffer: two alternating ones measured the same (docs/DECISIONS.md)."""

    def __init__(self, device, l2_bytes: int):
        import torch

        n = max(1, (2 * l2_bytes) // 4)
        self.buf = torch.ones(n, dtype=torch.float32, device=device)
        self.sink = torch.empty((), dtype=torch.float32, device=device)

    def __call__(self):
        import torch

        torch.sum(self.buf, dim=0, out=self.sink)


def _events(n):
    import torch

    return [torch.cuda.Event(enable_timing=True) for _ in range(n)]


def l2_bytes_of(device) -> int:
    import torch

    props = torch.cuda.get_device_properties(device)
    return int(getattr(props, "L2_cache_size", 0) or 50 * 2**20)


def time_gpu(call: Callable[[int], None], n_sets: int, *, flush: bool, mode: str = "graph",
             device=None, target_sample_us: float = 1000.0, samples: int = 30,
             max_calls_per_sample: int = 200, on_graph: Callable | None = None,
             min_samples: int = 5, max_total_us: float = 2e5, eager: str = "events",
             clock: Callable[[], float] = time.perf_counter, warm: bool = False,
             eager_flush: bool = False) -> Timing:
    """Time ``call(i)`` on the current CUDA stream (see the module docstring).

    ``on_graph(replay, k)``, when given, is called once after the graph-replay samples, while the
    timed graph (``k`` calls per replay) still exists: ``replay()`` runs it once more. The
    candidate evaluator uses it to audit the outputs of the timed calls themselves. It must not
    raise (a failure inside graph timing falls back to the eager timer).

    ``eager`` picks the eager timer, for ``mode="eager"`` and for that fallback: ``"events"``
    (CUDA events around each launch) or ``"device_sync"`` (wall time between device-wide
    synchronizations, read with ``clock``).

    ``eager_flush=True``: the call allocates its outputs, which rotate only under graph capture, so
    an eager timing of it (asked for, or the fallback) flushes before every call even where the
    plan rotates (see :func:`plan_sets`).

    ``warm=True`` (with ``flush=False``) only labels the result: the caller chose sets that stay in
    L2 on purpose (``run --cold-l2 warm``), so the timing says "warm", not "rotate"."""
    import torch

    if eager not in ("events", "device_sync"):
        raise ValueError(f"eager timer must be 'events' or 'device_sync', got {eager!r}")
    if warm and flush:
        raise ValueError("time_gpu: warm and flush contradict each other")

    def time_eager(n_samples):
        n_samples = int(max(10, min(n_samples, 2e6 / max(est, 1.0))))  # about 2 s at most
        eager_flusher = flusher
        if eager_flusher is None and eager_flush and not warm:
            eager_flusher = _Flusher(device, l2_bytes_of(device))
        if eager == "device_sync":
            return _time_eager_device_sync(call, n_sets, eager_flusher, n_samples, clock)
        return _time_eager(call, n_sets, eager_flusher, n_samples)

    device = device or torch.device("cuda")
    flusher = _Flusher(device, l2_bytes_of(device)) if flush else None
    # Warm-up (compilation, autotuning happen here): a few sets, not thousands of decode sets,
    # each of which the capture's own warm run below launches once more anyway.
    for i in range(min(n_sets, WARMUP_SETS)):
        call(i)
    torch.cuda.synchronize()
    est = _estimate_us(call, n_sets, reps=1)
    if est < 10_000:  # a slow call (a Python-loop baseline at 100 ms) needs no finer estimate
        est = _estimate_us(call, n_sets)
    if mode == "eager":
        return _labelled(time_eager(max(samples, 50)), warm)
    plan_notes = []
    if flusher is None and not warm and n_sets > DISTINCT_SETS and n_sets * est > MAX_ROTATION_REPLAY_US:
        # A slow call (a Python-loop baseline) on a plan of thousands of small sets: every replay
        # would hold all of them, seconds per sample; its own time dwarfs the flush's bias anyway.
        plan_notes.append(f"{n_sets} rotating sets would replay {n_sets * est / 1e3:.0f} ms per sample: "
                          "2 sets and a flush instead")
        n_sets, flusher = 2, _Flusher(device, l2_bytes_of(device))
    # A sample is about ``target_sample_us`` of GPU time, flushes included: sizing it by the call
    # alone would replay up to 200 flushes per sample for a 2 us kernel (10x the time for no
    # better estimate, since the flush-only graph is subtracted at the same length).
    per_call = est + (_estimate_us(lambda i: flusher(), 1) if flusher is not None else 0.0)
    k = calls_per_sample(n_sets, per_call, target_sample_us, max_calls_per_sample)
    # At most about ``max_total_us`` of replays: 30 samples of a 100 ms baseline would spend 3 s
    # per record measuring what 5 samples already pin down to well under its distance from SOL,
    # and a replay of thousands of rotated decode calls already averages over all of them.
    samples = int(max(min_samples, min(samples, max_total_us / max(k * per_call, 1.0))))
    try:
        timing = _time_graph(call, n_sets, flusher, k, samples, on_graph)
    except Exception as e:  # capture can fail for code that syncs with the host
        torch.cuda.synchronize()
        t = time_eager(max(samples, 50))
        t.notes.extend(plan_notes + [f"graph capture failed ({type(e).__name__}: {str(e)[:160]}); timed eagerly"])
        return _labelled(t, warm)
    timing.notes.extend(plan_notes)
    return _labelled(timing, warm)


def calls_per_sample(n_sets: int, per_call_us: float, target_sample_us: float, max_calls: int) -> int:
    """Calls in one replayed sample: about ``target_sample_us`` of work, at most ``max_calls``,
    but every set at least once (a replay of fewer calls than sets would reuse its first sets
    while they are still in L2, and never touch the rest)."""
    return int(max(1, n_sets, min(max_calls, math.ceil(target_sample_us / max(per_call_us, 1.0)))))


def _labelled(t: Timing, warm: bool) -> Timing:
    if warm:
        t.cold_l2 = "warm"
    return t


def _estimate_us(call, n_sets, reps: int = 3) -> float:
    """Device time (us) of one call: the stream is held while the host queues the calls, so a
    call whose Python launch path is slower than its kernel is not estimated at its host cost
    (that would put too few calls in a replay, which then waits for the host to submit it)."""
    start, end = _events(2)
    _hold_stream(_host_us_per_iteration(call, n_sets, None, reps=1) * reps)
    start.record()
    for i in range(reps):
        call(i % n_sets)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / reps


def _capture(body, warm_body=None):
    """A CUDA graph of ``body()``, captured after ``warm_body()`` (default: ``body`` itself) ran
    once on the capture stream, as torch's graph docs ask.

    A capture that fails (a host sync or an error inside ``body``, work left unjoined on a side
    stream) is cleaned up before this raises: the capture is ended, the caller's current stream is
    restored and the allocator stops routing to the graph's pool, so the eager timing that falls
    back runs on a clean stream. (``torch.cuda.graph`` leaves all three behind when its
    ``capture_end`` raises.)"""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        (warm_body or body)()
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    g = torch.cuda.CUDAGraph()
    pool = torch.cuda.graph_pool_handle()
    with torch.cuda.stream(stream):  # left however the capture ends
        g.capture_begin(pool=pool)
        ended = False
        try:
            body()
            g.capture_end()
            ended = True
        finally:
            if not ended:
                _abandon_capture(g, pool)
    torch.cuda.synchronize()
    return g


def _abandon_capture(g, pool) -> None:
    """After a failed capture, on its stream: end the capture if the stream still captures (every
    later call on it would fail), then end the allocator's routing of new blocks to the graph's
    pool, which ``capture_end`` skips when it raises (the allocator would think a capture is
    under way for good and stop recycling blocks used across streams). Best effort: the
    allocator's hooks are private and named differently across torch versions."""
    import torch

    if torch.cuda.is_current_stream_capturing():
        try:
            g.capture_end()
            return  # ended cleanly after all (an exception in Python, not in CUDA): torch tidied up
        except Exception:  # noqa: BLE001 - an invalidated capture raises as it ends
            pass
    device = torch.cuda.current_device()
    for name in ("_cuda_endAllocateToPool", "_cuda_endAllocateCurrentStreamToPool"):
        end = getattr(torch._C, name, None)
        if end is not None:
            try:
                end(device, tuple(pool))
            except Exception:  # noqa: BLE001 - already ended by capture_end
                pass
            break


def _replay_samples(graphs, samples: int) -> list[list[float]]:
    """Replay times (us) of each graph, ``samples`` each, the graphs replayed in alternation
    (g0, g1, g0, g1, ...): slow drift (clocks, temperature) then reaches every graph alike, so a
    difference taken sample by sample cancels it."""
    import torch

    for g in graphs:  # the first replay uploads the graph
        g.replay()
    torch.cuda.synchronize()
    host_us = 0.0  # the host's time to submit one replay and its event, the slowest graph's
    probe = _events(1)[0]
    for g in graphs:
        t0 = time.perf_counter()
        g.replay()
        probe.record()
        host_us = max(host_us, (time.perf_counter() - t0) * 1e6)
    torch.cuda.synchronize()
    n = len(graphs)
    evs = _events(samples * n + 1)
    # Every replay queued before the device starts: none waits for the host to submit it.
    _hold_stream(host_us * samples * n)
    evs[0].record()
    for i in range(samples):
        for j, g in enumerate(graphs):
            g.replay()
            evs[i * n + j + 1].record()
    torch.cuda.synchronize()
    times = [evs[m].elapsed_time(evs[m + 1]) * 1e3 for m in range(samples * n)]
    return [times[j::n] for j in range(n)]


def _time_graph(call, n_sets, flusher, k, samples, on_graph=None) -> Timing:
    def body(calls=k):
        kept = []  # each captured call's outputs stay alive: distinct buffers (module docstring)
        for j in range(calls):
            if flusher is not None:
                flusher()
            kept.append(call(j % n_sets))

    # The warm run before the capture: a few calls, not thousands of decode sets (every set is
    # alike: the same shapes, strides and alignment, so nothing compiles on a later one).
    g = _capture(body, warm_body=lambda: body(min(k, WARMUP_SETS)))
    notes = []
    if flusher is None:
        raw = [t / k for t in _replay_samples([g], samples)[0]]
    else:
        def flush_only():
            for _ in range(k):
                flusher()

        # The flushes' own time comes off each sample of flush + call pairs, taken from the
        # flush-only replay right after it (interleaved, so drift does not bias the subtraction).
        gf = _capture(flush_only)
        pairs, flushes = _replay_samples([g, gf], samples)
        raw = [max((tp - tf) / k, 0.0) for tp, tf in zip(pairs, flushes)]
        notes.append(f"flush {statistics.median(flushes) / k:.2f} us/call subtracted (interleaved replays)")
        del gf
    if on_graph is not None:
        import torch

        on_graph(g.replay, k)
        torch.cuda.synchronize()
    del g
    med, p20, p80 = quantiles(raw)
    return Timing(med, p20, p80, "graph", n_sets, k, len(raw), "flush" if flusher else "rotate", notes)


def _time_eager(call, n_sets, flusher, samples) -> Timing:
    import torch

    starts, ends = _events(samples), _events(samples)
    _hold_stream(_host_us_per_iteration(call, n_sets, flusher) * samples)
    for i in range(samples):
        if flusher is not None:
            flusher()
        starts[i].record()
        call(i % n_sets)
        ends[i].record()
    torch.cuda.synchronize()
    raw = [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)]
    med, p20, p80 = quantiles(raw)
    return Timing(med, p20, p80, "eager", n_sets, 1, len(raw), "flush" if flusher else "rotate")


def _host_us_per_iteration(call, n_sets, flusher, reps: int = 5) -> float:
    """Host time (us) to queue one eager sample (flush, two events, the call), the slowest of a
    few: the device is synchronized after each, so no queue back-pressure is included."""
    import torch

    worst = 0.0
    ev = _events(1)[0]
    for i in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        if flusher is not None:
            flusher()
        ev.record()
        call(i % n_sets)
        ev.record()
        worst = max(worst, (time.perf_counter() - t0) * 1e6)
    torch.cuda.synchronize()
    return worst


def _hold_stream(host_us: float) -> None:
    """Spin the current stream on the device for about twice ``host_us`` (at most 0.5 s), so that
    the work queued meanwhile runs back to back. Cycles are counted at 2 GHz, above any data-center
    GPU's clock: at a lower clock the spin only lasts longer."""
    import torch

    sleep = getattr(torch.cuda, "_sleep", None)  # private API: without it, no hold (host-bound again)
    if sleep is not None:
        sleep(int(min(2.0 * host_us + 100.0, 5e5) * 2e3))


def _time_eager_device_sync(call, n_sets, flusher, samples, clock) -> Timing:
    import torch

    # The cost of a synchronize / clock pair with nothing to wait for, subtracted from each sample.
    empty = []
    for _ in range(20):
        torch.cuda.synchronize()
        t0 = clock()
        torch.cuda.synchronize()
        empty.append((clock() - t0) * 1e6)
    overhead = statistics.median(empty)
    raw = []
    for i in range(samples):
        if flusher is not None:
            flusher()
        torch.cuda.synchronize()  # every stream of the device, the flush included
        t0 = clock()
        call(i % n_sets)
        torch.cuda.synchronize()
        raw.append(max((clock() - t0) * 1e6 - overhead, 0.0))
    med, p20, p80 = quantiles(raw)
    return Timing(med, p20, p80, "eager_device_sync", n_sets, 1, len(raw), "flush" if flusher else "rotate",
                  notes=[f"wall time between device-wide synchronizations, less {overhead:.1f} us of "
                         "synchronization cost: includes launch overhead"])


def time_cpu(call: Callable[[int], None], n_sets: int, *, budget_s: float = 0.5,
             min_samples: int = 5, max_samples: int = 200) -> Timing:
    call(0)  # warm-up
    raw: list[float] = []
    t_end = time.perf_counter() + budget_s
    i = 0
    while len(raw) < max_samples and (len(raw) < min_samples or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        call(i % n_sets)
        raw.append((time.perf_counter() - t0) * 1e6)
        i += 1
    med, p20, p80 = quantiles(raw)
    return Timing(med, p20, p80, "cpu", n_sets, 1, len(raw), "")
