"""PyTorch profiler Chrome/Kineto trace JSON, read streaming.

A trace of a long run is gigabytes of JSON, almost all of it the ``traceEvents`` array. The file is
decoded one event at a time (``json.JSONDecoder.raw_decode`` over a sliding text buffer), and only
compact columns are kept: per kernel its name id, start, duration, stream, correlation and External
id; per CPU operator its name id, thread, interval and External id; per runtime launch its thread,
start and External id. Memory grows with the number of launches, never with the file size.

Attribution of a kernel to the CPU operator that launched it, in order:
1. the kernel's ``External id`` names a ``cpu_op`` with that id;
2. its ``correlation`` names a ``cuda_runtime``/``cuda_driver`` launch whose ``External id`` names a
   ``cpu_op``;
3. that launch lies inside a ``cpu_op`` on the same thread (innermost one).
Kernels replayed from a CUDA graph (``cudaGraphLaunch``, or a ``graph`` id in their args) are
flagged: the operator around the replay is the whole model step, so they are classified by name.
"""
from __future__ import annotations

import bisect
import gzip
import io
import json
import re
import zlib
from array import array
from pathlib import Path

from solbench.profiles.model import Kernel, Profile, ProfileError, ShapeCall

_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\r\n]*")
_CHUNK = 1 << 20
_MAX_EVENT_CHARS = 16 << 20  # one event larger than this is a broken file, not a slow one

_DEVICE_CATS = {"kernel", "gpu_memcpy", "gpu_memset"}
_CPU_CATS = {"cpu_op", "operator"}                       # "Operator": PyTorch 1.8-era traces
_LAUNCH_CATS = {"cuda_runtime", "cuda_driver", "runtime"}


class _Reader:
    """A JSON value stream over a text file, keeping only a window of it in memory."""

    def __init__(self, f, path):
        self.f, self.path = f, path
        self.buf, self.pos, self.eof, self.line_base = "", 0, False, 0

    def fill(self) -> None:
        data = self.f.read(_CHUNK)
        if not data:
            self.eof = True
            return
        self.line_base += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos:] + data
        self.pos = 0

    def lineno(self, pos: int | None = None) -> int:
        return self.line_base + self.buf.count("\n", 0, self.pos if pos is None else pos) + 1

    def error(self, msg: str, pos: int | None = None) -> ProfileError:
        return ProfileError(self.path, msg, self.lineno(pos))

    def peek(self) -> str:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if self.eof:
                return ""
            self.fill()

    def expect(self, ch: str, what: str) -> None:
        c = self.peek()
        if c != ch:
            raise self.error(f"expected {ch!r} {what}, found " + (repr(c) if c else "the end of the file"))
        self.pos += 1

    def value(self):
        if not self.peek():
            raise self.error("unexpected end of the file (truncated trace?)")
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
                if end < len(self.buf) or self.eof or not isinstance(obj, (int, float)):
                    self.pos = end
                    return obj
                # A number that ends at the buffer's end may continue in the next chunk.
            except json.JSONDecodeError as e:
                if self.eof or len(self.buf) - self.pos > _MAX_EVENT_CHARS:
                    raise self.error(f"invalid JSON: {e.msg}" + (" (truncated trace?)" if self.eof else ""),
                                     e.pos) from None
            self.fill()


def _open_text(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, "r", encoding="utf-8")


class _IntMap:
    """int -> int for ids that profilers hand out sequentially (External id, CUPTI correlation): a flat
    array indexed by id, 8 bytes a slot, with a dict for ids far outside the dense range."""

    def __init__(self):
        self.slots = array("q")
        self.sparse: dict[int, int] = {}

    def __setitem__(self, key: int, value: int) -> None:
        n = len(self.slots)
        if 0 <= key < n:
            self.slots[key] = value
        elif n <= key < 2 * n + (1 << 16):
            self.slots.extend(array("q", [-1]) * (key + 1 - n + (n >> 3)))
            self.slots[key] = value
        else:
            self.sparse[key] = value

    def get(self, key: int, default: int = -1) -> int:
        if 0 <= key < len(self.slots):
            v = self.slots[key]
            return default if v < 0 else v
        return self.sparse.get(key, default)


