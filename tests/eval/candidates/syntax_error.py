"""Bad input: not Python."""
def silu_and_mul(x)
    return x
