"""fused_rmsnorm_quant: spec and implementations (the kernel is solbench.kernels.fp8_quant's)."""
from solbench.ops.fused_rmsnorm_quant import impls, spec  # noqa: F401  (registers the spec and impls)
