"""layer_norm: spec, implementations and public API (api.py)."""
from solbench.ops.layer_norm import impls, spec  # noqa: F401  (registers the spec and impls)
