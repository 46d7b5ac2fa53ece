"""Shared mechanics of the kernel library (no benchmark imports here): availability, input
validation, row views, ``out=``.

Every public wrapper validates its inputs with errors that name what is supported, accepts any
leading dims and a row stride (the last dim must be contiguous), and takes ``out=``.
"""
from __future__ import annotations

import functools
import os
from typing import Iterable, Sequence

# Whether Triton can run here is the runtime's answer, shared with the benchmark.
from solbench.runtime import interpreting, triton_import_error, triton_unavailable_reason  # noqa: F401


#: Set by `solbench sass` while it records launches on CPU tensors: they are then described as a
#: GPU compiles them (hardware fp8 conversion, fast math), not as the interpreter runs them.
EMULATE_GPU_CODEGEN = False


def gpu_codegen(t) -> bool:
    """True when a kernel launched on tensor ``t`` is compiled for a GPU rather than run by
    Triton's CPU interpreter: the switch for code paths only a compiled kernel can take (inline
    PTX, hardware fp8 conversion)."""
    return EMULATE_GPU_CODEGEN or (t.is_cuda and not interpreting())


def require_device(x, what: str) -> None:
    if x.device.type == "cuda":
        return
    if x.device.type == "cpu" and interpreting():
        return
    raise RuntimeError(f"{what}: tensors on {x.device} are supported only under TRITON_INTERPRET=1; "
                       "use a CUDA device")


def check_dtype(x, allowed: Iterable, what: str, arg: str = "x") -> None:
    allowed = tuple(allowed)
    if x.dtype not in allowed:
        names = ", ".join(str(d).replace("torch.", "") for d in allowed)
        raise TypeError(f"{what}: {arg} has dtype {str(x.dtype).replace('torch.', '')}; supported: {names}")


def as_rows(x, what: str, arg: str = "x"):
    """View ``x[..., n]`` as ``[rows, n]`` without copying. The last dim must be contiguous and the
    leading dims must collapse into one row stride (true for contiguous tensors and for row slices
    such as ``big[:, :n]``)."""
    if x.dim() == 0:
        raise ValueError(f"{what}: {arg} must have at least one dimension")
    n = x.shape[-1]
    if n > 1 and x.stride(-1) != 1:
        raise ValueError(f"{what}: {arg} must be contiguous in its last dimension (stride {x.stride(-1)})")
    if x.dim() == 1:
        return x.unsqueeze(0)
    try:
        return x.view(-1, n)
    except RuntimeError:
        pass
    lead = x.shape[:-1]
    # Collapse leading dims by hand: every dim must step by the next one's extent.
    for i in range(len(lead) - 1):
        if lead[i + 1] != 1 and lead[i] != 1 and x.stride(i) != x.stride(i + 1) * lead[i + 1]:
            raise ValueError(f"{what}: {arg}'s leading dimensions cannot be viewed as rows with one stride "
                             f"(shape {tuple(x.shape)}, strides {x.stride()}); call .contiguous() first")
    rows = 1
    for s in lead:
        rows *= s
    return x.as_strided((rows, n), (x.stride(len(lead) - 1) if lead else n, 1))


def check_out(out, shape: Sequence[int], dtype, device, what: str, arg: str = "out") -> None:
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{what}: {arg} has shape {tuple(out.shape)}, expected {tuple(shape)}")
    if out.dtype != dtype:
        raise TypeError(f"{what}: {arg} has dtype {out.dtype}, expected {dtype}")
    if out.device != device:
        raise ValueError(f"{what}: {arg} is on {out.device}, expected {device}")


