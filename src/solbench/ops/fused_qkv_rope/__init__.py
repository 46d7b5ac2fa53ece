"""fused_qkv_rope: QKV bias add + RoPE on q and k + split/transpose (rtp-llm add_fusedQKV_bias_transpose_prefill_kernel)."""
from solbench.ops.fused_qkv_rope import impls, spec  # noqa: F401  (registers the spec and impls)
