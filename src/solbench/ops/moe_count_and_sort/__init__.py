"""moe_count_and_sort: spec and implementations (importing registers them)."""
from solbench.ops.moe_count_and_sort import impls, spec  # noqa: F401
