"""Containment of the candidate's process tree, with what Linux offers.

* **A PID namespace** (``unshare --user --map-root-user --pid --fork --kill-child``) where user
  namespaces are allowed: the worker is the namespace's init, so when it ends, however it ends,
  the kernel ends every process the candidate started, ``setsid`` and double forks included.
* **A child subreaper** (``PR_SET_CHILD_SUBREAPER``) on the evaluator, everywhere: orphans of the
  candidate's tree are re-parented to the evaluator instead of init, so :func:`leftovers` finds them
  by walking ``/proc`` and ends them.
* **Landlock** (Linux >= 5.13, applied by the worker to itself before the candidate is imported):
  writes, creations, removals and renames are allowed only beneath the evaluation's scratch folder
  and ``/dev/shm`` (and writes to existing device files such as ``/dev/null``); from ABI 6 on, the
  candidate also cannot signal processes outside its domain (the evaluator). Reads stay open.

Where one is missing the evaluation says so (``confinement`` in the records), and docs/EVAL.md
tells users to run ``eval`` in a container.
"""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time

PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
_SYS_LANDLOCK = {"create": 444, "add_rule": 445, "restrict": 446}  # x86_64 and aarch64 alike

# Landlock filesystem rights (include/uapi/linux/landlock.h).
_WRITE_FILE, _REMOVE_DIR, _REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
_MAKE = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_REFER, _TRUNCATE = 1 << 13, 1 << 14
_SCOPE_SIGNAL = 1 << 1

NAMESPACE_ENV = "SOLBENCH_EVAL_NAMESPACE"  # "0": do not use a PID namespace


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def set_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (idempotent)."""
    try:
        return _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


_NS_PREFIX: list[str] | None = None


def namespace_prefix() -> list[str]:
    """The command prefix that starts the worker in a new PID namespace, or [] where that is not
    possible here (no ``unshare``, user namespaces disabled) or turned off with
    ``SOLBENCH_EVAL_NAMESPACE=0``. Probed once."""
    global _NS_PREFIX
    if os.environ.get(NAMESPACE_ENV, "1") == "0":
        return []
    if _NS_PREFIX is None:
        prefix = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child"]
        try:
            ok = subprocess.run(prefix + ["true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        _NS_PREFIX = prefix if ok else []
    return list(_NS_PREFIX)


def disable_namespace() -> None:
    """Start later workers without a PID namespace (one did not start inside it)."""
    global _NS_PREFIX
    _NS_PREFIX = []


# ---- the process tree ----------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, int, int, str] | None:
    """(ppid, pgid, sid, comm) of ``pid``, or None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    head, _, rest = raw.rpartition(")")
    comm = head.partition("(")[2]
    fields = rest.split()
    if fields and fields[0] in ("Z", "X"):
        return None
    try:
        return int(fields[1]), int(fields[2]), int(fields[3]), comm
    except (IndexError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()[:160]
    except OSError:
        return ""


def descendants(root: int) -> dict[int, tuple[int, int, int, str]]:
    """Every live descendant of ``root``: ``{pid: (ppid, pgid, sid, comm)}``."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                table[int(name)] = st
    out, frontier = {}, {root}
    while frontier:
        nxt = {p for p, st in table.items() if st[0] in frontier and p not in out}
        for p in nxt:
            out[p] = table[p]
        frontier = nxt
    return out


def describe(pid: int, st: tuple[int, int, int, str]) -> str:
    cmd = _cmdline(pid)
    return f"pid {pid} ({st[3]}{': ' + cmd if cmd and cmd != st[3] else ''})"


def kill_all(pids, rounds: int = 5) -> None:
    """Stop, then kill, every pid in ``pids`` and anything they fork meanwhile; reap the ones that
    were re-parented to this process."""
    pids = set(pids)
    for _ in range(rounds):
        live = [p for p in pids if _stat(p) is not None]
        if not live:
            break
        for p in live:
            for sig in (signal.SIGSTOP, signal.SIGKILL):
                try:
                    os.kill(p, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        for p in live:
            pids |= set(descendants(p))
        time.sleep(0.02)
    for p in pids:
        try:
            os.waitpid(p, os.WNOHANG)
        except (ChildProcessError, OSError):
            pass


def leftovers(evaluator: int, before: set[int], keep: set[int]) -> dict[int, tuple]:
    """The evaluator's live descendants that did not exist before the worker started (``before``),
    less ``keep`` (the worker itself): what the candidate left behind, re-parented to the
    evaluator (the subreaper) or still in the worker's tree.

    Two kinds of new process are the evaluator's own, not the candidate's (torch.compile's
    compile-worker pool, started by the baselines, starts its sidecar and forks its workers
    lazily, possibly while a worker runs):
    * one in the evaluator's own session: the worker starts in a new session, and a process can
      leave a session only for a new one of its own, never join another;
    * one under a helper older than the worker: the candidate can re-parent a process to the
      subreaper only, never below a stranger."""
    tree = descendants(evaluator)
    try:
        own_session = os.getsid(evaluator)
    except OSError:
        own_session = None

    def under_old_helper(p: int) -> bool:
        seen = set()
        while p in tree and p not in seen:
            seen.add(p)
            p = tree[p][0]
            if p == evaluator:
                return False
            if p in before and p not in keep:
                return True
        return False

    return {p: st for p, st in tree.items()
            if p not in before and p not in keep and st[2] != own_session and not under_old_helper(p)}


# ---- Landlock (applied by the worker to itself) --------------------------------------------------

class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    try:
        r = _libc().syscall(_SYS_LANDLOCK["create"], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    except (OSError, AttributeError):
        return 0
    return max(int(r), 0)


def confine_writes(scratch: str) -> str:
    """Allow writes only beneath ``scratch`` and ``/dev/shm`` (and to existing files under
    ``/dev``); from Landlock ABI 6 also no signals out of the domain. Returns a description of
    what was applied, starting with ``"none"`` where nothing could be."""
    abi = landlock_abi()
    if abi < 1:
        return "none: Landlock is not available on this kernel"
    handled = _WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE
    if abi >= 2:
        handled |= _REFER
    if abi >= 3:
        handled |= _TRUNCATE
    libc = _libc()
    scoped = _SCOPE_SIGNAL if abi >= 6 else 0
    attr = (ctypes.c_uint64 * 3)(handled, 0, scoped)
    size = 24 if abi >= 6 else (16 if abi >= 4 else 8)
    fd = libc.syscall(_SYS_LANDLOCK["create"], ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        return f"none: landlock_create_ruleset failed ({os.strerror(ctypes.get_errno())})"
    try:
        rules = [(scratch, handled), ("/dev/shm", handled), ("/dev", _WRITE_FILE | (_TRUNCATE if abi >= 3 else 0))]
        for path, access in rules:
            if not os.path.isdir(path):
                continue
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(access, pfd)
                if libc.syscall(_SYS_LANDLOCK["add_rule"], ctypes.c_int(fd), ctypes.c_int(1), ctypes.byref(rule),
                                ctypes.c_uint32(0)) != 0:
                    return f"none: landlock_add_rule({path}) failed ({os.strerror(ctypes.get_errno())})"
            finally:
                os.close(pfd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return "none: PR_SET_NO_NEW_PRIVS failed"
        if libc.syscall(_SYS_LANDLOCK["restrict"], ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            return f"none: landlock_restrict_self failed ({os.strerror(ctypes.get_errno())})"
    finally:
        os.close(fd)
    return (f"landlock ABI {abi}: writes only beneath the scratch folder and /dev/shm"
            + ("; no signals outside the sandbox" if scoped else ""))
