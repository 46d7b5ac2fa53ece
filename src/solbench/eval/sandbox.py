"""The parent side of isolation: run the worker, enforce a wall-clock timeout per stage and a
memory cap, survive whatever the candidate does.

A crash (segfault, ``os._exit``, an uncaught CUDA error), a hang past the stage's timeout, or a
resident set above the cap kills the worker's whole process group; the shape it was working on
is marked FAIL with the stage and the tail of its stderr, and a fresh worker picks up the
remaining shapes. A failed import fails every shape with the import error.
"""
from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

DEFAULT_TIMEOUTS = {"import": 120.0, "check": 300.0, "perf": 300.0}


@dataclass
class ShapeOutcome:
    check: dict | None = None
    perf: dict | None = None
    fail: str | None = None      # crash / timeout / memory cap / import failure
    stage: str | None = None     # the stage ``fail`` happened in


@dataclass
class SandboxResult:
    outcomes: dict[str, ShapeOutcome] = field(default_factory=dict)
    import_info: dict | None = None
    workers: int = 0
    foreign_lines: int = 0       # lines on the protocol channel without the nonce
    stderr_tail: str = ""


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return 0
    return 0


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and anything it spawned
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


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


def run_worker_once(request: dict, timeouts: dict[str, float], rss_cap: int | None,
                    on_event: Callable[[dict], None], env: dict | None = None) -> dict:
    """One worker over ``request['shapes']``. Calls ``on_event`` for each authentic message.
    Returns ``{"end": "done" | "crash" | "timeout" | "memory" | "context", "stage", "shape",
    "detail", "foreign", "stderr"}``."""
    nonce = secrets.token_hex(16)
    err_f = tempfile.NamedTemporaryFile(prefix="solbench-eval-", suffix=".stderr", delete=False)
    err_path = err_f.name
    proc = subprocess.Popen([sys.executable, "-m", "solbench.eval.worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=err_f, start_new_session=True,
                            env=env or os.environ.copy())
    err_f.close()
    stage, shape = "start", None
    deadline = time.monotonic() + timeouts.get("import", DEFAULT_TIMEOUTS["import"]) + 60.0
    foreign = 0
    buf = b""
    end: dict = {}
    try:
        proc.stdin.write((json.dumps({**request, "nonce": nonce}) + "\n").encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            ready = sel.select(timeout=0.2)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    rc = proc.wait()
                    if end.get("end") != "done":
                        from solbench.eval.worker import EXIT_CONTEXT_LOST

                        kind = "context" if rc == EXIT_CONTEXT_LOST else "crash"
                        end = {"end": kind, "stage": stage, "shape": shape,
                               "detail": "CUDA error; context lost" if kind == "context" else
                               f"worker {_describe_exit(rc)} during {stage}"}
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        foreign += 1
                        continue
                    if not isinstance(msg, dict) or msg.pop("nonce", None) != nonce:
                        foreign += 1
                        continue
                    if msg.get("ev") == "begin":
                        stage, shape = msg["stage"], msg.get("shape")
                        deadline = time.monotonic() + float(timeouts.get(stage, DEFAULT_TIMEOUTS.get(stage, 300.0)))
                        continue
                    if msg.get("ev") == "done":
                        end = {"end": "done"}
                    on_event(msg)
            if time.monotonic() > deadline:
                _kill(proc)
                end = {"end": "timeout", "stage": stage, "shape": shape,
                       "detail": f"timed out: {stage} stage ran past its {timeouts.get(stage, 0):g} s limit"}
                break
            if rss_cap and _rss_bytes(proc.pid) > rss_cap:
                _kill(proc)
                end = {"end": "memory", "stage": stage, "shape": shape,
                       "detail": f"memory cap: resident set above {rss_cap / 2**30:.1f} GiB during {stage}"}
                break
    finally:
        sel.close()
        if proc.poll() is None:
            _kill(proc)
        proc.stdout.close()
    end["foreign"] = foreign
    end["stderr"] = _tail(err_path)
    try:
        os.unlink(err_path)
    except OSError:
        pass
    return end


def run_candidate(request: dict, shapes: list[dict], timeouts: dict[str, float] | None = None,
                  rss_cap: int | None = None, progress: Callable[[str], None] | None = None,
                  env: dict | None = None) -> SandboxResult:
    """Evaluate ``shapes`` (worker payloads with ``id``) with as many workers as crashes need."""
    timeouts = {**DEFAULT_TIMEOUTS, **(timeouts or {})}
    res = SandboxResult(outcomes={str(s["id"]): ShapeOutcome() for s in shapes})
    remaining = list(shapes)

    def complete(sid: str, payload: dict) -> bool:
        o = res.outcomes[sid]
        if o.fail:
            return True
        if o.check is None:
            return False
        if not o.check.get("ok") or not payload.get("timed") or request.get("device", "cpu") == "cpu":
            return True
        return o.perf is not None

    def on_event(msg: dict) -> None:
        ev = msg.get("ev")
        if ev == "import":
            res.import_info = msg
        elif ev in ("check", "perf"):
            o = res.outcomes.get(str(msg.get("shape")))
            if o is not None:
                setattr(o, ev, msg)
                if progress:
                    progress(f"{ev} shape {msg.get('shape')}: {'ok' if msg.get('ok') else 'FAIL'}")

    while remaining:
        res.workers += 1
        end = run_worker_once({**request, "shapes": remaining}, timeouts, rss_cap, on_event, env)
        res.foreign_lines += end.get("foreign", 0)
        res.stderr_tail = end.get("stderr", "")
        if res.import_info is not None and not res.import_info.get("ok"):
            why = f"import failed: {res.import_info.get('error')}"
            for s in remaining:
                res.outcomes[str(s["id"])].fail, res.outcomes[str(s["id"])].stage = why, "import"
            break
        if end["end"] == "done":
            break
        detail = end.get("detail", "")
        tail = end.get("stderr", "").splitlines()[-6:]
        reason = detail + (f" | stderr: {' / '.join(tail)[-600:]}" if tail and end["end"] == "crash" else "")
        if end.get("stage") in ("start", "import"):
            for s in remaining:
                o = res.outcomes[str(s["id"])]
                o.fail, o.stage = reason, end.get("stage")
            break
        sid = str(end.get("shape"))
        o = res.outcomes.get(sid)
        # After a CUDA error the worker has already reported the shape's FAIL with the error text.
        if o is not None and end["end"] != "context" and o.fail is None:
            o.fail, o.stage = reason, end.get("stage")
        remaining = [s for s in remaining if not complete(str(s["id"]), s)]
        # The shape that took the worker down is done, whatever it had reported before.
        remaining = [s for s in remaining if str(s["id"]) != sid]
    return res
