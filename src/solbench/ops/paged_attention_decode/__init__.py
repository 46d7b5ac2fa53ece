"""paged_attention_decode: one query token per sequence over a paged KV cache (aiter paged_attention_rocm)."""
from solbench.ops.paged_attention_decode import impls, spec  # noqa: F401  (registers the spec and impls)
