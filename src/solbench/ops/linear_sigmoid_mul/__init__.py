"""linear_sigmoid_mul: spec and implementations (importing registers them)."""
from solbench.ops.linear_sigmoid_mul import impls, spec  # noqa: F401
