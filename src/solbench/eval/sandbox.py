"""The judge's handle on the candidate's process: start it contained, talk to it with deadlines,
end it and everything it started.

A worker is started in a new session (and, where the system allows, a new PID namespace: see
:mod:`solbench.eval.contain`) with its stdout and stderr going to a log file the judge only tails,
commands on its stdin and replies on a pipe of their own. A stage (import, the check of one shape,
the timing of one shape) has one deadline, its timeout, shared by all of its requests; a reply that
does not come in time, a worker that dies or closes its channel, a resident set over the cap or a
frame that does not parse ends the worker (:class:`WorkerGone` says how). :meth:`Worker.close`
names the processes the candidate left outside its session and ends every process it started.
"""
from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import time

from solbench.eval import contain, wire

DEFAULT_TIMEOUTS = {"import": 120.0, "check": 300.0, "perf": 300.0}
POLL_S = 0.25
#: A cleanup request (``drop``) after a stage's verdict gets at least this long, however little of the
#: stage's time is left.
CLEANUP_S = 30.0
#: How long a worker that closed its channel gets to exit before it is ended.
EXIT_WAIT_S = 5.0
#: Workers alive in this process (their launcher pids): one evaluation's sweep leaves another's be.
LIVE: set[int] = set()
PIPE_BYTES = 1 << 20


class WorkerGone(Exception):
    """The worker ended or was ended: ``kind`` is crash | timeout | memory | context | protocol."""

    def __init__(self, kind: str, detail: str, stderr: str = ""):
        super().__init__(detail)
        self.kind, self.detail, self.stderr = kind, detail, stderr


