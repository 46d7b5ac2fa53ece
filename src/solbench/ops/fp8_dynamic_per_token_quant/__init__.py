"""fp8_dynamic_per_token_quant: spec, implementations and public API (api.py)."""
from solbench.ops.fp8_dynamic_per_token_quant import impls, spec  # noqa: F401  (registers the spec and impls)
