"""The GLU activation family: ``out = act(gate) * (up + up_shift)`` with optional clamping, as data
(what the benchmark's reference and the library's kernel, :mod:`solbench.kernels.glu`, both read).

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
    import torch

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
