"""attention_forward: varlen (packed) bidirectional prefill attention, vLLM's encoder attention path."""
from solbench.ops.attention_forward import impls, spec  # noqa: F401  (registers the spec and impls)
