"""silu_and_mul and the parameterized GLU activation family."""
from solbench.ops.silu_and_mul import impls, spec  # noqa: F401  (registers specs and impls)
