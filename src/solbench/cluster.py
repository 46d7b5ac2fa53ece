"""``solbench run --cluster``: the benchmark's (operator, shape) units spread over a Ray cluster.

One actor per GPU (``num_gpus=1``; on a cluster without GPUs, a custom resource ``solbench_gpu``
stands in, which is how the CPU tests and ``--cluster local:N`` run). Each actor runs the same
runner as a local run (:func:`solbench.runner.run`, one unit at a time, no file), on its own device
with its own calibration, and sends the unit's records back. The driver alone appends them to the
one results file (:class:`solbench.resultsfile.ResultsFile`: locked, tail repaired, one unbuffered
write per record), so resume is unchanged: keys already in the file are skipped.

Failures: a unit whose actor dies (worker process killed, node lost) is queued again for another
actor, preferably on another node, up to ``attempts`` tries in all; after that it becomes one FAIL
record per implementation, with the reason. A dead actor is replaced by a fresh one. Records of a
unit are written once, when the unit comes back, so nothing is lost or written twice.

A cluster with several GPU models runs every unit once per model (records are keyed by device),
which is what a sweep over H100, H200 and B200 wants. ``solbench eval --batch DIR --cluster``
spreads candidate files over the same pool of workers (:func:`eval_batch`). Ray is an optional extra
(``pip install solbench[cluster]``); nothing else in solbench imports it.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from solbench import runner
from solbench.core import record
from solbench.resultsfile import ResultsFile

#: The custom resource that stands in for a GPU on clusters without one (tests, CPU smoke runs).
GPU_STANDIN = "solbench_gpu"
DEFAULT_ATTEMPTS = 3
#: How long an actor may take to start (import torch, calibrate) before the run gives up on it.
START_TIMEOUT_S = 900.0


class ClusterError(ValueError):
    """The cluster cannot be used (no Ray, unreachable address, no workers): the CLI exits 2."""


def import_ray():
    try:
        import ray
    except ImportError:
        raise ClusterError("--cluster needs Ray, which is not installed here: pip install 'solbench[cluster]' "
                           "(see docs/CLUSTER.md)") from None
    return ray


# ---- connecting ---------------------------------------------------------------------------------

def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rpartition(":")
    if not host:  # no port given
        return rest, 10001 if address.startswith("ray://") else 6379
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise ClusterError(f"--cluster {address}: expected HOST:PORT, ray://HOST:PORT, auto or local:N") from None


def parse_local(address: str) -> int | None:
    """N for ``local:N`` (a Ray instance started here with N workers), else None."""
    if not address.startswith("local:"):
        return None
    try:
        n = int(address.split(":", 1)[1])
    except ValueError:
        n = 0
    if n < 1:
        raise ClusterError(f"--cluster {address}: local:N needs a number of workers N >= 1")
    return n


def connect(address: str, *, timeout_s: float = 10.0) -> bool:
    """Connect this process to the cluster ``address`` (``HOST:PORT``, ``ray://HOST:PORT``, ``auto``
    or ``local:N``). Returns whether this call started Ray (and so should shut it down). An
    address that does not answer within ``timeout_s`` is a :class:`ClusterError` (Ray itself would
    retry for a minute or more)."""
    n_local = parse_local(address)
    ray = import_ray()
    if n_local is None and address != "auto":
        host, port = _host_port(address)
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as e:
            raise ClusterError(f"cannot reach a Ray cluster at {address} ({host}:{port}: {e.strerror or e}); "
                               "start one with `ray start --head` (docs/CLUSTER.md), check the address, "
                               "or run on this machine with --cluster local:N") from None
    if ray.is_initialized():  # a program (or a test) that connected itself
        return False
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
    try:
        if n_local is not None:
            # A new instance even where a cluster runs here ("local"); num_cpus: one per worker
            # actor; Ray detects a local GPU by itself.
            ray.init(address="local", num_cpus=n_local, resources={GPU_STANDIN: n_local}, **quiet)
            return True
        ray.init(address=address, **quiet)
    except Exception as e:
        # Ray 2.59+ starts clusters with token authentication, and a driver that names the address
        # only sends its token in token mode (refused as "InvalidAuthToken" in Ray's log above).
        auth = ("; if the cluster uses token authentication (the default of `ray start` since Ray 2.59), set "
                "RAY_AUTH_MODE=token here, with the head's token in ~/.ray/auth_token or RAY_AUTH_TOKEN "
                "(`ray get-auth-token` on the head prints it)" if not os.environ.get("RAY_AUTH_MODE") else "")
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {type(e).__name__}: "
                           f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}{auth}") from None
    return True


def _forwarded_env(local: bool) -> dict:
    """The solbench switches of this shell (kernel options, tuned tables, commit), so that workers
    run what a local run here would; the cache path only on this machine's own Ray instance."""
    return {k: v for k, v in os.environ.items()
            if k.startswith("SOLBENCH_") and (local or k != "SOLBENCH_CACHE")}