def _int(v, default: int = -1) -> int:
    return default if v is None else int(v)


class _Columns:
    def __init__(self, collect_shapes: bool):
        self.names: dict[str, int] = {}
        self.name_list: list[str] = []
        self.threads: dict[tuple, int] = {}
        # kernels
        self.k_name, self.k_ts, self.k_dur = array("i"), array("d"), array("d")
        self.k_stream, self.k_corr, self.k_ext, self.k_graph = array("q"), array("q"), array("q"), array("b")
        # CPU operators
        self.c_name, self.c_tid, self.c_ts, self.c_end, self.c_ext = (array("i"), array("i"), array("d"),
                                                                      array("d"), array("q"))
        self.ext_to_op = _IntMap()
        self.collect_shapes = collect_shapes
        self.found = False
        self.op_shapes: dict[int, tuple] = {}
        # runtime launches, by correlation id: thread, start, External id, is a graph launch
        self.launch_of = _IntMap()
        self.r_tid, self.r_ts, self.r_ext, self.r_graph = array("i"), array("d"), array("q"), array("b")

    def intern(self, s: str) -> int:
        i = self.names.get(s)
        if i is None:
            i = self.names[s] = len(self.name_list)
            self.name_list.append(s)
        return i

    def add(self, ev: dict) -> None:
        if ev.get("ph") != "X":
            return
        cat = str(ev.get("cat", "")).lower()
        args = ev.get("args") or {}
        if cat in _DEVICE_CATS:
            self.k_name.append(self.intern(str(ev.get("name", "?"))))
            self.k_ts.append(float(ev.get("ts", 0.0)))
            self.k_dur.append(float(ev.get("dur", 0.0)))
            self.k_stream.append(_int(args.get("stream"), 0))
            self.k_corr.append(_int(args.get("correlation")))
            self.k_ext.append(_int(args.get("External id")))
            # Kineto tags kernels launched from a captured graph with their graph (node) id.
            g = args.get("graph node id", args.get("graph id"))
            self.k_graph.append(1 if g not in (None, 0, -1) else 0)
        elif cat in _CPU_CATS:
            ext = _int(args.get("External id"))
            idx = len(self.c_name)
            ts = float(ev.get("ts", 0.0))
            self.c_name.append(self.intern(str(ev.get("name", "?"))))
            self.c_tid.append(self._thread(ev))
            self.c_ts.append(ts)
            self.c_end.append(ts + float(ev.get("dur", 0.0)))
            self.c_ext.append(ext)
            if ext >= 0:
                self.ext_to_op[ext] = idx
            if self.collect_shapes and "Input Dims" in args:
                self.op_shapes[idx] = (args.get("Input Dims"), args.get("Input type"), args.get("Concrete Inputs"))
        elif cat in _LAUNCH_CATS:
            corr = args.get("correlation")
            if corr is not None:
                self.launch_of[int(corr)] = len(self.r_tid)
                self.r_tid.append(self._thread(ev))
                self.r_ts.append(float(ev.get("ts", 0.0)))
                self.r_ext.append(_int(args.get("External id")))
                self.r_graph.append(1 if "GraphLaunch" in str(ev.get("name", "")) else 0)

    def _thread(self, ev) -> int:
        key = (ev.get("pid"), ev.get("tid"))
        t = self.threads.get(key)
        if t is None:
            t = self.threads[key] = len(self.threads)
        return t


