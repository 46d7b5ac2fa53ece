"""unified_attention: vLLM's Triton unified (prefill + decode) paged attention."""
from solbench.ops.unified_attention import impls, spec  # noqa: F401  (registers the spec and impls)