def _tail(path: str, n: int = 1500) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _describe_exit(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exited with code {rc}"


def _rss_bytes(pids) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            pass
    return total


class Worker:
    """One worker process. ``start`` is the first frame it reads (device, memory cap, scratch)."""

    def __init__(self, start: dict, scratch: str, env: dict, timeouts: dict, rss_cap: int | None):
        contain.set_subreaper()
        self.timeouts = {**DEFAULT_TIMEOUTS, **(timeouts or {})}
        self.rss_cap = rss_cap
        self.me = os.getpid()
        self.before = set(contain.descendants(self.me))
        fd, self.log = tempfile.mkstemp(prefix="solbench-eval-", suffix=".log")
        cmd_r, self.cmd_w = os.pipe()
        self.reply_r, reply_w = os.pipe()
        os.set_blocking(self.cmd_w, False)
        for f in (self.cmd_w, self.reply_r):
            try:  # bigger pipes: fewer wake-ups for input and output bytes (best effort)
                import fcntl

                fcntl.fcntl(f, 1031, PIPE_BYTES)  # F_SETPIPE_SZ
            except OSError:
                pass
        env = {**env, "SOLBENCH_EVAL_REPLY_FD": str(reply_w)}
        self.namespace = bool(contain.namespace_prefix())
        argv = contain.namespace_prefix() + [sys.executable, "-m", "solbench.eval.worker"]
        try:
            self.proc = subprocess.Popen(argv, stdin=cmd_r, stdout=fd, stderr=fd, pass_fds=(reply_w,),
                                         start_new_session=True, cwd=scratch, env=env)
        finally:
            for f in (fd, cmd_r, reply_w):
                os.close(f)
        self.stage = "start"
        self.stage_deadline: float | None = None
        self.waiting = "the worker to start"
        self.last_cmd = "start"
        self._next_rss = 0.0
        self.stage_pids = {self.proc.pid}
        self.ended: WorkerGone | None = None
        self.begin("import")  # the start frame and the import request share the import stage's deadline
        self.ready = self.request(start, stage="import", max_bytes=0, is_start=True)
        # The stage's own processes (unshare and the worker inside it); anything else is the candidate's.
        self.stage_pids = {self.proc.pid, *self._tree()}
        LIVE.add(self.proc.pid)

    # ---- deadlines ----
    def begin(self, stage: str) -> None:
        """Start ``stage``: every request until the next :meth:`begin` shares one deadline, the
        stage's timeout. (A deadline per request would let a stage of many requests, each just
        under the limit, run for many times its limit.)"""
        self.stage = stage
        self.stage_deadline = (time.monotonic() + float(self.timeouts.get(stage, 300.0))
                               + (30.0 if stage == "import" else 0.0))

    def _deadline(self, stage: str, cleanup: bool = False) -> float:
        if stage != self.stage or self.stage_deadline is None:
            self.begin(stage)
        assert self.stage_deadline is not None
        return max(self.stage_deadline, time.monotonic() + CLEANUP_S) if cleanup else self.stage_deadline

    def _tree(self) -> dict:
        return contain.descendants(self.proc.pid)

    def _watch(self, deadline: float) -> None:
        """Checked on every step of a transfer, not only when the pipe is idle: a worker that
        trickles a byte at a time must not keep the judge reading past the deadline."""
        now = time.monotonic()
        if now > deadline:
            limit = self.timeouts.get(self.stage, 0)
            self._fail("timeout", f"timed out: {self.stage} stage ran past its {limit:g} s limit "
                                  f"(waiting for {self.waiting})")
        if self.rss_cap and now >= self._next_rss:  # a walk of /proc: at most every POLL_S
            self._next_rss = now + POLL_S
            if _rss_bytes([self.proc.pid, *self._tree()]) > self.rss_cap:
                self._fail("memory", f"memory cap: resident set above {self.rss_cap / 2**30:.1f} GiB during "
                                     f"{self.stage}")

    def _fail(self, kind: str, detail: str):
        self.kill()
        self.ended = WorkerGone(kind, detail, _tail(self.log))
        raise self.ended

    def _died(self, error: str | None = None):
        # Also reached when the channel closed (EOF, broken pipe) while the worker may still live:
        # the wait is bounded like every other.
        try:
            rc = self.proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self._fail("crash", f"the worker closed its channel to the judge during {self.stage} (waiting for "
                                f"{self.waiting}) and did not exit; ended")
        from solbench.eval.worker import EXIT_CONTEXT_LOST

        if rc == EXIT_CONTEXT_LOST:
            self._fail("context", f"raised {error}; CUDA context lost" if error else "CUDA error; context lost")
        self._fail("crash", f"worker {_describe_exit(rc)} during {self.stage}")

    def _read_exact(self, deadline: float):
        def read(fd: int, n: int) -> bytearray:
            buf = bytearray(n)
            view = memoryview(buf)
            got = 0
            while got < n:
                r, _, _ = select.select([fd], [], [], POLL_S)
                self._watch(deadline)
                if not r:
                    if self.proc.poll() is not None:
                        self._died()
                    continue
                k = os.readv(fd, [view[got:]])
                if k == 0:
                    self._died()
                got += k
            return buf

        return read

    def _write(self, data, deadline: float) -> None:
        view = memoryview(data).cast("B")
        while view.nbytes:
            _, w, _ = select.select([], [self.cmd_w], [], POLL_S)
            self._watch(deadline)
            if not w:
                if self.proc.poll() is not None:
                    self._died()
                continue
            try:
                n = os.write(self.cmd_w, view[:PIPE_BYTES])
            except BlockingIOError:
                continue
            except BrokenPipeError:
                self._died()
            view = view[n:]

    # ---- requests ----
    def request(self, header: dict, bufs: list = (), *, stage: str, max_bytes: int,
                is_start: bool = False, cleanup: bool = False) -> tuple[dict, list] | dict:
        """Send one command and return ``(reply, buffers)`` (the bare reply for the start frame).
        A reply with ``ok: false`` is returned as it is; a dead, late or garbled worker raises.
        The deadline is the stage's (:meth:`begin`); a ``cleanup`` request gets at least
        :data:`CLEANUP_S`."""
        if self.ended:
            raise self.ended
        deadline = self._deadline(stage, cleanup)
        cmd = self.last_cmd = header.get("cmd", "start")
        # A fresh token per command, echoed in its reply: a frame written ahead of time by anything
        # else on the channel answers no command.
        self.seq = secrets.token_hex(8)
        header = {**header, "seq": self.seq}
        self.waiting = f"the worker to take the {cmd!r} command"
        self._write(_frame(header, bufs), deadline)
        for b in bufs:
            self._write(b, deadline)
        self.waiting = f"the worker's reply to {cmd!r}"
        try:
            reply, rbufs = wire.read_frame(self.reply_r, max_bytes + (1 << 20), read_exact=self._read_exact(deadline))
        except wire.WireError as e:
            self._fail("protocol", f"integrity: protocol: the worker's reply to {header.get('cmd', 'start')} is not "
                                   f"a frame of the evaluator's wire format ({e}); something else wrote on the "
                                   "evaluator's channel")
        self._check_seq(reply, header.get("cmd", "start"))
        if reply.get("fatal"):
            self._died(str(reply.get("error") or "")[:400])
        return reply if is_start else (reply, rbufs)

    def _check_seq(self, reply: dict, cmd: str) -> None:
        if reply.get("seq") != self.seq:
            self._fail("protocol", f"integrity: protocol: a frame on the evaluator's channel does not answer its "
                                   f"{cmd!r} command (forged, or out of turn)")

    def reply(self, *, stage: str, max_bytes: int) -> tuple[dict, list]:
        """A further reply to the last command (commands that answer with two frames)."""
        if self.ended:
            raise self.ended
        deadline = self._deadline(stage)
        self.waiting = f"the worker's further reply to {self.last_cmd!r}"
        try:
            reply, bufs = wire.read_frame(self.reply_r, max_bytes + (1 << 20), read_exact=self._read_exact(deadline))
        except wire.WireError as e:
            self._fail("protocol", f"integrity: protocol: a reply is not a frame of the evaluator's wire format ({e})")
        self._check_seq(reply, "pass")
        return reply, bufs

    # ---- ending ----
    def kill(self) -> None:
        for target in (lambda: os.killpg(self.proc.pid, signal.SIGKILL), lambda: self.proc.kill()):
            try:
                target()
            except (ProcessLookupError, PermissionError, OSError):
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> list[str]:
        """End the worker and everything it started. Returns the processes that outlived it or
        left its session, named (empty when there were none)."""
        # Looked at before the worker is told to end: in a PID namespace its end ends them all.
        tree = {p: st for p, st in self._tree().items() if p not in self.stage_pids}
        found = {p: contain.describe(p, st) for p, st in tree.items() if st[2] != self.proc.pid}
        if self.proc.poll() is None and not self.ended:
            try:
                self._write(_frame({"cmd": "end"}), time.monotonic() + 2.0)
            except (WorkerGone, OSError):
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        # Orphans re-parented to this process (the subreaper) rather than to the worker.
        LIVE.discard(self.proc.pid)
        others = {p for w in LIVE for p in (w, *contain.descendants(w))}
        left = contain.leftovers(self.me, self.before, self.stage_pids | others)
        # Reported: what left the worker's session. What stayed in it (a compiler's helper still
        # exiting) ends with the stage without a word.
        for p, st in left.items():
            if st[2] != self.proc.pid:
                found.setdefault(p, contain.describe(p, st))
        contain.kill_all(set(tree) | set(left) | self.stage_pids)
        for f in (self.cmd_w, self.reply_r):
            try:
                os.close(f)
            except OSError:
                pass
        try:
            os.unlink(self.log)
        except OSError:
            pass
        return [found[p] for p in sorted(found)]

    def stderr_tail(self) -> str:
        return _tail(self.log)


def survivors_message(found: list[str]) -> str:
    shown = "; ".join(found[:4]) + (f"; and {len(found) - 4} more" if len(found) > 4 else "")
    return (f"integrity: survivor: {len(found)} process(es) started by the candidate left its stage "
            f"(a new session, or alive after the worker ended): {shown}; all were ended")


def _frame(header: dict, bufs: list = ()) -> bytes:
    """The head of a frame (magic, length, JSON header); the buffers follow it."""
    import json
    import struct

    head = json.dumps({**header, "bufs": [len(memoryview(b).cast("B")) for b in bufs]}).encode()
    return wire.MAGIC + struct.pack("<I", len(head)) + head
