"""moe_topk_gating_softmax: spec and implementations (importing registers them)."""
from solbench.ops.moe_topk_gating_softmax import impls, spec  # noqa: F401
