"""topk_filter: spec and implementations (importing registers them)."""
from solbench.ops.topk_filter import impls, spec  # noqa: F401
