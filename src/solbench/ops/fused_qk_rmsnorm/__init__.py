"""fused_qk_rmsnorm: spec and implementations (the kernel is solbench.kernels.rownorm's)."""
from solbench.ops.fused_qk_rmsnorm import impls, spec  # noqa: F401  (registers the spec and impls)
