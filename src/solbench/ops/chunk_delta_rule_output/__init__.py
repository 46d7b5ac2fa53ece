"""chunk_delta_rule_output: the output stage of chunked gated-delta-rule prefill (fla chunk_fwd_o)."""
from solbench.ops.chunk_delta_rule_output import impls, spec  # noqa: F401  (registers the spec and impls)
