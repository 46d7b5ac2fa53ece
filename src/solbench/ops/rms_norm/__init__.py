"""rms_norm: spec and implementations (the kernel is solbench.kernels.rownorm's)."""
from solbench.ops.rms_norm import impls, spec  # noqa: F401  (registers the spec and impls)