# ---- the worker actor ---------------------------------------------------------------------------

def _gpu_uuid() -> str | None:
    """The UUID of the one GPU this process sees (Ray sets CUDA_VISIBLE_DEVICES; nvidia-smi's first
    line, which the record's env reads, is GPU 0 of the node whichever GPU this is)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        uuid = getattr(torch.cuda.get_device_properties(0), "uuid", None)
        if uuid is not None:
            text = str(uuid)
            return text if text.startswith("GPU-") else f"GPU-{text}"
    except Exception:  # noqa: BLE001 - an older torch: ask nvidia-smi about the visible GPU
        pass
    from solbench.core.env import _run

    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    uuid = _run(["nvidia-smi", f"--id={visible}", "--query-gpu=uuid", "--format=csv,noheader"]) if visible else None
    return uuid.splitlines()[0].strip() if uuid else None


class Worker:
    """One per GPU: runs units with the local runner and returns their records (no file)."""

    def __init__(self, cfg: runner.RunConfig, suite_text: str | None = None):
        from solbench.cli import _prepare_triton_env

        _prepare_triton_env()  # before any kernel module is imported
        from solbench.core import hardware

        if suite_text is not None:  # the driver's suite file, which this node may not have
            import tempfile

            path = Path(tempfile.mkdtemp(prefix="solbench-suite-")) / Path(cfg.suite).name
            path.write_text(suite_text)
            cfg = replace(cfg, suite=str(path))
        self.cfg = cfg
        device = hardware.current_device()
        # Same calibration rule as a local run: this device's own, measured once and cached.
        if not hardware.load_calibration(hardware.device_key()):
            hardware.calibrate(quick=device.type != "cuda")
        import ray

        ctx = ray.get_runtime_context()
        # The record key a local run on this device would write (runner.run decides the same way).
        smoke = cfg.smoke if cfg.smoke is not None else device.type != "cuda"
        hw = hardware.get_sku(cfg.hw) if cfg.hw else hardware.datasheet_for_device(device)
        qualifier = {"flush": "+flush", "warm": "+warm"}.get(cfg.cold_l2, "")
        self.where = {"node": socket.gethostname(), "node_ip": ray.util.get_node_ip_address(),
                      "node_id": ctx.get_node_id(), "worker_pid": os.getpid(), "gpu_uuid": _gpu_uuid()}
        self.device_class = {"device": hardware.device_name(device), "hw": hw.name,
                             "timer": cfg.timer + qualifier if device.type == "cuda" else "cpu", "smoke": smoke}

    def describe(self) -> dict:
        return {**self.where, "class": self.device_class}

    def eval_candidate(self, cfg, candidate_text: str, baselines_text: str | None, attempt: int):
        """``solbench eval`` of one candidate (its stages in their own sandboxed subprocesses, as
        locally), from the driver's copy of the file; the records are returned, not written."""
        import tempfile

        from solbench.eval.evaluate import evaluate

        with tempfile.TemporaryDirectory(prefix="solbench-candidate-") as tmp:
            path = Path(tmp) / Path(cfg.candidate).name
            path.write_text(candidate_text)
            local = {"candidate": str(path), "out": None}
            if baselines_text is not None:
                local["baselines_from"] = str(Path(tmp) / "baselines.jsonl")
                Path(local["baselines_from"]).write_text(baselines_text)
            res = evaluate(replace(cfg, **local))
        for rec in res.records + res.baseline_records:
            rec["cluster"] = {**self.where, "attempt": attempt}
        return res

    def run_unit(self, op: str, shape_id: str, impls: list[str], attempt: int) -> list[dict]:
        cfg = replace(self.cfg, ops=[op], shapes=[shape_id], impls=impls, out=None, max_shapes=None,
                      time_budget_s=None, retry_failed=False, remeasure_ops=())
        res = runner.run(cfg)
        for rec in res.records:
            rec["cluster"] = {**self.where, "attempt": attempt}
            env = rec.get("env")
            if isinstance(env, dict):
                env = rec["env"] = dict(env)
                env["node"] = self.where["node"]
                if self.where["gpu_uuid"]:
                    env["gpu_uuid"] = self.where["gpu_uuid"]
        return res.records


