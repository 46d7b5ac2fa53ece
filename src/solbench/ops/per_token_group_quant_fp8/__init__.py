"""per_token_group_quant_fp8: spec, implementations and public API (api.py)."""
from solbench.ops.per_token_group_quant_fp8 import impls, spec  # noqa: F401  (registers the spec and impls)
