"""The candidate's process: ``python -m solbench.eval.worker``. It only produces outputs.

Everything here is assumed to be in the candidate's hands once it is imported: its globals, its
clock, its replies. So the worker holds nothing worth stealing or patching: no reference, no
tolerance, no cost model, no random choices, no verdict. It obeys the judge
(:mod:`solbench.eval.judge`), which drives it over two pipes (commands on stdin, replies on the
file descriptor named by ``SOLBENCH_EVAL_REPLY_FD``), one frame per command
(:mod:`solbench.eval.wire`):

``import``; ``put`` (an input set, as bytes); ``signature``; ``call`` (run the candidate on one
set, optionally refilled in place first, and send the outputs back as bytes); ``prepare`` /
``capture`` / ``pass`` / ``fetch`` (the timing plan the judge computed: rotate the sets, capture
the timed calls, run a pass of samples, commit to digests of the last sample's outputs, then send
back the outputs of the calls the judge picks afterwards); ``stream``; ``end``.

Before the candidate is imported it redirects fd 1 to stderr (a log the judge only tails), caps
its memory, and confines its own writes to the scratch folder (:mod:`solbench.eval.contain`).
"""
from __future__ import annotations

import os
import sys
import time
import traceback

# Bound before the candidate exists. A candidate may rebind it; the judge's own clock around each
# timing pass is what a reported time is checked against.
_clock = time.perf_counter

EXIT_CONTEXT_LOST = 3  # a CUDA error poisoned the context: the judge starts a fresh worker
REPLY_FD_ENV = "SOLBENCH_EVAL_REPLY_FD"


def _vm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def apply_memory_cap(device, cap_bytes: int | None, gpu_fraction: float | None) -> str:
    """CPU: RLIMIT_AS = the address space in use now + ``cap_bytes`` (an allocation past it raises
    MemoryError in the candidate). CUDA: RLIMIT_AS would break the driver (it reserves huge virtual
    ranges), so device memory is capped with ``set_per_process_memory_fraction`` and host memory
    is watched by the judge (resident set size)."""
    if device.type == "cuda":
        import torch

        if gpu_fraction:
            torch.cuda.set_per_process_memory_fraction(float(gpu_fraction))
            return f"GPU memory fraction {gpu_fraction:g}; host RSS watched by the judge"
        return "host RSS watched by the judge"
    if cap_bytes:
        import resource

        vm = _vm_bytes()
        if vm is not None:
            limit = vm + int(cap_bytes)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            return f"RLIMIT_AS {limit / 2**30:.1f} GiB ({cap_bytes / 2**30:.1f} GiB over the worker's own)"
    return "none"


def _is_cuda_error(e: BaseException) -> bool:
    text = f"{type(e).__name__}: {e}"
    return "CUDA error" in text or "AcceleratorError" in text or "device-side assert" in text \
        or "illegal memory access" in text


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e)[:400]}"


