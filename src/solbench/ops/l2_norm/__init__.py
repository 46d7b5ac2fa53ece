"""l2_norm: spec and implementations (the kernel is solbench.kernels.rownorm's)."""
from solbench.ops.l2_norm import impls, spec  # noqa: F401  (registers the spec and impls)
