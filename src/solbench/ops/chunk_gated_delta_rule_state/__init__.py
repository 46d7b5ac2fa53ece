"""chunk_gated_delta_rule_state: the chunk-state recurrence of gated-delta-rule prefill (fla chunk_gated_delta_rule_fwd_h)."""
from solbench.ops.chunk_gated_delta_rule_state import impls, spec  # noqa: F401  (registers the spec and impls)
