"""rms_norm: vLLM ``rms_norm`` (csrc/layernorm_kernels.cu, ``rms_norm_kernel``).

``out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight``, bf16 in and out, eps from the
catalog's ``init_kwargs`` (1e-6). Upstream reduces in fp32, rounds the normalized value to the
input dtype and then multiplies by the weight in that dtype (two roundings); the reference here
keeps everything in fp32 and rounds once, so it is the exact value both are compared against.
"""
from __future__ import annotations

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype

# fp32 operations per element: square and accumulate (2), scale by 1/rms (1), weight (1).
FLOPS_PER_ELEM = 4
# Per row: divide by n, add eps, sqrt, reciprocal.
FLOPS_PER_ROW = 4


def rms_normalize(v, eps: float):
    """``v / sqrt(mean(v^2, -1) + eps)`` in fp32 (the shared core of the RMS references)."""
    import torch

    v = v.float()
    return v * torch.rsqrt(v.square().mean(dim=-1, keepdim=True) + eps)


def eager_rms_norm(x, weight, eps):
    """What vLLM's ``RMSNorm.forward_native`` does: fp32 statistics, round, then weight in bf16
    (the torch baseline of rms_norm and, after the add, of fused_add_rms_norm)."""
    import torch

    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return xf.to(x.dtype) * weight


def norm_weight(n: int, dtype, device, gen):
    """A learned-scale-like weight: around 1 with a spread, never zero."""
    return rnd.randn((n,), dtype, device, gen, scale=0.25, shift=1.0)


class RmsNormOp(OpSpec):
    name = "rms_norm"
    dtype = "bf16"
    output_names = ("out",)

    def dims(self, shape: Shape) -> tuple[int, int]:
        return int(shape["token_count"]), int(shape["hidden_size"])

    def eps(self, shape: Shape) -> float:
        return float(shape.get("eps", 1e-6))

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        gen = rnd.generator(device, seed)
        t, n = self.dims(shape)
        dt = torch_dtype(self.dtype)
        # A per-token scale spread (0.25x..4x) makes every row's rms different, so a kernel that
        # mixes up rows' statistics fails.
        x = rnd.randn((t, n), dt, device, gen) * rnd.uniform((t, 1), dt, device, gen, 0.25, 4.0)
        return {"x": x, "weight": norm_weight(n, dt, device, gen), "eps": self.eps(shape)}

    def reference(self, x, weight, eps):
        """out = x / sqrt(mean(x^2) + eps) * weight, fp32, one rounding to x.dtype."""
        return (rms_normalize(x, eps) * weight.float()).to(x.dtype)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        return (torch.empty_like(inputs["x"]),)

    def cost(self, shape: Shape) -> Cost:
        # Read: x [T, n], weight [n]. Write: out [T, n]. FLOPs (fp32): 4 per element + 4 per row.
        t, n = self.dims(shape)
        b = 2  # bf16
        return Cost(flops={"fp32": FLOPS_PER_ELEM * t * n + FLOPS_PER_ROW * t},
                    bytes_read=(t * n + n) * b, bytes_written=t * n * b)

    def tolerance(self, shape: Shape) -> Tolerance:
        # |out| is O(1). One bf16 rounding is 2^-9 relative (the interpreter truncates: 2^-8);
        # upstream-style baselines round twice. rtol 2^-6 covers both; atol for values near 0.
        return Tolerance(atol=1e-2, rtol=1.6e-2, rms_rtol=8e-3)


register_spec(RmsNormOp.from_catalog())