# ---- the driver ---------------------------------------------------------------------------------

def class_key(c: dict) -> tuple:
    return (c["device"], c["hw"], c["timer"], bool(c["smoke"]))


def class_label(c: dict) -> str:
    return f"{c['device']} ({'smoke' if c['smoke'] else 'full'}, {c['timer']})"


@dataclass
class Unit:
    op: str
    shape_id: str
    cls: tuple                     # the device class it runs on
    impls: list[str]               # implementations not yet in the file
    attempts: int = 0
    failed_nodes: set = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    last_worker: dict = field(default_factory=dict)   # where the last attempt ran
    label: str = ""                                     # a name other than "op #shape" (a candidate file)
    payload: object = None                              # what the worker needs besides (a candidate's config)

    @property
    def name(self) -> str:
        return self.label or f"{self.op} #{self.shape_id}"


@dataclass
class _Actor:
    handle: object
    index: int
    info: dict | None = None      # describe(), once started
    started: float = field(default_factory=time.monotonic)

    @property
    def node(self) -> str:
        return (self.info or {}).get("node", "?")


@dataclass
class ClusterState:
    """What the progress display shows: units done, running and failed, in all and per node."""
    total: int = 0
    done: int = 0
    failed: int = 0
    retried: int = 0
    running: dict = field(default_factory=dict)        # actor index -> (node, unit name)
    per_node: dict = field(default_factory=dict)       # node -> {"done", "failed", "retried", "workers"}
    workers: int = 0
    last: str = ""

    def node(self, name: str) -> dict:
        return self.per_node.setdefault(name, {"done": 0, "failed": 0, "retried": 0, "workers": 0})

    def line(self) -> str:
        running = {}
        for node, _ in self.running.values():
            running[node] = running.get(node, 0) + 1
        nodes = "; ".join(f"{n}: {v['done']} done, {running.get(n, 0)} running, {v['failed']} failed"
                          + (f", {v['retried']} retried" if v["retried"] else "")
                          for n, v in sorted(self.per_node.items()))
        return (f"units {self.done + self.failed}/{self.total}: {self.done} done, {len(self.running)} running, "
                f"{self.failed} failed ({self.workers} workers) | {nodes}")


@dataclass
class ClusterResult(runner.RunResult):
    classes: list = field(default_factory=list)      # device classes of the workers
    failed_units: int = 0
    retries: int = 0


