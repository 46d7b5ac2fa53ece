"""moe_align_block_size: spec and implementations (importing registers them)."""
from solbench.ops.moe_align_block_size import impls, spec  # noqa: F401
