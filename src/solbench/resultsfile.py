"""A JSONL results file that one run appends to and that a crash cannot corrupt.

* Every append starts on a new line: a complete last record without its final newline gets one.
* An unfinished last line (a run killed mid-write) is moved aside to ``<file>.partial`` with a
  message, and the run goes on from the complete records before it.
* Each record is handed to the kernel with one unbuffered write as soon as it is made, so a
  killed process loses at most the record it was writing, never an earlier one.
* One run at a time: an exclusive lock on ``<file>.lock`` (kept beside the file; the lock, not
  the file, is what counts) refuses a second run appending to the same file.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

try:  # POSIX; elsewhere runs are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


class ResultsLocked(RuntimeError):
    """Another process holds the results file's lock."""


def json_safe(x):
    """``x`` with non-finite floats as None (JSON has no NaN), dict keys as strings."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def encode_record(rec) -> bytes:
    return (json.dumps(json_safe(rec)) + "\n").encode("utf-8")


def _is_record(text: bytes) -> bool:
    try:
        rec = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(rec, dict) and "op" in rec and "impl" in rec


def repair_tail(path: str | os.PathLike) -> str | None:
    """Make ``path`` end on a complete line. Returns what was done (a message), or None.

    The text after the last newline is either a complete record (a newline is added) or what a
    killed writer left (moved aside to ``<path>.partial``, appended there so that nothing is
    ever overwritten, and cut from the file)."""
    p = Path(path)
    with open(p, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return None
        # Find the start of the last line, reading backwards in blocks.
        start, block = size, 1 << 16
        while start > 0:
            lo = max(0, start - block)
            f.seek(lo)
            chunk = f.read(start - lo)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                start = lo + nl + 1
                break
            start = lo
        if start == size:
            return None
        f.seek(start)
        tail = f.read()
        if _is_record(tail.strip()):
            f.seek(0, os.SEEK_END)
            f.write(b"\n")
            return f"{p}: the last record had no final newline; added one"
        partial = Path(str(p) + ".partial")
        with open(partial, "ab") as side:
            side.write(tail + b"\n")
            side.flush()
            os.fsync(side.fileno())
        f.truncate(start)
    return (f"{p}: its last line was cut off ({len(tail)} bytes, a run killed mid-write?); moved it to "
            f"{partial} and resuming from the {'complete records before it' if start else 'empty file'}")


class ResultsFile:
    """``with ResultsFile(path) as rf:`` locks ``path`` against other runs and repairs its tail
    (``rf.notes`` says what was repaired); then read and rewrite it freely, and
    ``rf.append(record)`` once :meth:`open_append` has been called."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.notes: list[str] = []
        self._lock = None
        self._fd: int | None = None

    def __enter__(self) -> "ResultsFile":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def acquire(self) -> None:
        lock_path = Path(str(self.path) + ".lock")
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(lock_path, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._lock.seek(0)
                holder = self._lock.read().strip() or "another process"
                self._lock.close()
                self._lock = None
                raise ResultsLocked(f"{self.path} is being written by {holder}; wait for that run to finish, "
                                    "or write to another --out file") from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"process {os.getpid()}\n")
        self._lock.flush()
        if self.path.exists():
            note = repair_tail(self.path)
            if note:
                self.notes.append(note)

    def open_append(self) -> None:
        """Open for appending (after any rewrite of the file, which replaces it)."""
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, rec) -> None:
        data = encode_record(rec)
        view = memoryview(data)
        while view:  # a regular file's write may in principle be partial
            n = os.write(self._fd, view)
            view = view[n:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock is not None:
            if fcntl is not None:
                fcntl.flock(self._lock.fileno(), fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