def fill_sms(block_m: int, num_warps: int, programs_of, sm_count: int | None) -> tuple[int, int]:
    """First-principles tiles pack several rows per program; on a launch with fewer programs than
    the device has SMs that leaves SMs idle, and a small memory-bound launch is then limited by
    the load throughput of the few SMs it runs on. Halve the rows per program (and the warps with
    them, so each thread still moves the same bytes) while ``programs_of(block_m)`` is below
    ``sm_count`` and a tile can still be split. Returns ``(block_m, num_warps)``; unchanged
    without a device (``sm_count`` None)."""
    if not sm_count:
        return block_m, num_warps
    while block_m > 1 and programs_of(block_m) < sm_count:
        block_m //= 2
        num_warps = max(1, num_warps // 2)
    return block_m, num_warps


def cuda_backend(what: str, backend: str, unsupported, prefer=None) -> bool:
    """Whether a function with a Triton and a CUDA backend takes the CUDA one: ``backend`` is
    ``"triton"`` (False), ``"cuda"`` (True, once ``unsupported()`` -- why the CUDA kernel cannot
    run this call, or None -- says None; a reason is a ValueError) or ``"auto"`` (True where
    ``prefer()``, the function's measured rule, says the CUDA kernel is faster and it can run
    the call; else False). Anything else is a ValueError."""
    if backend not in ("triton", "cuda", "auto"):
        raise ValueError(f"{what}: backend must be one of ('triton', 'cuda', 'auto'), got {backend!r}")
    if backend == "triton":
        return False
    if backend == "auto":
        return prefer is not None and bool(prefer()) and unsupported() is None
    why = unsupported()
    if why:
        raise ValueError(f"{what}: the cuda backend cannot run this call: {why}")
    return True


def device_index(device) -> int:
    """The index of CUDA ``device`` (a ``torch.device``), the current device when it names none."""
    import torch

    return device.index if device.index is not None else torch.cuda.current_device()


@functools.lru_cache(maxsize=None)
def sm_count_of(index: int) -> int:
    """SMs of CUDA device ``index``."""
    import torch

    return int(torch.cuda.get_device_properties(index).multi_processor_count)


def sm_count(t) -> int | None:
    """SMs of the CUDA device holding ``t``; None on the CPU (interpreter), where the launch
    heuristics keep their first-principles tiles, except under `solbench sass`
    (:func:`emulated_sm_count`)."""
    if t.device.type != "cuda":
        return emulated_sm_count()
    return sm_count_of(t.device.index if t.device.index is not None else 0)


def emulated_sm_count() -> int | None:
    """While `solbench sass` records launches (:data:`EMULATE_GPU_CODEGEN`), the SMs of the GPU
    it compiles for (its ``--sms``), so grids and SM-filling rules are that GPU's; else None."""
    if not EMULATE_GPU_CODEGEN:
        return None
    from solbench.runtime import tuning

    return tuning.sm_count()


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def pow2_range(lo: int, hi: int) -> list[int]:
    """The powers of two in ``[lo, hi]``, ascending."""
    out, v = [], 1
    while v <= hi:
        if v >= lo:
            out.append(v)
        v *= 2
    return out


def largest_pow2_divisor(n: int, cap: int) -> int:
    """The largest power of two that divides ``n`` and is at most ``cap``."""
    v = 1
    while n % (v * 2) == 0 and v * 2 <= cap:
        v *= 2
    return v


# ---- cache hints on read-once / write-once streams -----------------------------------------------
#: Programs per SM above which a launch counts as many waves: bandwidth-bound, every SM with a
#: queue of programs (a decode launch is one wave of programs waiting on memory).
MANY_WAVES_PER_SM = 8
_NO_HINTS = {"LOAD_EVICT": "", "STORE_CACHE": ""}
_STREAM_HINTS = {"LOAD_EVICT": "evict_first", "STORE_CACHE": ".cs"}


def env_fields(env: str, names: Sequence[str], *, complete: bool = False) -> dict[str, int] | None:
    """Integer launch fields from environment variable ``env``, for A/B runs from the command line
    (read when called; None when unset or empty). The value lists ``names`` in order
    (``"128,64,8,3"``), ``name=value`` items (``"num_warps=8,num_stages=3"``), or positional items
    then named ones; ``complete``: every name must be given. Anything else (an unknown or
    repeated name, a non-integer, too many values) is a ValueError naming the variable, its value
    and the expected form; the caller's options class validates the values themselves."""
    value = os.environ.get(env, "").strip()
    if not value:
        return None
    form = ",".join(names)
    out: dict[str, int] = {}
    try:
        for i, item in enumerate(x.strip() for x in value.split(",")):
            name, sep, v = item.rpartition("=")
            if not sep:
                if out.keys() - set(names[:i]) or i >= len(names):
                    raise ValueError("positional values come first, one per field")
                name = names[i]
            elif name not in names or name in out:
                raise ValueError(f"unknown or repeated field {name!r}")
            out[name] = int(v)
        if complete and len(out) != len(names):
            raise ValueError(f"missing {', '.join(n for n in names if n not in out)}")
    except ValueError as e:
        raise ValueError(f"{env}={value!r}: expected integers {form} (in order, or as name=value items): {e}") from None
    return out


def check_warps(what: str, num_warps: int) -> int:
    """``num_warps`` if a Triton launch can take it (a power of two up to 16), else an error that
    names ``what`` (the op or the switch that set it)."""
    if num_warps not in (1, 2, 4, 8, 16):
        raise ValueError(f"{what}: num_warps must be one of 1, 2, 4, 8, 16 (got {num_warps})")
    return num_warps


def env_filled(env: str, given):
    """``given`` (a frozen dataclass of launch options whose ``None`` fields a heuristic fills)
    with the fields environment variable ``env`` sets (``name=value`` items, or all of them in
    order) filling those the caller left ``None``: the caller's explicit options win. For GPU A/B
    runs from the command line (read when called)."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(given)]
    forced = env_fields(env, names)
    if not forced:
        return given
    return dataclasses.replace(given, **{k: v for k, v in forced.items() if getattr(given, k) is None})


def env_replaced(env: str, given):
    """``given`` (a frozen dataclass of launch options, every field set) with the fields
    environment variable ``env`` sets replacing its own; ``given`` itself when ``env`` is unset.
    For GPU A/B runs from the command line (read when called)."""
    import dataclasses

    forced = env_fields(env, [f.name for f in dataclasses.fields(given)])
    return dataclasses.replace(given, **forced) if forced else given


def streaming_hints(programs: int, sm_count: int | None) -> dict:
    """The ``LOAD_EVICT`` / ``STORE_CACHE`` constexprs for a launch of ``programs`` programs:
    on many waves (more than :data:`MANY_WAVES_PER_SM` programs per SM) loads marked first to
    leave L2 (``evict_first``) and streaming stores (``st.global.cs``), else no hints (empty
    strings); none without an SM count (CPU, the interpreter)."""
    on = bool(sm_count) and programs > MANY_WAVES_PER_SM * sm_count
    return dict(_STREAM_HINTS if on else _NO_HINTS)


# ---- aliasing -----------------------------------------------------------------------------------
# Called from each custom op's body: there the tensors are real, also under torch.compile (whose
# tracing of a wrapper sees fake tensors without storage) and inside CUDA-graph capture.

def check_disjoint(what: str, outputs, inputs=()) -> None:
    """Raise a ValueError naming the pair when two ``outputs`` overlap, or an output overlaps one
    of ``inputs`` (both are ``(name, tensor)`` pairs; ``None`` tensors are skipped)."""
    outs = [(n, t) for n, t in outputs if t is not None]
    for i, (name, t) in enumerate(outs):
        for other, u in outs[i + 1:] + [(n, u) for n, u in inputs if u is not None]:
            if overlaps(t, u):
                raise ValueError(f"{what}: {name} overlaps {other}; pass separate tensors")


def overlaps(a, b) -> bool:
    """True when the memory spans of ``a`` and ``b`` intersect (a conservative check)."""
    if a.numel() == 0 or b.numel() == 0:
        return False
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False

    def span(t):
        lo = t.data_ptr()
        hi = lo + (sum((s - 1) * st for s, st in zip(t.shape, t.stride())) + 1) * t.element_size()
        return lo, hi

    (a0, a1), (b0, b1) = span(a), span(b)
    return a0 < b1 and b0 < a1


# ---- custom ops with an eager fast path -----------------------------------------------------------

def runs_eager(t) -> bool:
    """True when a kernel called on tensor ``t`` computes with its torch formulation instead:
    on every device but CUDA, except the CPU under ``TRITON_INTERPRET=1`` (the interpreter is then
    asked for). So the library works wherever torch works."""
    dev = t.device.type
    return dev != "cuda" and not (dev == "cpu" and interpreting())


def _first_tensor(args):
    import torch

    for a in args:
        if isinstance(a, torch.Tensor):
            return a
    return None


#: Every op made by :func:`kernel_op` / :func:`functional_op`, by qualified name
#: (``solbench::rms_norm.out``): what CI runs ``torch.library.opcheck`` on.
OPS: dict = {}


class KernelOp:
    """A ``torch.library`` custom op (so ``torch.compile`` traces it and its fake implementation)
    whose plain eager calls skip the dispatcher and run the op's body directly.

    Why: a custom op call goes through the autograd, ADInplaceOrView and dynamo-disable layers
    before reaching the body, host time spent on every call of a 2-5 us kernel (tens to hundreds
    of us an eager call: docs/DECISIONS.md). The direct path is taken only where nothing needs
    the dispatcher: not while torch.compile / export traces, and only when every tensor argument is a plain
    ``torch.Tensor`` (fake tensors, subclasses and proxies go through the op, hence its fake
    implementation). Under CUDA-graph capture the body launches on the capturing stream either way.
    Mutated arguments get their version counter bumped, as the dispatcher would do, so autograd
    still notices an in-place write into a saved tensor.

    ``eager``, with the body's signature, computes the same result with torch operations; it runs
    instead of the body where :func:`runs_eager` says so (tensors off CUDA); without it such
    calls raise an error that says so."""

    def __init__(self, name: str, fn, mutates_args: Sequence[str], eager=None, schema: str | None = None):
        import inspect

        import torch

        self.name = name
        self.kernel, self.eager = fn, eager
        self.fn = self._dispatch
        if schema is None:
            schema = torch.library.infer_schema(fn, mutates_args=tuple(mutates_args))
        self.op = torch.library.custom_op(name, self.fn, mutates_args=tuple(mutates_args), schema=schema)
        self.params = list(inspect.signature(fn).parameters)
        self.mutates_args = tuple(mutates_args)
        self._mutated = tuple(self.params.index(a) for a in mutates_args)
        self._is_compiling = getattr(torch.compiler, "is_compiling", None) or torch._dynamo.is_compiling
        self._bump = getattr(torch.autograd.graph, "increment_version", None)
        self._tensor = torch.Tensor
        functools.update_wrapper(self, fn)
        OPS[name] = self

    def _dispatch(self, *args):
        t = _first_tensor(args)
        if t is None or not runs_eager(t):
            return self.kernel(*args)
        if self.eager is None:
            raise RuntimeError(f"{self.name}: tensors on {t.device} are supported only on CUDA (or on the CPU "
                               "under TRITON_INTERPRET=1): this kernel has no torch formulation yet")
        return self.eager(*args)

    def register_fake(self, fn):
        return self.op.register_fake(fn)

    @property
    def overload(self):
        """The ``torch.ops.solbench.<name>.<overload>`` object."""
        return self.op._opoverload

    def __call__(self, *args):
        if self._is_compiling() or not all(type(a) is self._tensor for a in args if isinstance(a, self._tensor)):
            return self.op(*args)
        result = self.fn(*args)
        if self._bump is not None:
            for i in self._mutated:
                if args[i] is not None:
                    self._bump(args[i])
        return result


def kernel_op(name: str, *, mutates_args: Sequence[str], eager=None):
    """Decorator: ``@kernel_op("solbench::rms_norm.out", mutates_args=("out",), eager=f)`` over the
    op's body makes a :class:`KernelOp` (call it with positional arguments). Name the op that
    writes into given outputs ``<name>.out`` and the one that updates its inputs ``<name>_``, as
    aten does, and give the plain name to :func:`functional_op`. The module that defines the op
    must decorate no Triton kernel when imported (import the kernel inside the body): see
    ``solbench.KERNEL_MODULES``."""
    return lambda fn: KernelOp(name, fn, mutates_args, eager)


def functional_op(name: str, out_op: KernelOp, outputs) -> KernelOp:
    """The functional form ``solbench::<name>`` of an out-variant op: it takes the out op's
    arguments less the outputs, allocates them with ``outputs(*args)`` (a tuple, in the order of
    ``out_op``'s mutated arguments; also the fake implementation, so it must only read shapes,
    dtypes and devices) and returns them (one tensor, or a tuple)."""
    # The out op's arguments in schema syntax ("Tensor? z", "Tensor(a2!) out", ...), less the outputs.
    text = str(out_op.overload._schema)
    args = text[text.index("(") + 1: text.rindex(") ->")]
    keep = [a for a in args.split(", ") if a.split()[-1].split("=")[0] not in out_op.mutates_args]
    n_out = len(out_op.mutates_args)
    ret = "Tensor" if n_out == 1 else "(" + ", ".join(["Tensor"] * n_out) + ")"
    text = "(" + ", ".join(keep) + ") -> " + ret

    def merged(args, outs):
        by_name, it_args, missing = dict(zip(out_op.mutates_args, outs)), iter(args), object()
        values = []
        for p in out_op.params:
            value = by_name[p] if p in by_name else next(it_args, missing)
            if value is missing:  # trailing arguments left to the out op's defaults
                break
            values.append(value)
        return values

    def body(*args):
        outs = tuple(outputs(*args))
        out_op.fn(*merged(args, outs))
        return outs[0] if n_out == 1 else outs

    def fake(*args):
        outs = tuple(outputs(*args))
        return outs[0] if n_out == 1 else outs

    op = KernelOp(name, body, (), eager=body, schema=text)  # the out op's body picks the path
    op.params = [a.split()[-1].split("=")[0] for a in keep]
    op.register_fake(fake)
    return op
