"""block_scaled_mm: spec and implementations (importing registers them)."""
from solbench.ops.block_scaled_mm import impls, spec  # noqa: F401
