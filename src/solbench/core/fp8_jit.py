"""``@triton.jit`` helpers of the fp8 quantization kernels (``solbench.core.fp8`` hands them out on first use).

Apart because ``triton.jit`` fixes, when it decorates, whether a function is compiled or run
by the interpreter (``TRITON_INTERPRET``): ``import solbench`` registers the custom ops before
the command line has chosen, so it must decorate nothing."""
import triton
import triton.language as tl


@triton.jit
def fp8e4m3_bits(v, SOFT: tl.constexpr):
    """The uint8 bit pattern of ``float8_e4m3fn(v)`` (round to nearest even) for fp32 ``v``
    with ``|v| <= 448`` (callers clamp first). ``SOFT`` encodes with integer arithmetic:
    Triton's interpreter converts fp32 -> fp8 with ties rounded up and subnormals flushed to
    zero, so on the CPU we encode ourselves; on a GPU the hardware conversion (``cvt.rn``)
    is exact and cheaper."""
    if SOFT:
        b = v.to(tl.int32, bitcast=True)
        sign = (b >> 24) & 0x80
        a = b & 0x7FFFFFFF
        # Normal range (|v| >= 2^-6): keep 3 of 23 mantissa bits with round-to-nearest-even
        # (a carry rolls into the exponent), then rebias the exponent from 127 to 7.
        normal = ((a + 0x7FFFF + ((a >> 20) & 1)) >> 20) - (120 << 3)
        # Subnormal range: the code is round_half_even(|v| / 2^-9) (8 rolls into 2^-6).
        av = a.to(tl.float32, bitcast=True) * 512.0
        m = av.to(tl.int32)
        frac = av - m.to(tl.float32)
        up = (frac > 0.5) | ((frac == 0.5) & ((m & 1) == 1))
        sub = m + up.to(tl.int32)
        code = tl.where(a >= 0x3C800000, normal, sub)
        return (code | sign).to(tl.uint8)
    else:
        return v.to(tl.float8e4nv).to(tl.uint8, bitcast=True)


@triton.jit
def scale_and_inverse(amax, min_amax, UE8M0: tl.constexpr):
    """``(scale, 1 / scale)`` from a max-abs tile: ``scale = max(amax, min_amax) / 448``
    correctly rounded (UE8M0: rounded up to a power of two on the bits); the inverse is 0
    where the scale is 0 (an all-zero row with ``min_amax = 0`` quantizes to 0)."""
    s = tl.math.div_rn(tl.maximum(amax, min_amax), tl.full(amax.shape, 448.0, tl.float32))
    if UE8M0:
        sb = s.to(tl.int32, bitcast=True)
        s = ((sb + 0x7FFFFF) & 0x7F800000).to(tl.float32, bitcast=True)
    inv = tl.math.div_rn(tl.full(s.shape, 1.0, tl.float32), tl.where(s > 0, s, 1.0))
    return s, tl.where(s > 0, inv, 0.0)


@triton.jit
def quantize_bits(v, inv, SOFT: tl.constexpr):
    """uint8 e4m3fn bits of ``clamp(v * inv, -448, 448)``."""
    q = tl.minimum(tl.maximum(v * inv, -448.0), 448.0)
    return fp8e4m3_bits(q, SOFT)
