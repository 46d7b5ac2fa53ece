"""fp8_dynamic_per_token_quant: spec and implementations (the kernel is solbench.kernels.fp8_quant's)."""
from solbench.ops.fp8_dynamic_per_token_quant import impls, spec  # noqa: F401  (registers the spec and impls)
