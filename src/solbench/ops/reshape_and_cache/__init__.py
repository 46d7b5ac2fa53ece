"""reshape_and_cache: write new key/value tokens into the paged KV cache (vLLM reshape_and_cache_flash)."""
from solbench.ops.reshape_and_cache import impls, spec  # noqa: F401  (registers the spec and impls)
