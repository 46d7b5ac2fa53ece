"""fused_moe: spec and implementations (importing registers them)."""
from solbench.ops.fused_moe import impls, spec  # noqa: F401