class Worker:
    def __init__(self, req: dict, reply_fd: int):
        import torch

        from solbench.eval import wire

        self.torch, self.wire, self.fd = torch, wire, reply_fd
        self.plain = torch.Tensor            # the class itself, taken before the candidate exists
        self.device = torch.device(req["device"])
        self.req = req
        self.seq = req.get("seq")
        self.fn = None
        self.sets: dict[int, dict] = {}
        self.tsets: list[dict] = []          # the timing plan's rotating sets
        self.kept: list = []                 # what the last timed sample's calls returned
        self.graphs = None
        self.mode = "cpu"
        self.k = 1
        self.flusher = None

    # ---- plumbing ----
    def send(self, header: dict, bufs: list = ()) -> None:
        self.wire.write_frame(self.fd, {**header, "seq": self.seq}, list(bufs))

    def sync(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    @staticmethod
    def _leaves(ret) -> list:
        """Everything a return value holds, through dicts, tuples and lists."""
        if isinstance(ret, dict):
            return [x for v in ret.values() for x in Worker._leaves(v)]
        if isinstance(ret, (tuple, list)):
            return [x for v in ret for x in Worker._leaves(v)]
        return [ret]

    def _flat(self, ret) -> list:
        return [t for t in self._leaves(ret) if isinstance(t, self.torch.Tensor)]

    def outputs(self, ret) -> tuple[dict | None, list, str | None]:
        """(wire description, buffers, why the outputs are not plain tensors)."""
        ts = self._leaves(ret)
        for t in ts:
            if not isinstance(t, self.plain):
                return None, [], f"an output is a {type(t).__name__}, not a tensor"
            if type(t) is not self.plain:
                return None, [], f"an output is a {type(t).__name__} (a tensor subclass), not a plain torch.Tensor"
            if t.layout != self.torch.strided:
                return None, [], f"an output has layout {t.layout}, not dense strided"
        bufs: list = []
        return self.wire.encode(ret, bufs), bufs, None

    # ---- commands ----
    def cmd_import(self, msg, bufs):
        from solbench.eval import candidate as cand

        t0 = _clock()
        try:
            mod = cand.import_file(msg["path"], extra_path=msg.get("extra_path"))
            self.fn, desc = cand.resolve(mod, msg["op"], self.device)
        except BaseException as e:  # noqa: BLE001 - SystemExit from a candidate is its import failure
            tb = traceback.format_exception(type(e), e, e.__traceback__)
            self.send({"ok": False, "error": _err(e), "traceback": "".join(tb[-6:])[-2000:]})
            return
        self.send({"ok": True, "desc": desc, "import_s": round(_clock() - t0, 3)})

    def cmd_signature(self, msg, bufs):
        from solbench.eval import candidate as cand

        self.send({"ok": True, "error": cand.check_signature(self.fn, list(msg["names"]))})

    def cmd_put(self, msg, bufs):
        self.sets[int(msg["index"])] = self.wire.decode(msg["inputs"], bufs, self.device, keep_strides=True)
        self.send({"ok": True})

    def cmd_drop(self, msg, bufs):
        for i in msg.get("indices") or list(self.sets):
            self.sets.pop(int(i), None)
        self.tsets, self.kept, self.graphs, self.flusher = [], [], None, None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()
        self.send({"ok": True})

    def _refill(self, target: dict, desc, bufs) -> None:
        new = self.wire.decode(desc, bufs, self.device)
        for k, v in new.items():
            if isinstance(v, self.torch.Tensor):
                target[k].copy_(v)

    def cmd_call(self, msg, bufs):
        from solbench.core import check as checker

        s = self.sets[int(msg["set"])]
        if msg.get("refill") is not None:
            self._refill(s, msg["refill"], bufs)
        checker.poison_allocator(self.device, int(msg.get("out_bytes") or 0))
        with self.torch.no_grad():
            ret = self.fn(**s)
        self.sync()
        desc, obufs, fake = self.outputs(ret)
        if fake:
            self.send({"ok": True, "fake": fake})
            return
        reply = {"ok": True, "out": desc}
        if msg.get("want_inputs"):
            # Digests, not bytes: the judge holds the values the inputs must still have.
            names = [k for k, v in s.items() if isinstance(v, self.torch.Tensor)]
            reply["input_digests"] = dict(zip(names, self.wire.digests([[s[k]] for k in names])))
        self.send(reply, obufs)

    def cmd_prepare(self, msg, bufs):
        """Rotating sets (copies of the judge's distinct sets, in turn), warm-up, an estimate of
        one call (untrusted by the judge: it only sizes the samples)."""
        torch = self.torch
        bases = [self.sets[int(i)] for i in msg["bases"]]
        n = int(msg["n_sets"])
        self.tsets = [bases[i] if i < len(bases) else
                      {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in bases[i % len(bases)].items()}
                      for i in range(n)]
        self.mode = msg["mode"]
        flush_us = 0.0
        with torch.no_grad():
            for i in range(min(n, 8)):
                self.fn(**self.tsets[i])
            self.sync()
            if self.device.type == "cuda":
                from solbench.core import timing

                est = timing._estimate_us(self._call, n)
                if msg.get("flush"):
                    self.flusher = timing._Flusher(self.device, timing.l2_bytes_of(self.device))
                    flush_us = timing._estimate_us(lambda i: self.flusher(), 1)
            else:
                t0 = _clock()
                for i in range(3):
                    self.fn(**self.tsets[i % n])
                est = (_clock() - t0) / 3 * 1e6
        self.send({"ok": True, "est_us": est, "flush_us": flush_us})

    def _call(self, i: int):
        return self.fn(**self.tsets[i % len(self.tsets)])

    def cmd_capture(self, msg, bufs):
        self.k = int(msg["k"])
        notes = []
        if self.device.type == "cuda" and self.mode == "graph":
            from solbench.core import timing

            kept: list = []

            def body(calls=self.k, keep=True):
                for j in range(calls):
                    if self.flusher is not None:
                        self.flusher()
                    out = self._call(j)
                    if keep:
                        kept.append(out)

            try:
                with self.torch.no_grad():
                    g = timing._capture(body, warm_body=lambda: body(min(self.k, 8), keep=False))
                    graphs = [g]
                    if self.flusher is not None:
                        def flush_only():
                            for _ in range(self.k):
                                self.flusher()

                        graphs.append(timing._capture(flush_only))
                self.graphs = graphs
                self.kept = kept
            except Exception as e:  # noqa: BLE001 - capture fails for host syncs and unjoined streams
                self.torch.cuda.synchronize()
                notes.append(f"graph capture failed ({type(e).__name__}: {str(e)[:160]}); timed eagerly")
                self.mode = "eager_device_sync"
        self.send({"ok": True, "mode": self.mode, "notes": notes})

    def cmd_pass(self, msg, bufs):
        """Run ``samples`` samples of ``k`` calls, then commit to digests of the last sample's
        outputs."""
        from solbench.core import timing

        torch = self.torch
        samples, k = int(msg["samples"]), self.k
        # Whole-sample times (us), one list per graph: the judge divides by k and subtracts the
        # flush-only graph itself, so the figure is made from exactly what it cross-checks.
        times: list[list[float]] = []
        with torch.no_grad():
            if self.graphs is not None:
                times = timing._replay_samples(self.graphs, samples)
            else:
                # Eager (CPU, `--timer eager`, or a capture that failed): a sample is k calls between
                # device-wide synchronizations, so work on any stream is inside it; one flush per
                # sample where the plan flushes.
                row = []
                for _ in range(samples):
                    if self.flusher is not None:
                        self.flusher()
                    self.sync()
                    t0 = _clock()
                    outs = [self._call(j) for j in range(k)]
                    self.sync()
                    row.append((_clock() - t0) * 1e6)
                times = [row]
                self.kept = outs
        self.sync()
        # Two frames: the judge's clock stops at the first; the second commits to the outputs
        # before the judge names the calls it will look at.
        self.send({"ok": True, "samples_us": times, "mode": self.mode, "k": k})
        self.send({"ok": True, "digests": self.wire.digests([self._flat(o) for o in self.kept])})

    def cmd_refill(self, msg, bufs):
        """Fresh values for some timing sets, in place, between passes (not timed)."""
        for i, desc in (msg.get("sets") or {}).items():
            self._refill(self.tsets[int(i)], desc, bufs)
        self.sync()
        self.send({"ok": True})

    def cmd_fetch(self, msg, bufs):
        desc, obufs, fake = self.outputs({str(j): self.kept[int(j)] for j in msg["calls"]})
        if fake:
            self.send({"ok": True, "fake": f"a timed call's output: {fake}"})
            return
        self.send({"ok": True, "outputs": desc}, obufs)

    def cmd_stream(self, msg, bufs):
        from solbench.eval import integrity

        with self.torch.no_grad():
            res = integrity.side_stream_check(self._call, len(self.tsets), clock=_clock)
        self.send({"ok": True, "stream": res})


def main() -> int:
    reply_fd = int(os.environ[REPLY_FD_ENV])
    os.dup2(2, 1)  # the candidate's prints go to the log, never to a channel the judge parses
    sys.stdout = sys.stderr
    from solbench.eval import wire

    req, _ = wire.read_frame(0, 0)
    if req.get("triton_interpret"):
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    device = torch.device(req["device"])
    if device.type == "cuda":
        torch.cuda.init()
        torch.zeros(1, device=device)  # the context exists before the sandbox closes (it opens device files)
    # Everything the worker needs is imported before the sandbox closes.
    from solbench.core import check  # noqa: F401
    from solbench.eval import candidate, contain, integrity  # noqa: F401

    w = Worker(req, reply_fd)
    cap = apply_memory_cap(device, req.get("mem_cap_bytes"), req.get("gpu_mem_fraction"))
    confinement = contain.confine_writes(req["scratch"]) if req.get("confine", True) else "none: turned off"
    w.send({"ok": True, "memory_cap": cap, "confinement": confinement, "pid": os.getpid()})
    handlers = {name[4:]: getattr(w, name) for name in dir(w) if name.startswith("cmd_")}
    while True:
        try:
            msg, bufs = wire.read_frame(0, 1 << 62)
        except wire.WireError:
            return 0  # the judge closed the pipe
        cmd = msg.get("cmd")
        w.seq = msg.get("seq")
        if cmd == "end":
            return 0
        try:
            handlers[cmd](msg, bufs)
        except BaseException as e:  # noqa: BLE001 - the candidate's exception is its reply
            tb = traceback.format_exception(type(e), e, e.__traceback__)
            fatal = _is_cuda_error(e)
            w.send({"ok": False, "error": _err(e), "traceback": "".join(tb[-4:])[-1500:], "fatal": fatal})
            if fatal:
                return EXIT_CONTEXT_LOST


if __name__ == "__main__":
    sys.exit(main())