def _worker_died(ray, exc: BaseException) -> bool:
    ex = ray.exceptions
    kinds = tuple(getattr(ex, n) for n in ("RayActorError", "WorkerCrashedError", "NodeDiedError",
                                           "ObjectLostError", "OwnerDiedError", "ActorUnavailableError")
                  if hasattr(ex, n))
    return isinstance(exc, kinds)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _fail_records(unit: Unit, cls: dict, reason: str, specs: dict, shapes: dict,
                  weights: dict | None) -> list[dict]:
    """FAIL records for a unit no worker could finish, built like every record (core/record); the
    driver has no calibration of the worker's device, so both SOLs are the datasheet's."""
    from solbench.core import hardware
    from solbench.core.spec import impls_for

    spec, shape = specs[unit.op], shapes[(unit.op, unit.shape_id, cls["smoke"])]
    sku = hardware.get_sku(cls["hw"])
    registered = impls_for(unit.op)
    out = []
    for name in unit.impls:
        key = record.key_fields(unit.op, shape.id, name, hw=cls["hw"], device=cls["device"], timer=cls["timer"],
                                smoke=cls["smoke"])
        rec = record.build(key, role=registered[name].role if name in registered else record.role_of({"impl": name}),
                           spec=spec, shape=shape, cost=spec.cost(shape), datasheet=sku, achievable=sku,
                           status="fail", reason=reason, timing=None, check=None, compile_s=None, impl_facts={},
                           wall_s=0.0, env={"device": cls["device"], "timer": cls["timer"]},
                           importance=(weights or {}).get(spec.name))
        rec["speedup"] = {}
        rec["cluster"] = {**{k: v for k, v in unit.last_worker.items() if k != "class"},
                          "attempt": unit.attempts, "failed_nodes": sorted(unit.failed_nodes)}
        out.append(rec)
    return out


def _cluster_slots(ray, address: str, max_workers: int | None) -> tuple[dict, int]:
    """(the actor options that claim one GPU, how many workers to start)."""
    resources = ray.cluster_resources()
    if resources.get("GPU", 0) >= 1:
        slot, n_slots = {"num_gpus": 1}, int(resources["GPU"])
    elif resources.get(GPU_STANDIN, 0) >= 1:
        slot, n_slots = {"resources": {GPU_STANDIN: 1}}, int(resources[GPU_STANDIN])
    else:
        raise ClusterError(f"the Ray cluster at {address} has no GPUs (and no {GPU_STANDIN!r} resource standing "
                           "in for them); start its workers with GPUs visible, or see docs/CLUSTER.md")
    return slot, min(x for x in (n_slots, parse_local(address), max_workers) if x)


