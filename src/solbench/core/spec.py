"""Operator specifications and the implementation registry.

An operator is described once, in ``ops/<name>/spec.py``, by an :class:`OpSpec` subclass:

* ``make_inputs(shape, device, seed)``: fresh random tensors (never zeros) for one shape;
* ``reference(**inputs)``: the meaning of the operator, computed in fp32 and cast once at the end;
* ``cost(shape)``: FLOPs per dtype path and bytes read/written, counted from first principles;
* ``tolerance(shape)``: how close an implementation's output must be to the reference.

Implementations register declaratively with :func:`register_impl`; each has ``available()`` and
``supports(shape)`` which return a :class:`Support` that always carries a reason when it refuses.
"""
from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

# Dtype names used by the catalog, mapped lazily to torch dtypes (torch import is deferred so that
# `solbench roofline` works on a machine without torch).
DTYPE_BYTES = {
    "fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8_e4m3": 1, "fp8_e5m2": 1,
    "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "bool": 1,
}


def torch_dtype(name: str):
    import torch

    table = {
        "fp64": torch.float64, "fp32": torch.float32, "bf16": torch.bfloat16,
        "fp16": torch.float16, "fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2,
        "int64": torch.int64, "int32": torch.int32, "int16": torch.int16, "int8": torch.int8,
        "uint8": torch.uint8, "bool": torch.bool,
    }
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown dtype name {name!r}; known: {sorted(table)}") from None


def dtype_name(dtype) -> str:
    for name in DTYPE_BYTES:
        try:
            if torch_dtype(name) == dtype:
                return name
        except (ValueError, AttributeError):
            continue
    raise ValueError(f"unsupported torch dtype {dtype}")


