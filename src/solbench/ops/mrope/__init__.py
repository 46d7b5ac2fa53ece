"""mrope: multimodal (T/H/W sectioned) rotary embedding of q and k (vLLM triton_mrope)."""
from solbench.ops.mrope import impls, spec  # noqa: F401  (registers the spec and impls)
