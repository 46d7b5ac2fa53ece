"""causal_conv1d: the depthwise causal conv1d + SiLU of Mamba / Gated DeltaNet prefill (sglang causal_conv1d_fn)."""
from solbench.ops.causal_conv1d import impls, spec  # noqa: F401  (registers the spec and impls)