class _Pool:
    """Workers on the cluster and the units they run: hands units to idle workers, retries a unit
    whose worker died on another worker (another node while one is left) up to ``attempts``, and
    replaces dead workers. What a unit is and what is done with its result is the caller's:
    ``plan(device_class)`` gives the units for a class of workers the first time one starts,
    ``submit(handle, unit)`` starts a unit, ``done(unit, value)`` takes its result, and
    ``give_up(unit, reason)`` takes a unit no worker could finish."""

    def __init__(self, ray, address: str, worker_args: tuple, *, attempts: int, plan, submit, done, give_up,
                 on_event=None, on_dispatch=None, start_timeout_s: float = START_TIMEOUT_S,
                 time_budget_s: float | None = None, max_workers: int | None = None):
        self.ray, self.address, self.attempts = ray, address, attempts
        self.plan, self.submit, self.done, self.give_up = plan, submit, done, give_up
        self.on_event, self.on_dispatch = on_event, on_dispatch
        self.start_timeout_s, self.time_budget_s = start_timeout_s, time_budget_s
        self.state = ClusterState()
        self.actors: dict[int, _Actor] = {}
        self.classes: dict[tuple, dict] = {}
        self.queues: dict[tuple, deque] = {}
        self.retries = 0
        self.first_error: str | None = None
        slot, self.n_workers = _cluster_slots(ray, address, max_workers)
        local = parse_local(address) is not None or address == "auto"
        self._remote = ray.remote(Worker)
        self._options = {**slot, "num_cpus": 1, "max_restarts": 0,
                         "runtime_env": {"env_vars": _forwarded_env(local)}}
        self._worker_args = worker_args
        self._next_index = 0
        self._starting: dict = {}  # describe() future -> actor

    def event(self, msg: str, kind: str = "info") -> None:
        self.state.last = msg
        if self.on_event:
            self.on_event(kind, msg, self.state)

    def _start_actor(self) -> _Actor:
        a = _Actor(self._remote.options(**self._options).remote(*self._worker_args), self._next_index)
        self._next_index += 1
        self.actors[a.index] = a
        self._starting[a.handle.describe.remote()] = a
        return a

    def _kill(self, a: _Actor) -> None:
        self.actors.pop(a.index, None)
        try:
            self.ray.kill(a.handle, no_restart=True)
        except Exception:
            pass

    def close(self) -> None:
        for a in list(self.actors.values()):
            self._kill(a)

    def _next_unit(self, a: _Actor):
        key = class_key(a.info["class"])
        q = self.queues.get(key)
        if not q:
            return None
        live_nodes = {x.node for x in self.actors.values() if x.info and class_key(x.info["class"]) == key}
        for i, u in enumerate(q):  # a retried unit goes to another node while one is left
            if a.node not in u.failed_nodes or live_nodes <= u.failed_nodes:
                del q[i]
                return u
        return None

    def _add_class(self, c: dict) -> None:
        key = class_key(c)
        q = deque(self.plan(c))
        for u in q:
            u.cls = key
        self.classes[key], self.queues[key] = c, q
        self.state.total += len(q)
        self.event(f"{class_label(c)}: {len(q)} units to run")

    def run(self) -> None:
        ray, state = self.ray, self.state
        t0 = time.monotonic()
        for _ in range(self.n_workers):
            self._start_actor()
        first_workers = set(self._starting)
        self.event(f"starting {self.n_workers} workers")
        idle: deque = deque()
        running: dict = {}  # submit() future -> (actor, unit)
        measured_any = budget_hit = False
        while True:
            out_of_time = (self.time_budget_s is not None and measured_any
                           and time.monotonic() - t0 > self.time_budget_s)
            budget_hit = budget_hit or out_of_time
            for _ in range(len(idle)):
                a = idle.popleft()
                u = None if out_of_time else self._next_unit(a)
                if u is None:
                    idle.append(a)
                    continue
                u.attempts += 1
                u.last_worker = a.info
                running[self.submit(a.handle, u)] = (a, u)
                state.running[a.index] = (a.node, u.name)
                if self.on_dispatch:
                    self.on_dispatch(u, a.info)
                self.event(f"{u.name} -> {a.node}" + (f" (attempt {u.attempts})" if u.attempts > 1 else ""),
                           "dispatch")
            # The plan is complete once every first worker has said which device it has; replacement
            # workers still starting are not waited for when nothing is left for them. Units whose
            # device class has no worker left stay unrun (a later run resumes them), not FAIL.
            live = {class_key(a.info["class"]) for a in self.actors.values() if a.info}
            takeable = sum(len(q) for key, q in self.queues.items() if key in live)
            pending = sum(len(q) for q in self.queues.values())
            if not running and ((not first_workers and (pending == 0 or budget_hit))
                                or (not self._starting and takeable == 0)):
                break
            waiting = list(running) + list(self._starting)
            if not waiting:  # idle workers that none of the queued units may go to
                break
            ready, _ = ray.wait(waiting, num_returns=1, timeout=1.0)
            for fut in ready:
                if fut in self._starting:
                    first_workers.discard(fut)
                    a = self._starting.pop(fut)
                    try:
                        a.info = ray.get(fut)
                    except Exception as e:
                        self.first_error = self.first_error or _short(e)
                        self.actors.pop(a.index, None)
                        self.event(f"a worker failed to start: {_short(e)}")
                        continue
                    if class_key(a.info["class"]) not in self.classes:
                        self._add_class(a.info["class"])
                    state.node(a.node)["workers"] += 1
                    state.workers = sum(1 for x in self.actors.values() if x.info)
                    idle.append(a)
                    continue
                a, u = running.pop(fut)
                state.running.pop(a.index, None)
                try:
                    value = ray.get(fut)
                except Exception as e:
                    if _worker_died(ray, e):
                        u.failed_nodes.add(a.node)
                        u.errors.append(f"attempt {u.attempts} on {a.node}: {_short(e)}")
                        state.node(a.node)["retried"] += 1
                        self._kill(a)
                        self._start_actor()
                        state.workers = sum(1 for x in self.actors.values() if x.info)
                        if u.attempts < self.attempts:
                            state.retried += 1
                            self.retries += 1
                            self.queues[u.cls].appendleft(u)
                            self.event(f"{u.name}: worker on {a.node} died; retrying elsewhere "
                                       f"({u.attempts}/{self.attempts} attempts used)")
                        else:
                            state.failed += 1
                            state.node(a.node)["failed"] += 1
                            self.give_up(u, f"its worker died on each of {u.attempts} attempts: " + "; ".join(u.errors))
                            self.event(f"{u.name}: FAIL after {u.attempts} attempts")
                        continue
                    # What escapes the worker's own error handling is the same on any worker: no retry.
                    state.failed += 1
                    state.node(a.node)["failed"] += 1
                    self.give_up(u, f"the worker on {a.node} raised {_short(getattr(e, 'cause', None) or e)}")
                    idle.append(a)
                    self.event(f"{u.name}: FAIL ({_short(e)[:80]})")
                    continue
                self.done(u, value)
                measured_any = True
                state.done += 1
                state.node(a.node)["done"] += 1
                idle.append(a)
                self.event(f"{u.name} done on {a.node}")
            now = time.monotonic()
            for fut, a in list(self._starting.items()):  # workers that never came up (no free GPU, a lost node)
                if now - a.started > self.start_timeout_s:
                    self._starting.pop(fut)
                    first_workers.discard(fut)
                    self._kill(a)
                    self.first_error = self.first_error or f"a worker did not start within {self.start_timeout_s:.0f} s"
                    self.event(f"a worker did not start within {self.start_timeout_s:.0f} s; going on without it")
        if not self.classes:
            raise ClusterError(f"no worker started on the cluster at {self.address}: "
                               f"{self.first_error or 'unknown reason'} (is solbench importable on the worker "
                               "nodes? docs/CLUSTER.md)")

    def leftover(self) -> list:
        return [u for q in self.queues.values() for u in q]


