"""gated_rms_norm: spec, implementations and public API (api.py)."""
from solbench.ops.gated_rms_norm import impls, spec  # noqa: F401  (registers the spec and impls)
