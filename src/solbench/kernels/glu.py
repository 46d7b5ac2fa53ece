"""The GLU family: ``out = act(gate) * (up + up_shift)`` with optional clamping, one Triton kernel
(``_glu_triton``, imported at the first launch) with the activation chosen at compile time.

Public functions: :func:`glu` (``glu(x, spec, out=None)``) and the classic fused names
:func:`silu_and_mul`, :func:`gelu_and_mul`, :func:`gelu_tanh_and_mul`; custom ops
``torch.ops.solbench.glu`` / ``glu.out`` (the activation passed as its parameters) and the same for
each classic name, with fake implementations, computed with torch off CUDA (:func:`reference_glu`).

An :class:`ActivationSpec` names the activation and its parameters; a registry maps names (as
they appear in model configs) to builders, so a serving framework can go from a HuggingFace
config to a kernel call without a chain of ``if``s::

    spec = ActivationSpec.from_hf_config(cfg)   # e.g. gpt-oss -> swiglu(alpha=1.702, limit=7.0)
    y = solbench.glu(x, spec)

Semantics (all math in fp32, one rounding at the end):

* ``silu`` / ``swish``: act(g) = g * sigmoid(alpha * g), alpha = 1 unless given.
* ``swiglu`` (gpt-oss): alpha = 1.702, limit = 7.0, up_shift = 1.0 by default:
  g = min(g, limit); u = clamp(u, -limit, limit); out = (u + 1) * g * sigmoid(alpha * g).
* ``gelu`` / ``geglu``: act(g) = 0.5 g (1 + erf(g / sqrt 2)).
* ``gelu_tanh``: act(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))).
* ``reglu``: act(g) = max(g, 0).

With ``limit`` set (any mode), the gate is clamped above at ``limit`` and the up half to
[-limit, limit] before the activation. ``layout="halves"`` reads ``[gate | up]`` (vLLM/SGLang
``silu_and_mul``); ``layout="interleaved"`` reads ``[g0, u0, g1, u1, ...]`` (gpt-oss).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch

from solbench.kernels.common import (as_rows, check_disjoint, check_dtype, check_out, fill_sms, functional_op,
                                     kernel_op, largest_pow2_divisor, next_pow2, pow2_range)
from solbench.kernels.rowwise import MAX_TILE
from solbench.runtime import tuning

# Kernel mode ids: the Triton kernel switches on these at compile time.
ACT_MODES = {"silu": 0, "gelu": 1, "gelu_tanh": 2, "relu": 3}
LAYOUTS = ("halves", "interleaved")


@dataclass(frozen=True)
class ActivationSpec:
    name: str
    alpha: float | None = None
    limit: float | None = None
    up_shift: float = 0.0
    layout: str = "halves"
    kind: str = "silu"  # which of ACT_MODES computes act(g)

    def __post_init__(self):
        if self.kind not in ACT_MODES:
            raise ValueError(f"activation kind {self.kind!r} is not one of {sorted(ACT_MODES)}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout {self.layout!r} is not one of {list(LAYOUTS)}")
        if self.limit is not None and not (self.limit > 0 and math.isfinite(self.limit)):
            raise ValueError(f"limit must be a positive finite number, got {self.limit!r}")
        if self.alpha is not None and not math.isfinite(self.alpha):
            raise ValueError(f"alpha must be finite, got {self.alpha!r}")
        if self.alpha is not None and self.kind != "silu":
            raise ValueError(f"alpha applies to the silu/swish family only, not to {self.name!r}")

    @property
    def effective_alpha(self) -> float:
        return 1.0 if self.alpha is None else float(self.alpha)

    @property
    def is_plain(self) -> bool:
        """True for the classic fused ops (silu_and_mul, gelu_and_mul, gelu_tanh_and_mul)."""
        return self.limit is None and self.up_shift == 0.0 and self.effective_alpha == 1.0 \
            and self.layout == "halves"

    @staticmethod
    def from_hf_config(cfg: Any) -> "ActivationSpec":
        """Read ``hidden_act`` (or ``hidden_activation``), ``swiglu_alpha`` and ``swiglu_limit`` from
        a HuggingFace-style config (object or dict), with getattr-style defaults."""
        def get(key, default=None):
            if isinstance(cfg, dict):
                return cfg.get(key, default)
            return getattr(cfg, key, default)

        name = get("hidden_act") or get("hidden_activation")
        if name is None:
            raise ValueError("config has neither 'hidden_act' nor 'hidden_activation'; "
                             f"known activations: {', '.join(known_activations())}")
        kwargs = {}
        if get("swiglu_alpha") is not None:
            kwargs["alpha"] = float(get("swiglu_alpha"))
        if get("swiglu_limit") is not None:
            kwargs["limit"] = float(get("swiglu_limit"))
        return get_activation(str(name), **kwargs)


_REGISTRY: dict[str, Callable[..., ActivationSpec]] = {}


def register_activation(name: str, builder: Callable[..., ActivationSpec]) -> None:
    """Register ``builder(**kwargs) -> ActivationSpec`` under ``name`` (case-insensitive)."""
    if not callable(builder):
        raise TypeError("builder must be callable")
    _REGISTRY[name.lower()] = builder


def known_activations() -> list[str]:
    return sorted(_REGISTRY)


def get_activation(name: str, **kwargs) -> ActivationSpec:
    try:
        builder = _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(known_activations())}") from None
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return builder(**kwargs)


def _builder(name: str, kind: str, allow_alpha: bool, **defaults):
    def build(**kw):
        unknown = set(kw) - {"alpha", "limit", "up_shift", "layout"}
        if unknown:
            raise TypeError(f"{name}: unknown parameters {sorted(unknown)}")
        if "alpha" in kw and not allow_alpha:
            raise ValueError(f"{name} takes no alpha (only the silu/swish family does)")
        return ActivationSpec(name=name, kind=kind, **{**defaults, **kw})

    return build


for _n in ("silu", "swish"):
    register_activation(_n, _builder(_n, "silu", True))
register_activation("swiglu", _builder("swiglu", "silu", True, alpha=1.702, limit=7.0, up_shift=1.0))
for _n in ("gelu", "geglu"):
    register_activation(_n, _builder(_n, "gelu", False))
for _n in ("gelu_tanh", "gelu_pytorch_tanh", "gelu_new"):
    register_activation(_n, _builder(_n, "gelu_tanh", False))
register_activation("reglu", _builder("reglu", "relu", False))
register_activation("relu", _builder("relu", "relu", False))


def split_gate_up(x, layout: str):
    if layout == "interleaved":
        return x[..., 0::2], x[..., 1::2]
    d = x.shape[-1] // 2
    return x[..., :d], x[..., d:]


def reference_glu(x, spec: ActivationSpec):
    """fp32 reference; casts once to ``x.dtype`` at the end."""
    g, u = split_gate_up(x.float(), spec.layout)
    if spec.limit is not None:
        g = g.clamp(max=spec.limit)
        u = u.clamp(-spec.limit, spec.limit)
    if spec.kind == "silu":
        a = g * torch.sigmoid(spec.effective_alpha * g)
    elif spec.kind == "gelu":
        a = 0.5 * g * (1.0 + torch.erf(g * (1.0 / math.sqrt(2.0))))
    elif spec.kind == "gelu_tanh":
        a = 0.5 * g * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (g + 0.044715 * g * g * g)))
    else:
        a = g.clamp_min(0.0)
    return (a * (u + spec.up_shift)).to(x.dtype)


def with_layout(spec: ActivationSpec, layout: str) -> ActivationSpec:
    return replace(spec, layout=layout)


# ---- the public functions and their custom ops -----------------------------------------------------

SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
_KINDS = {mode: kind for kind, mode in ACT_MODES.items()}


def _glu_eager(x, out, act, alpha, limit, has_limit, up_shift, interleaved) -> None:
    check_disjoint("glu", (("out", out),), (("x", x),))
    kind = _KINDS[act]
    spec = ActivationSpec(name="glu", kind=kind, alpha=alpha if kind == "silu" else None,
                          limit=limit if has_limit else None, up_shift=up_shift,
                          layout="interleaved" if interleaved else "halves")
    out.copy_(reference_glu(x, spec))


def _glu_out_shape(x):
    return (*x.shape[:-1], x.shape[-1] // 2)


@kernel_op("solbench::glu.out", mutates_args=("out",), eager=_glu_eager)
def _glu_op(x: torch.Tensor, out: torch.Tensor, act: int, alpha: float, limit: float, has_limit: bool,
            up_shift: float, interleaved: bool) -> None:
    from solbench.kernels._glu_triton import launch_glu

    check_disjoint("glu", (("out", out),), (("x", x),))
    launch_glu(as_rows(x, "glu"), as_rows(out, "glu", "out"), act, alpha, limit if has_limit else None,
               up_shift, interleaved)


@_glu_op.register_fake
def _glu_fake(x, out, act, alpha, limit, has_limit, up_shift, interleaved) -> None:
    return None


functional_op("solbench::glu", _glu_op, lambda x, *_: (x.new_empty(_glu_out_shape(x)),))


def _register_plain(name: str, activation: str):
    """``torch.ops.solbench.<name>(x)`` and ``<name>.out(x, out)``: the GLU op with a fixed
    built-in activation (vLLM's signature without the activation's parameters)."""
    spec = get_activation(activation)
    args = (ACT_MODES[spec.kind], spec.effective_alpha, 0.0, False, float(spec.up_shift), False)

    def body(x: torch.Tensor, out: torch.Tensor) -> None:
        _glu_op.fn(x, out, *args)

    out_op = kernel_op(f"solbench::{name}.out", mutates_args=("out",), eager=body)(body)  # glu.out picks the path
    out_op.register_fake(lambda x, out: None)
    functional_op(f"solbench::{name}", out_op, lambda x: (x.new_empty(_glu_out_shape(x)),))


for _name, _act in (("silu_and_mul", "silu"), ("gelu_and_mul", "gelu"), ("gelu_tanh_and_mul", "gelu_tanh")):
    _register_plain(_name, _act)


def glu(x: torch.Tensor, spec: ActivationSpec | str = "silu", out: torch.Tensor | None = None) -> torch.Tensor:
    """``act(gate) * (up + up_shift)`` over the last dim of ``x`` (``[..., 2d]`` -> ``[..., d]``).

    ``spec`` is an :class:`ActivationSpec` or a registered name. ``x`` may have any leading dims
    and a row stride (its last dim must be contiguous); bf16, fp16 and fp32 are supported. Math
    is in fp32 with one rounding to ``x.dtype``. Returns ``out``.
    """
    if isinstance(spec, str):
        spec = get_activation(spec)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"glu: x must be a torch.Tensor, got {type(x).__name__}")
    check_dtype(x, SUPPORTED_DTYPES, "glu")
    if x.dim() == 0 or x.shape[-1] % 2:
        raise ValueError(f"glu: the last dimension of x must be even ([..., 2*d] holding gate and up), "
                         f"got shape {tuple(x.shape)}")
    out_shape = _glu_out_shape(x)
    if out is None:
        out = torch.empty(out_shape, dtype=x.dtype, device=x.device)
    else:
        check_out(out, out_shape, x.dtype, x.device, "glu")
    as_rows(x, "glu")            # validate strides up front, with the public name in the error
    as_rows(out, "glu", "out")
    _glu_op(x, out, ACT_MODES[spec.kind], spec.effective_alpha,
                            float(spec.limit) if spec.limit is not None else 0.0, spec.limit is not None,
                            float(spec.up_shift), spec.layout == "interleaved")
    return out


def silu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """vLLM's ``silu_and_mul``: ``silu(x[..., :d]) * x[..., d:]``."""
    return glu(x, "silu", out=out)


