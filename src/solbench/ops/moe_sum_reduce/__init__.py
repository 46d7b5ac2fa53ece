"""moe_sum_reduce: the top-k combine of fused MoE (sglang moe_sum_reduce_triton)."""
from solbench.ops.moe_sum_reduce import impls, spec  # noqa: F401  (registers the spec and impls)
