"""fused_qk_rmsnorm: spec, implementations and public API (api.py)."""
from solbench.ops.fused_qk_rmsnorm import impls, spec  # noqa: F401  (registers the spec and impls)
