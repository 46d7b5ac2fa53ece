"""gated_delta_rule_update: the fused sigmoid-gated delta rule recurrent step (sglang fused_sigmoid_gating_delta_rule_update)."""
from solbench.ops.gated_delta_rule_update import impls, spec  # noqa: F401  (registers the spec and impls)