@dataclass(frozen=True)
class Shape:
    """One benchmark shape of one operator, with its provenance.

    ``params`` merges the catalog's ``init_kwargs`` and ``input_kwargs`` (input wins); the two
    originals are kept so that reports can show exactly what the trace recorded.
    """

    op: str
    id: int | str
    params: Mapping[str, Any]
    description: str = ""
    init_kwargs: Mapping[str, Any] | None = None
    input_kwargs: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    smoke: bool = False  # a reduced shape made for CPU runs, not a catalog shape

    def __getitem__(self, key: str) -> Any:
        return self.params[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.params.get(key, default)

    @property
    def key(self) -> str:
        return f"{self.op}/{self.id}"

    def to_record(self) -> dict:
        return {
            "shape_id": self.id,
            "params": dict(self.params),
            "description": self.description,
            "provenance": dict(self.provenance),
            "weight": self.weight,
            "smoke": self.smoke,
        }


@dataclass(frozen=True)
class Cost:
    """First-principles cost of one call: FLOPs per dtype path, bytes read and written once.

    FLOP paths: ``bf16_tc``, ``fp16_tc``, ``fp8_e4m3_tc``, ``tf32_tc`` (tensor cores), ``fp32``
    (CUDA-core arithmetic). Structural operators have no FLOPs at all. Paths overlap, so the
    roofline takes the slowest one; ``serial`` names paths that cannot overlap the others (their
    time adds), and the cost comment must say why.
    """

    flops: Mapping[str, float]
    bytes_read: float
    bytes_written: float
    serial: tuple[str, ...] = ()

    @property
    def total_flops(self) -> float:
        return float(sum(self.flops.values()))

    @property
    def total_bytes(self) -> float:
        return float(self.bytes_read + self.bytes_written)

    def to_record(self) -> dict:
        rec = {"flops": {k: float(v) for k, v in self.flops.items() if v},
               "bytes_read": float(self.bytes_read), "bytes_written": float(self.bytes_written)}
        if self.serial:
            rec["serial"] = list(self.serial)
        return rec


def tensor_bytes(shape: Iterable[int], dtype: str) -> int:
    """Bytes of a dense tensor of catalog dtype ``dtype``."""
    return int(math.prod(int(s) for s in shape)) * DTYPE_BYTES[dtype]


@dataclass(frozen=True)
class Tolerance:
    """An element passes when |got - ref| <= atol + rtol * |ref|; the RMS-relative error of the whole
    output must also stay under ``rms_rtol`` (it catches a systematic bias a per-element test
    with a loose atol would let through). ``outlier_frac`` lets that fraction of elements miss
    the per-element bound (default none): for long low-precision recurrences whose upstream tests
    judge by RMS error alone, one element in ten million off by a bf16 ulp is not a defect."""

    atol: float
    rtol: float
    rms_rtol: float | None = None
    outlier_frac: float = 0.0

    def to_record(self) -> dict:
        return dataclasses.asdict(self)


# Per-dtype defaults. bf16 keeps 8 mantissa bits (one rounding is up to 2^-8 relative), fp16 11.
DEFAULT_TOLERANCE = {
    "fp32": Tolerance(atol=1e-5, rtol=1e-5, rms_rtol=1e-5),
    "tf32": Tolerance(atol=1e-3, rtol=1e-3, rms_rtol=1e-3),
    "fp16": Tolerance(atol=1e-3, rtol=2e-3, rms_rtol=1e-3),
    "bf16": Tolerance(atol=1e-2, rtol=1.6e-2, rms_rtol=8e-3),
    "fp8_e4m3": Tolerance(atol=2e-2, rtol=1.25e-1, rms_rtol=6e-2),
    "fp8_e5m2": Tolerance(atol=4e-2, rtol=2.5e-1, rms_rtol=1.2e-1),
}


@dataclass(frozen=True)
class Support:
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok

    @staticmethod
    def yes() -> "Support":
        return Support(True, "")

    @staticmethod
    def no(reason: str) -> "Support":
        if not reason:
            raise ValueError("a refusal must carry a reason")
        return Support(False, reason)


def _always(*_a, **_k) -> Support:
    return Support.yes()


@dataclass
class Impl:
    """A registered implementation of an operator.

    ``fn(**inputs)`` returns the outputs (a tensor, a tuple in ``OpSpec.output_names`` order, or a
    dict). When ``takes_out`` is set the runner passes preallocated, NaN-poisoned outputs as
    ``out=`` (a tensor or a tuple in ``output_names`` order), so nothing is allocated while timing.
    ``prepare(shape, inputs)`` runs once per shape before checking and timing (for example a
    compile); it may return extra facts that go into the record (``compile_s``).
    """

    op: str
    name: str
    fn: Callable[..., Any]
    available: Callable[[], Support] = _always
    supports: Callable[["Shape", Any], Support] = _always
    takes_out: bool = False
    prepare: Callable[["Shape", Any], dict] | None = None
    baseline: bool = False  # torch_eager / torch_compile / third party: what ours is compared with
    description: str = ""
    #: "ours", "peer" (ranked against ours) or "reference" (shown beside them, never ranked: e.g.
    #: a dense kernel on inputs gathered outside the timed call). Empty: from the name.
    role: str = ""

    def __post_init__(self):
        if not self.role:
            self.role = "ours" if self.name.startswith("ours") else "peer"
        if self.role not in ("ours", "peer", "reference"):
            raise ValueError(f"Impl {self.op}/{self.name}: role {self.role!r} is not ours, peer or reference")


class OpSpec:
    """Base class of every operator. Subclasses set the class attributes and override the methods."""

    name: str = ""
    dtype: str = "bf16"
    output_names: Sequence[str] = ("out",)
    # Outputs whose order is not unique (structural ops): compared by ``check_invariants``.
    structural: bool = False
    catalog: bool = True  # False for extra variants that share a catalog op's shapes

    def __init__(self, entry: Mapping[str, Any] | None = None, shapes: Sequence[Shape] = ()):  # noqa: D401
        self.entry = dict(entry or {})
        self.shapes: list[Shape] = list(shapes)
        self.importance: float = float(self.entry.get("importance", 0.0))

    @classmethod
    def from_catalog(cls, **kwargs) -> "OpSpec":
        """The spec with the packaged catalog's entry and shapes for ``cls.name``."""
        from solbench.catalog import make_shapes, operator_entries

        entry = operator_entries()[cls.name]
        return cls(entry, make_shapes(entry), **kwargs)

    # ---- to override ------------------------------------------------------------------------
    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        raise NotImplementedError

    def reference(self, **inputs):
        raise NotImplementedError

    def cost(self, shape: Shape) -> Cost:
        raise NotImplementedError

    def tolerance(self, shape: Shape) -> Tolerance:
        return DEFAULT_TOLERANCE[self.dtype if self.dtype in DEFAULT_TOLERANCE else "bf16"]

    def make_outputs(self, shape: Shape, inputs: Mapping[str, Any]):
        """Empty output tensors for ``out=`` implementations, in ``output_names`` order.
        Default: run nothing, return None (the operator has no ``out=`` form)."""
        return None

    def smoke_shapes(self) -> list[Shape]:
        """Shapes small enough for the CPU (and the Triton interpreter): the two catalog shapes
        that move the fewest bytes. Operators whose smallest shape is still too big override this
        with a reduced shape of the same structure (``smoke=True``)."""
        ranked = sorted(self.shapes, key=lambda s: self.cost(s).total_bytes)
        return ranked[:2]

    def check_invariants(self, shape: Shape, inputs: Mapping[str, Any], got: Mapping[str, Any],
                         ref: Mapping[str, Any]) -> list[str]:
        """For structural operators: a list of violated invariants (empty when correct)."""
        return []

    def compare_views(self, shape: Shape, inputs: Mapping[str, Any], got: Mapping[str, Any],
                      ref: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
        """Map raw outputs to what is compared numerically (e.g. dequantize fp8 values)."""
        return got, ref

    # ---- helpers ----------------------------------------------------------------------------
    def normalize_outputs(self, out) -> dict:
        """Turn an implementation's return value into ``{name: tensor}``."""
        if isinstance(out, Mapping):
            return dict(out)
        if isinstance(out, (tuple, list)):
            if len(out) != len(self.output_names):
                raise ValueError(f"{self.name}: expected outputs {list(self.output_names)}, got {len(out)} values")
            return dict(zip(self.output_names, out))
        return {self.output_names[0]: out}

    def __repr__(self) -> str:
        return f"<OpSpec {self.name} {self.dtype} {len(self.shapes)} shapes>"


# ---- registries ---------------------------------------------------------------------------------
_SPECS: dict[str, OpSpec] = {}
_IMPLS: dict[str, dict[str, Impl]] = {}
_LOADED = False
_LOAD_ERRORS: dict[str, str] = {}


def register_spec(spec: OpSpec) -> OpSpec:
    if not spec.name:
        raise ValueError("an OpSpec needs a name")
    _SPECS[spec.name] = spec
    return spec


def register_impl(op: str, name: str, *, available=None, supports=None, takes_out=False,
                  prepare=None, baseline=False, description=""):
    """Decorator: ``@register_impl("silu_and_mul", "ours_triton", takes_out=True)``."""

    def deco(fn):
        _IMPLS.setdefault(op, {})[name] = Impl(
            op=op, name=name, fn=fn, available=available or _always, supports=supports or _always,
            takes_out=takes_out, prepare=prepare, baseline=baseline,
            description=description or (fn.__doc__ or "").strip().split("\n")[0])
        return fn

    return deco


def add_impl(impl: Impl) -> Impl:
    _IMPLS.setdefault(impl.op, {})[impl.name] = impl
    return impl


#: Where the operator packages are: plugins loaded by name, each registering its spec and
#: implementations here on import (ops -> benchmark; the benchmark uses none of their names).
OPERATORS_PACKAGE = "solbench.ops"


def load_all() -> None:
    """Import every package of :data:`OPERATORS_PACKAGE` so that specs and impls register themselves."""
    global _LOADED
    if _LOADED:
        return
    ops = importlib.import_module(OPERATORS_PACKAGE)
    for mod in sorted(pkgutil.iter_modules(ops.__path__), key=lambda m: m.name):
        if mod.ispkg:
            # One broken operator package must not take the whole tool down; it is reported by
            # load_errors() (the CLI prints it, and the test suite fails on it).
            try:
                importlib.import_module(f"{OPERATORS_PACKAGE}.{mod.name}")
            except Exception as e:  # noqa: BLE001
                _LOAD_ERRORS[mod.name] = f"{type(e).__name__}: {e}"
    _LOADED = True


def load_errors() -> dict[str, str]:
    """Operator packages that failed to import, with the error."""
    load_all()
    return dict(_LOAD_ERRORS)


def get_spec(name: str) -> OpSpec:
    load_all()
    try:
        return _SPECS[name]
    except KeyError:
        raise KeyError(f"unknown operator {name!r}; known: {', '.join(sorted(_SPECS))}") from None


def all_specs(include_variants: bool = False) -> list[OpSpec]:
    load_all()
    specs = sorted(_SPECS.values(), key=lambda s: s.name)
    return [s for s in specs if include_variants or s.catalog]


def impls_for(op: str) -> dict[str, Impl]:
    load_all()
    return dict(_IMPLS.get(op, {}))