def run_cluster(cfg: runner.RunConfig, address: str, *, attempts: int = DEFAULT_ATTEMPTS,
                on_event: Callable[[str, str, ClusterState], None] | None = None,
                on_dispatch: Callable[[Unit, dict], None] | None = None,
                start_timeout_s: float = START_TIMEOUT_S, max_workers: int | None = None) -> ClusterResult:
    """Run ``cfg`` over the cluster at ``address``; records go to ``cfg.out`` as they arrive.

    ``on_event(kind, message, state)`` is called at each change (for a progress display);
    ``on_dispatch(unit, worker_info)`` when a unit is handed to a worker."""
    if attempts < 1:
        raise ClusterError("--cluster-attempts must be at least 1")
    parse_local(address)  # a malformed local:N is refused with or without Ray
    ray = import_ray()
    if cfg.remeasure_ops:
        runner._check_remeasure(cfg)
    specs_list = runner.select_ops(cfg)  # unknown operators fail here, before any cluster work
    specs = {s.name: s for s in specs_list}
    result = ClusterResult()
    out_f: ResultsFile | None = None
    pool: _Pool | None = None
    started_ray = False
    t0 = time.monotonic()
    existing: dict[tuple, dict] = {}
    shapes: dict = {}
    try:
        started_ray = connect(address)
        # The file before any worker starts: a second driver on it is refused at once.
        if cfg.out:
            out_f = ResultsFile(cfg.out)
            out_f.acquire()
            for note in out_f.notes:
                print(f"solbench: {note}", file=sys.stderr)
            if Path(cfg.out).exists():
                for r in runner.read_records(cfg.out):
                    existing[runner.record_key(r)] = r
                runner._drop_to_remeasure(cfg.out, existing, failed_too=cfg.retry_failed,
                                          ops=set(cfg.remeasure_ops), shapes=cfg.shapes)
            out_f.open_append()
        written: set = set(existing)

        def plan(c: dict) -> list[Unit]:
            """The (operator, shape) units with records not yet in the file, for one device class."""
            from solbench.core.spec import impls_for

            runner.check_selection(specs_list, cfg, c["smoke"])
            units = []
            for spec in specs_list:
                registered = impls_for(spec.name)
                names = [i for i in cfg.impls if i in registered] if cfg.impls else sorted(registered)
                for shape in runner.select_shapes(spec, cfg, c["smoke"]) if names else ():
                    shapes[(spec.name, str(shape.id), c["smoke"])] = shape
                    todo = [n for n in names if runner.record_key(
                        {"op": spec.name, "shape_id": shape.id, "impl": n, **c}) not in existing]
                    result.skipped_existing += len(names) - len(todo)
                    if todo:
                        units.append(Unit(spec.name, str(shape.id), class_key(c), todo))
            result.classes.append(c)
            return units

        def done(unit: Unit, recs: list[dict]) -> None:
            # Speedups against the shape's records already in the file, as a local resume does.
            same = runner.record_key({**pool.classes[unit.cls], "op": None})[3:]
            old = [r for r in existing.values() if (r.get("op"), str(r.get("shape_id"))) == (unit.op, unit.shape_id)
                   and runner.record_key(r)[3:] == same]
            record.add_speedups(old + recs)
            for rec in recs:
                k = runner.record_key(rec)
                if k in written:  # a unit is written once; never a key twice
                    continue
                written.add(k)
                if out_f:
                    out_f.append(rec)
                result.records.append(rec)

        def give_up(unit: Unit, reason: str) -> None:
            done(unit, _fail_records(unit, pool.classes[unit.cls], reason, specs, shapes, cfg.weights))
            result.failed_units += 1

        pool = _Pool(ray, address, (cfg, Path(cfg.suite).read_text() if cfg.suite else None), attempts=attempts,
                     plan=plan, submit=lambda h, u: h.run_unit.remote(u.op, u.shape_id, u.impls, u.attempts),
                     done=done, give_up=give_up, on_event=on_event, on_dispatch=on_dispatch,
                     start_timeout_s=start_timeout_s, time_budget_s=cfg.time_budget_s, max_workers=max_workers)
        pool.run()
        result.unfinished = sum(len(u.impls) for u in pool.leftover())
        result.retries = pool.retries
    finally:
        _release(out_f, pool, started_ray)
    result.smoke = any(c["smoke"] for c in result.classes)
    result.device = ", ".join(sorted({c["device"] for c in result.classes})) or "?"
    result.hw = ", ".join(sorted({c["hw"] for c in result.classes}))
    result.wall_s = time.monotonic() - t0
    return result