class _Containment:
    """Innermost CPU operator on a thread that contains a time point."""

    def __init__(self, cols: _Columns):
        by_thread: dict[int, list[int]] = {}
        for i, t in enumerate(cols.c_tid):
            by_thread.setdefault(t, []).append(i)
        self.threads = {}
        for t, idx in by_thread.items():
            # Outer operators first at equal start, so a child follows its parent.
            idx.sort(key=lambda i: (cols.c_ts[i], -cols.c_end[i]))
            starts = [cols.c_ts[i] for i in idx]
            parent, stack = [], []
            for k, i in enumerate(idx):
                while stack and cols.c_end[idx[stack[-1]]] < cols.c_ts[i]:
                    stack.pop()
                parent.append(stack[-1] if stack else -1)
                stack.append(k)
            self.threads[t] = (idx, starts, parent)
        self.cols = cols

    def find(self, tid: int, ts: float) -> int:
        entry = self.threads.get(tid)
        if entry is None:
            return -1
        idx, starts, parent = entry
        k = bisect.bisect_right(starts, ts) - 1
        while k >= 0 and self.cols.c_end[idx[k]] < ts:
            k = parent[k]
        return idx[k] if k >= 0 else -1


class _Kernels:
    """The resolved kernels, materialized one at a time in (stream, start) order."""

    def __init__(self, cols: _Columns, order: list[int], op_of: array, graph: array):
        self.cols, self.order, self.op_of, self.graph = cols, order, op_of, graph

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        c, names = self.cols, self.cols.name_list
        for i in self.order:
            op = self.op_of[i]
            yield Kernel(name=names[c.k_name[i]], total_us=c.k_dur[i], count=1, stream=c.k_stream[i],
                         start_us=c.k_ts[i], cpu_op=names[c.c_name[op]] if op >= 0 else None,
                         launch=op if op >= 0 else None, graph=bool(self.graph[i]))


def read_chrome_trace(path: str | Path, collect_shapes: bool = False) -> Profile:
    path = Path(path)
    cols = _Columns(collect_shapes)
    try:
        f = _open_text(path)
    except OSError as e:
        raise ProfileError(path, f"cannot open: {e}") from None
    with f:
        r = _Reader(f, path)
        try:
            _parse(r, cols)
        except UnicodeDecodeError as e:
            raise ProfileError(path, f"not UTF-8 text: {e}") from None
        except (EOFError, OSError, zlib.error) as e:
            raise ProfileError(path, f"cannot decompress / read (truncated gzip?): {e}") from None
    if not cols.found:
        raise ProfileError(path, "no 'traceEvents' array in the trace")
    if not len(cols.k_name):
        raise ProfileError(path, "the trace has no kernel events (cat 'kernel'); was the profiler run with "
                                 "ProfilerActivity.CUDA?")
    return _resolve(path, cols)


def _parse(r: _Reader, cols: _Columns) -> None:
    first = r.peek()
    if first == "":
        raise r.error("empty file")
    found = False
    if first == "[":  # the "JSON Array Format": the file is the event list itself
        _events(r, cols)
        found = True
    elif first == "{":
        r.pos += 1
        while True:
            c = r.peek()
            if c == "}":
                r.pos += 1
                break
            if c != '"':
                raise r.error("expected a key in the top-level object, found "
                              + (repr(c) if c else "the end of the file (truncated trace?)"))
            key = r.value()
            r.expect(":", f"after the key {key!r}")
            if key == "traceEvents":
                _events(r, cols)
                found = True
            else:
                r.value()
            c = r.peek()
            if c == ",":
                r.pos += 1
            elif c != "}":
                raise r.error("expected ',' or '}' in the top-level object, found "
                              + (repr(c) if c else "the end of the file (truncated trace?)"))
    else:
        raise r.error(f"not a Chrome trace: expected '{{' or '[', found {first!r}")
    cols.found = found


_NEXT_EVENT = re.compile(r"[ \t\r\n]*,[ \t\r\n]*(?=\{)")
_SCAN = _DECODER.scan_once  # the C scanner behind raw_decode, without its Python wrapper


