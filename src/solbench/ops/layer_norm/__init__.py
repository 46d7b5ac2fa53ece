"""layer_norm: spec and implementations (the kernel is solbench.kernels.rownorm's)."""
from solbench.ops.layer_norm import impls, spec  # noqa: F401  (registers the spec and impls)
