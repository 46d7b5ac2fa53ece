"""silu_and_mul (vLLM ``silu_and_mul``, csrc/activation_kernels.cu) and its GLU siblings.

The catalog operator is ``silu_and_mul``: ``x[..., 2d] = [gate | up]`` ->
``out[..., d] = silu(gate) * up``, bf16. The variants ``gelu_and_mul``, ``gelu_tanh_and_mul`` and
``swiglu_oai`` (gpt-oss: interleaved, alpha 1.702, limit 7, up + 1) are not catalog operators;
they run on the same 37 shapes so the whole family is measured together.
"""
from __future__ import annotations

from dataclasses import replace

from solbench.catalog import make_shapes, operator_entries
from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, tensor_bytes, torch_dtype
from solbench.kernels.activation import ActivationSpec, get_activation, reference_glu

# Approximate fp32 operations per output element of act(g) (exp and reciprocal count as one each).
_ACT_FLOPS = {"silu": 5, "gelu": 8, "gelu_tanh": 9, "relu": 1}


class GluOp(OpSpec):
    dtype = "bf16"
    output_names = ("out",)

    def __init__(self, name: str, activation: ActivationSpec, entry=None, shapes=(), catalog=True):
        self.name = name
        self.activation = activation
        self.catalog = catalog
        super().__init__(entry, shapes)

    def x_shape(self, shape: Shape) -> list[int]:
        dims = list(shape["shape"])
        if not dims or dims[-1] % 2:
            raise ValueError(f"{self.name} shape {dims}: the last dim must be even ([..., 2d])")
        return dims

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        gen = rnd.generator(device, seed)
        # Scale 2 puts a good share of gates past the clamp limit of swiglu and into both tails
        # of the activations, where approximations differ most.
        return {"x": rnd.randn(self.x_shape(shape), torch_dtype(self.dtype), device, gen, scale=2.0)}

    def reference(self, x):
        """out = act(x[..., :d]) * (x[..., d:] + up_shift), clamped by limit if set; fp32 math."""
        return reference_glu(x, self.activation)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        x = inputs["x"]
        return (torch.empty((*x.shape[:-1], x.shape[-1] // 2), dtype=x.dtype, device=x.device),)

    def cost(self, shape: Shape) -> Cost:
        # Read: x [..., 2d]. Write: out [..., d]. FLOPs: act + clamp + shift + one multiply, fp32.
        dims = self.x_shape(shape)
        n_out = 1
        for s in dims[:-1]:
            n_out *= s
        n_out *= dims[-1] // 2
        a = self.activation
        per = _ACT_FLOPS[a.kind] + 1 + (3 if a.limit is not None else 0) + (1 if a.up_shift else 0)
        return Cost(flops={"fp32": per * n_out}, bytes_read=tensor_bytes(dims, self.dtype),
                    bytes_written=n_out * 2)

    def tolerance(self, shape: Shape) -> Tolerance:
        # One bf16 rounding of the output is 2^-9 relative; eager baselines round the gate and the
        # activation too (three roundings), hence rtol 2^-6 with a small atol for values near 0.
        return Tolerance(atol=1e-2, rtol=1.6e-2, rms_rtol=8e-3)


_entry = operator_entries()["silu_and_mul"]
silu_and_mul = register_spec(GluOp("silu_and_mul", get_activation("silu"), _entry, make_shapes(_entry)))

VARIANTS = {
    "gelu_and_mul": get_activation("gelu"),
    "gelu_tanh_and_mul": get_activation("gelu_tanh"),
    "swiglu_oai": replace(get_activation("swiglu"), layout="interleaved"),
}

GLU_SPECS: dict[str, GluOp] = {"silu_and_mul": silu_and_mul}
for _name, _act in VARIANTS.items():
    GLU_SPECS[_name] = register_spec(GluOp(_name, _act, entry={**silu_and_mul.entry, "name": _name, "importance": 0.0},
                        shapes=[replace(s, op=_name) for s in silu_and_mul.shapes], catalog=False))
