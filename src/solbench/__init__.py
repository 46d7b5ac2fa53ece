"""solbench: speed-of-light benchmark, kernel library and tools for LLM-inference operators.

``import solbench`` registers every public kernel as a ``torch.ops.solbench`` custom op (see
``KERNEL_MODULES``). Library entry points::

    solbench.glu(x, spec, out=None)           # the parameterized GLU family
    solbench.silu_and_mul(x, out=None)
    solbench.ActivationSpec / get_activation / register_activation
    solbench.rms_norm / fused_add_rms_norm(_) / fused_qk_rmsnorm(_) / gated_rms_norm / l2_norm / layer_norm
    solbench.unified_attention / varlen_attention / paged_attention_decode / mla_decode
    solbench.reshape_and_cache / top_k_mask_logits / fused_qkv_rope / mrope / linear_sigmoid_mul
    solbench.topk_gating_softmax / moe_align_block_size / moe_count_and_sort / moe_sum_reduce
    solbench.fused_moe / fp8_block_fused_moe
    solbench.dynamic_per_token_quant_fp8 / rms_norm_quant / fused_add_rms_norm_quant / per_token_group_quant_fp8

Off CUDA (and on the CPU unless ``TRITON_INTERPRET=1``) they compute with their torch formulation.
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "glu": "solbench.kernels.glu",
    "silu_and_mul": "solbench.kernels.glu",
    "gelu_and_mul": "solbench.kernels.glu",
    "gelu_tanh_and_mul": "solbench.kernels.glu",
    "ActivationSpec": "solbench.kernels.activation",
    "get_activation": "solbench.kernels.activation",
    "register_activation": "solbench.kernels.activation",
    "known_activations": "solbench.kernels.activation",
    # the normalization family (one Triton row-norm kernel, kernels/rownorm.py)
    "rms_norm": "solbench.kernels.rownorm",
    "fused_add_rms_norm": "solbench.kernels.rownorm",
    "fused_add_rms_norm_": "solbench.kernels.rownorm",
    "fused_qk_rmsnorm": "solbench.kernels.rownorm",
    "fused_qk_rmsnorm_": "solbench.kernels.rownorm",
    "gated_rms_norm": "solbench.kernels.rownorm",
    "l2_norm": "solbench.kernels.rownorm",
    "layer_norm": "solbench.kernels.rownorm",
    # Gated DeltaNet and the causal conv (solbench/kernels/linear_attention/, kernels/conv.py)
    "gated_delta_rule_update": "solbench.kernels.linear_attention",
    "chunk_gated_delta_rule_state": "solbench.kernels.linear_attention",
    "chunk_delta_rule_output": "solbench.kernels.linear_attention",
    "causal_conv1d": "solbench.kernels.conv",
    "causal_conv1d_single": "solbench.kernels.conv",
    # attention (solbench/kernels/attention.py, kernels/mla.py)
    "unified_attention": "solbench.kernels.attention",
    "varlen_attention": "solbench.kernels.attention",
    "paged_attention_decode": "solbench.kernels.attention",
    "mla_decode": "solbench.kernels.mla",
    "block_scaled_mm": "solbench.kernels.gemm.block_fp8",
    "reshape_and_cache": "solbench.kernels.kv_cache",
    "top_k_mask_logits": "solbench.kernels.topk",
    "fused_qkv_rope": "solbench.kernels.rope",
    "mrope": "solbench.kernels.rope",
    "linear_sigmoid_mul": "solbench.kernels.gate",
    "topk_gating_softmax": "solbench.kernels.moe.routing",
    "moe_align_block_size": "solbench.kernels.moe.routing",
    "moe_count_and_sort": "solbench.kernels.moe.routing",
    "moe_sum_reduce": "solbench.kernels.moe.routing",
    "fused_moe": "solbench.kernels.moe.fused",
    "fp8_block_fused_moe": "solbench.kernels.moe.fused",
    "dynamic_per_token_quant_fp8": "solbench.kernels.fp8_quant",
    "fused_add_rms_norm_quant": "solbench.kernels.fp8_quant",
    "rms_norm_quant": "solbench.kernels.fp8_quant",
    "per_token_group_quant_fp8": "solbench.kernels.fp8_quant",
}


#: The modules that define the library's public kernels. ``import solbench`` imports each, which
#: registers its custom ops as ``torch.ops.solbench.<name>`` (functional, ``.out`` and in-place
#: ``<name>_`` forms). A new kernel family is listed here (and its public functions in ``_LAZY``).
#: Such a module must decorate no Triton kernel when imported (import the kernels inside the
#: launcher): ``triton.jit`` fixes compiled-or-interpreted when it decorates, and the command line
#: chooses (``TRITON_INTERPRET`` on a machine without a GPU) only after ``import solbench``.
KERNEL_MODULES = (
    "solbench.kernels.glu",
    "solbench.kernels.rownorm",
    "solbench.kernels.fp8_quant",
    "solbench.kernels.linear_attention.recurrent",
    "solbench.kernels.linear_attention.chunk",
    "solbench.kernels.conv",
    "solbench.kernels.attention",
    "solbench.kernels.mla",
    "solbench.kernels.gemm.block_fp8",
    "solbench.kernels.kv_cache",
    "solbench.kernels.topk",
    "solbench.kernels.rope",
    "solbench.kernels.gate",
    "solbench.kernels.cuda.glu",
    "solbench.kernels.cuda.block_fp8",
    "solbench.kernels.moe.routing",
    "solbench.kernels.moe.fused",
)


def _register_kernels() -> None:
    """Import every kernel module; one that fails to import is named in a warning and left out
    (the rest of the library, and the command line, keep working)."""
    import importlib
    import warnings

    for module in KERNEL_MODULES:
        try:
            importlib.import_module(module)
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"solbench: {module} failed to import and its ops are not registered: "
                          f"{type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)


_register_kernels()


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'solbench' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