def _events(r: _Reader, cols: _Columns) -> None:
    r.expect("[", "to open 'traceEvents'")
    if r.peek() == "]":
        r.pos += 1
        return
    add = cols.add
    while True:
        start = r.pos
        # Fast path: a complete object in the buffer followed by ", {". Anything else (the end of
        # the buffer, the end of the array, a malformed event) goes through the careful path.
        ev = None
        if r.buf.startswith("{", start):
            try:
                ev, end = _SCAN(r.buf, start)
            except (StopIteration, json.JSONDecodeError):
                ev = None
            else:
                m = _NEXT_EVENT.match(r.buf, end)
                if m is None:
                    r.pos = end
                else:
                    r.pos = m.end()
        if ev is None:
            r.pos = start
            ev = r.value()
            m = None
        if not isinstance(ev, dict):
            raise r.error(f"trace event is a {type(ev).__name__}, not an object", start)
        try:
            add(ev)
        except (TypeError, ValueError) as e:
            raise r.error(f"bad field in trace event: {e}", start) from None
        if m is not None:
            continue
        c = r.peek()
        if c == ",":
            r.pos += 1
            if r.peek() == "]":  # a trailing comma, as some writers leave it
                r.pos += 1
                return
        elif c == "]":
            r.pos += 1
            return
        else:
            raise r.error("expected ',' or ']' after a trace event, found "
                          + (repr(c) if c else "the end of the file (truncated trace?)"))


def _stream_order(cols: _Columns) -> array:
    """Kernel indices sorted by (stream, start), without a key tuple per kernel: each stream's
    kernels are usually already in time order in the file, and only unsorted streams are sorted."""
    by_stream: dict[int, array] = {}
    for i, s in enumerate(cols.k_stream):
        a = by_stream.get(s)
        if a is None:
            a = by_stream[s] = array("q")
        a.append(i)
    order = array("q")
    ts = cols.k_ts
    for s in sorted(by_stream):
        a = by_stream.pop(s)
        if any(ts[a[j]] > ts[a[j + 1]] for j in range(len(a) - 1)):
            a = array("q", sorted(a, key=ts.__getitem__))
        order.extend(a)
    return order


def _resolve(path: Path, cols: _Columns) -> Profile:
    n = len(cols.k_name)
    op_of, graph = array("q", [-1]) * n, array("b", cols.k_graph)
    contain = None
    unattributed = 0
    for i in range(n):
        r = cols.launch_of.get(cols.k_corr[i]) if cols.k_corr[i] >= 0 else -1
        if r >= 0 and cols.r_graph[r]:
            graph[i] = 1
        if graph[i]:
            continue
        op = cols.ext_to_op.get(cols.k_ext[i]) if cols.k_ext[i] >= 0 else -1
        if op < 0 and r >= 0:
            op = cols.ext_to_op.get(cols.r_ext[r]) if cols.r_ext[r] >= 0 else -1
            if op < 0:
                if contain is None:
                    contain = _Containment(cols)
                op = contain.find(cols.r_tid[r], cols.r_ts[r])
        if op < 0:
            unattributed += 1
        op_of[i] = op
    order = _stream_order(cols)
    prof = Profile(path=str(path), format="chrome_trace", ordered=True)
    prof.kernels = _Kernels(cols, order, op_of, graph)  # type: ignore[assignment]
    n_graph = sum(graph)
    if n_graph:
        prof.notes.append(f"{n_graph} of {n} kernels were replayed from CUDA graphs: classified by name only")
    if unattributed:
        prof.notes.append(f"{unattributed} of {n} kernels have no launching CPU operator in the trace")
    if cols.collect_shapes and cols.op_shapes:
        per_op: dict[int, list] = {}
        for i in range(n):
            op = op_of[i]
            if op >= 0 and op in cols.op_shapes:
                e = per_op.setdefault(op, [[], 0.0])
                e[0].append(cols.name_list[cols.k_name[i]])
                e[1] += cols.k_dur[i]
        for op, (knames, dur) in per_op.items():
            dims, types, concrete = cols.op_shapes[op]
            prof.shape_calls.append(ShapeCall(cpu_op=cols.name_list[cols.c_name[op]], input_dims=dims or [],
                                              input_types=types or [], concrete=concrete or [],
                                              kernel_names=knames, device_us=dur))
    return prof
