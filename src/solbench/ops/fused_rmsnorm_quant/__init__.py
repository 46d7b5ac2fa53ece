"""fused_rmsnorm_quant: spec, implementations and public API (api.py)."""
from solbench.ops.fused_rmsnorm_quant import impls, spec  # noqa: F401  (registers the spec and impls)