def gelu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``gelu(x[..., :d]) * x[..., d:]`` with the exact (erf) GELU."""
    return glu(x, "gelu", out=out)


def gelu_tanh_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``gelu_tanh(x[..., :d]) * x[..., d:]`` with the tanh-approximated GELU."""
    return glu(x, "gelu_tanh", out=out)


# ---- launch options -----------------------------------------------------------------------------
#: Tuned-table keys: the erf GELU spends about 1.5x the instructions per element of the others and
#: is near the issue limit, so its tiles are tuned apart from the memory-bound modes (where a
#: half-masked column block costs nothing, it costs compute here).
KERNEL = "glu"
KERNEL_ERF = "glu_erf"
ACT_GELU_ERF = ACT_MODES["gelu"]


@dataclass(frozen=True)
class GluOptions:
    """Launch options of the GLU kernel: each program owns ``block_m`` rows x ``block_n`` columns
    of the output, with ``num_warps`` warps."""

    block_m: int
    block_n: int
    num_warps: int


def glu_options(rows: int, d: int, elem_bytes: int = 2, act: int = 0,
                options: GluOptions | None = None) -> GluOptions:
    """The tile for ``rows`` rows of ``d`` outputs: ``options`` when given, else this device's
    tuned tile for ``d`` (runtime/tuning.py), ``block_m`` capped by the row count either way;
    a regular tuned entry, tuned on larger launches, is also split by kernels/common.fill_sms.
    Else first principles: about 4-8K output elements per program, so that each program keeps
    enough bytes in flight; decode shapes (few rows) get one row per program and split the row
    across programs instead, and no launch packs rows so that SMs go without a program
    (kernels/common.fill_sms). For the erf GELU the first-principles column block divides ``d``
    when a power of two >= 128 does (no masked lanes doing arithmetic)."""
    kernel = KERNEL_ERF if act == ACT_GELU_ERF else KERNEL
    if options is not None:
        return GluOptions(max(1, min(int(options.block_m), next_pow2(rows))), int(options.block_n),
                          int(options.num_warps))
    tuned, key = tuning.lookup_keyed(kernel, d, family="glu", elem_bytes=elem_bytes, rows=rows)
    if tuned is not None:
        block_m, block_n = max(1, min(int(tuned["block_m"]), next_pow2(rows))), int(tuned["block_n"])
        num_warps = int(tuned["num_warps"])
        if key != kernel:  # a tier's tile (few / many rows), measured on launches like this one: used as it is
            return GluOptions(block_m, block_n, num_warps)
    else:
        block_n = min(next_pow2(d), 1024)
        if act == ACT_GELU_ERF and d % block_n:
            divisor = largest_pow2_divisor(d, 1024)
            block_n = divisor if divisor >= 128 else block_n
        target = 8192 if rows * d >= (1 << 22) else 4096
        block_m = max(1, min(next_pow2(rows), target // block_n))
        num_warps = 8 if block_m * block_n >= 4096 else 4
    col_blocks = -(-d // block_n)
    block_m, num_warps = fill_sms(block_m, num_warps, lambda bm: -(-rows // bm) * col_blocks, tuning.sm_count())
    return GluOptions(block_m, block_n, num_warps)


# ---- what `solbench tune` tries --------------------------------------------------------------------
def glu_candidates(d: int, elem_bytes: int, rows: int, few_rows: bool = False) -> list[dict]:
    """Tiles (``block_m`` rows x ``block_n`` columns, ``num_warps``) worth measuring for the GLU on
    ``rows`` rows of ``d`` outputs. Column blocks: the first-principles 1024 (or the whole row),
    2048, and the largest power of two dividing d (no half-masked last block for d = 768, 1536,
    2560, ...); 32 or 64 bytes per thread on tiles of 4-16K elements. ``few_rows`` (latency-bound
    launches) adds narrower column blocks and down to one 8-byte vector per thread."""
    max_m = next_pow2(max(1, rows))
    divisor = largest_pow2_divisor(d, 2048)
    widths = {min(next_pow2(d), 1024), min(next_pow2(d), 2048)} | ({divisor} if divisor >= 128 else set())
    out: list[dict] = []
    if few_rows:
        # Latency-bound: any rows-per-program up to the rows there are, narrower column blocks
        # (more programs for one row), and down to one 8-byte vector per thread: with one or
        # two warps per SM the activation's arithmetic is a dependent chain per element that
        # nothing hides (H200: gelu on 183 x 1024 ran 1.4x silu's time with the same 2-warp
        # tile, 344 against 216 instructions), and more, shorter threads shorten it.
        widths |= {w for w in (256, 512) if w < next_pow2(d)}
        for block_n in sorted(widths):
            for block_m in pow2_range(1, min(max_m, MAX_TILE // block_n)):
                for thread_bytes in (8, 16, 32, 64):
                    warps = block_m * block_n * elem_bytes // (32 * thread_bytes)
                    if 1 <= warps <= 16:
                        out.append({"block_m": block_m, "block_n": block_n, "num_warps": warps})
        return out
    for block_n in sorted(widths):
        for tile in (4096, 8192, 16384):
            block_m = tile // block_n
            if block_m < 1 or block_m > max_m:
                continue
            for thread_bytes in (32, 64):
                warps = tile * elem_bytes // (32 * thread_bytes)
                if 2 <= warps <= 16:
                    out.append({"block_m": block_m, "block_n": block_n, "num_warps": warps})
    return out


tuning.register_family("glu", glu_candidates)
