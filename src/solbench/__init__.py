"""solbench: speed-of-light benchmark, kernel library and tools for LLM-inference operators.

Library entry points (imported lazily, so ``import solbench`` stays cheap)::

    solbench.glu(x, spec, out=None)           # the parameterized GLU family
    solbench.silu_and_mul(x, out=None)
    solbench.ActivationSpec / get_activation / register_activation
    solbench.rms_norm / fused_add_rms_norm(_) / fused_qk_rmsnorm(_) / gated_rms_norm / l2_norm / layer_norm
    solbench.unified_attention / varlen_attention / paged_attention_decode / mla_decode
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "glu": "solbench.ops.silu_and_mul.api",
    "silu_and_mul": "solbench.ops.silu_and_mul.api",
    "gelu_and_mul": "solbench.ops.silu_and_mul.api",
    "gelu_tanh_and_mul": "solbench.ops.silu_and_mul.api",
    "ActivationSpec": "solbench.ops.silu_and_mul.activation",
    "get_activation": "solbench.ops.silu_and_mul.activation",
    "register_activation": "solbench.ops.silu_and_mul.activation",
    "known_activations": "solbench.ops.silu_and_mul.activation",
    # the normalization family (one Triton row-norm kernel, core/rownorm.py)
    "rms_norm": "solbench.ops.rms_norm.api",
    "fused_add_rms_norm": "solbench.ops.fused_add_rms_norm.api",
    "fused_add_rms_norm_": "solbench.ops.fused_add_rms_norm.api",
    "fused_qk_rmsnorm": "solbench.ops.fused_qk_rmsnorm.api",
    "fused_qk_rmsnorm_": "solbench.ops.fused_qk_rmsnorm.api",
    "gated_rms_norm": "solbench.ops.gated_rms_norm.api",
    "l2_norm": "solbench.ops.l2_norm.api",
    "layer_norm": "solbench.ops.layer_norm.api",
    # attention (solbench/kernels/attention.py, kernels/mla.py)
    "unified_attention": "solbench.kernels.attention",
    "varlen_attention": "solbench.kernels.attention",
    "paged_attention_decode": "solbench.kernels.attention",
    "mla_decode": "solbench.kernels.mla",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'solbench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
