"""mla_decode_attention: DeepSeek MLA decode over the absorbed latent cache (aiter mla_decode_fwd)."""
from solbench.ops.mla_decode_attention import impls, spec  # noqa: F401  (registers the spec and impls)
