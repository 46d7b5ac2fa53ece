"""per_token_group_quant_fp8: spec and implementations (the kernel is solbench.kernels.fp8_quant's)."""
from solbench.ops.per_token_group_quant_fp8 import impls, spec  # noqa: F401  (registers the spec and impls)