def _release(out_f, pool, started_ray: bool) -> None:
    """What a driver holds, let go in order: the results file, the workers, a Ray it started."""
    if out_f:
        out_f.close()
    if pool:
        pool.close()
    if started_ray:
        import_ray().shutdown()


def eval_batch(items: list[tuple], address: str, *, out: str | None = None, attempts: int = DEFAULT_ATTEMPTS,
               run_cfg: runner.RunConfig | None = None, on_event=None, on_dispatch=None) -> list:
    """``solbench eval --batch DIR --cluster``: ``items`` are (candidate path, op, EvalConfig); each
    candidate is a unit on one worker. Returns, in the order of ``items``, each candidate's
    EvalResult (its paths the driver's) or the reason no worker could evaluate it (a str). With
    ``out``, the driver alone appends each candidate's records (and baselines) as it comes back.

    A cluster of several GPU models evaluates on the model of the first worker up (a leaderboard
    compares candidates on one device); the others stay idle."""
    ray = import_ray()
    results: list = [None] * len(items)
    out_f: ResultsFile | None = None
    pool: _Pool | None = None
    started_ray = False
    try:
        started_ray = connect(address)
        if out:
            out_f = ResultsFile(out)
            out_f.acquire()
            out_f.open_append()

        def plan(c: dict) -> list[Unit]:
            if pool.classes:
                return []
            units = []
            for i, (path, op, cfg) in enumerate(items):
                text = Path(path).read_text()
                baselines = Path(cfg.baselines_from).read_text() if cfg.baselines_from else None
                units.append(Unit(op, "", class_key(c), [], label=Path(path).name,
                                  payload=(i, cfg, text, baselines)))
            return units

        def done(unit: Unit, res) -> None:
            i, cfg = unit.payload[:2]
            driver_path = str(Path(items[i][0]).resolve())
            for rec in res.records:  # the candidate as the driver names it (same content, same sha256)
                if isinstance(rec.get("candidate"), dict):
                    rec["candidate"]["path"] = driver_path
                if isinstance(rec.get("impl_facts"), dict) and "candidate" in rec["impl_facts"]:
                    rec["impl_facts"]["candidate"] = driver_path
            if out_f:
                reused = cfg.baselines_from and Path(cfg.baselines_from).resolve() == Path(out).resolve()
                for rec in res.records + ([] if reused else res.baseline_records):
                    out_f.append(rec)
            results[i] = res

        def give_up(unit: Unit, reason: str) -> None:
            results[unit.payload[0]] = reason

        pool = _Pool(ray, address, (run_cfg or runner.RunConfig(), None), attempts=attempts, plan=plan,
                     submit=lambda h, u: h.eval_candidate.remote(u.payload[1], u.payload[2], u.payload[3],
                                                                  u.attempts),
                     done=done, give_up=give_up, on_event=on_event, on_dispatch=on_dispatch)
        pool.run()
        for u in pool.leftover():
            results[u.payload[0]] = "not evaluated: no worker was left to take it"
    finally:
        _release(out_f, pool, started_ray)
    return results


