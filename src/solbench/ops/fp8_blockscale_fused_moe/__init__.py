"""fp8_blockscale_fused_moe: spec and implementations (importing registers them)."""
from solbench.ops.fp8_blockscale_fused_moe import impls, spec  # noqa: F401