def log_events(kind: str, msg: str, state: ClusterState) -> None:
    """A progress line per unit finished, failed or retried (for a log, or a plain terminal)."""
    if kind == "dispatch":
        return
    print(f"[{state.done + state.failed}/{state.total}] {msg} | {state.line()}", flush=True)


# ---- the command line's progress display ---------------------------------------------------------

def run_cli(cfg: runner.RunConfig, address: str, console, *, attempts: int = DEFAULT_ATTEMPTS) -> ClusterResult:
    """:func:`run_cluster` with a live view on a terminal (a bar of units and a line per node) or
    one line per event in a log."""
    if console.is_terminal:
        from rich.live import Live
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.table import Table

        bar = Progress(TextColumn("cluster"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                       TimeElapsedColumn(), console=console)
        task = bar.add_task("", total=None)

        def view(state: ClusterState):
            running = {}
            for node, _ in state.running.values():
                running[node] = running.get(node, 0) + 1
            t = Table.grid(padding=(0, 2))
            for col in ("node", "workers", "done", "running", "failed", "retried"):
                t.add_column(col, justify="left" if col == "node" else "right")
            t.add_row(*(f"[b]{c}[/]" for c in ("node", "workers", "done", "running", "failed", "retried")))
            for node, v in sorted(state.per_node.items()):
                t.add_row(node, str(v["workers"]), str(v["done"]), str(running.get(node, 0)), str(v["failed"]),
                          str(v["retried"]))
            grid = Table.grid()
            grid.add_row(bar)
            grid.add_row(t)
            grid.add_row(f"[dim]{state.last[:120]}[/]")
            return grid

        with Live(console=console, transient=True, refresh_per_second=4) as live:
            def on_event(kind, msg, state):
                bar.update(task, completed=state.done + state.failed, total=state.total or None,
                           description=f"{len(state.running)} running, {state.failed} failed")
                live.update(view(state))

            return run_cluster(cfg, address, attempts=attempts, on_event=on_event)

    return run_cluster(cfg, address, attempts=attempts, on_event=log_events)
