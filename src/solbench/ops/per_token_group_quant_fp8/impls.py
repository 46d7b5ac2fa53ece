"""per_token_group_quant_fp8 implementations: ours_triton, torch_eager, torch_compile, vllm.

PyTorch has no native per-group fp8 quantization, so there is no ``torch_native`` peer.
"""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, Support, add_impl
from solbench.kernels.fp8_format import FP8_E4M3FN_MAX, fp8_dtype
from solbench.ops.per_token_group_quant_fp8.spec import GROUP_QUANT_SPECS
from solbench.peers import VLLM

OP = "per_token_group_quant_fp8"

#: Peak bytes per element while the checker runs the eager formulation: x and its checker copy
#: (2 + 2), reference and output fp8 (1 + 1), and the eager fp32 temporaries (upcast, quotient,
#: clamp: 4 + 4 + 4).
EAGER_BYTES_PER_ELEM = 18
#: Shapes whose estimated eager peak exceeds this are refused (the largest catalog shapes,
#: 2-3M tokens x 2048, would need 75-115 GB).
EAGER_PEAK_LIMIT = 48 * 2 ** 30


def eager_group_quant(x, group_size, eps, ue8m0=False):
    """What a user writes: view as groups, fp32 max-abs, scale, divide, clamp, cast."""
    import torch

    k = x.shape[-1]
    xg = x.float().view(*x.shape[:-1], k // group_size, group_size)
    scale = xg.abs().amax(dim=-1, keepdim=True).clamp_min(eps) / FP8_E4M3FN_MAX
    if ue8m0:
        scale = torch.exp2(torch.ceil(torch.log2(scale)))
    q = (xg / scale).clamp(-FP8_E4M3FN_MAX, FP8_E4M3FN_MAX).to(fp8_dtype())
    return q.view(x.shape), scale.squeeze(-1)


def _eager_supports(shape, device) -> Support:
    t, k = int(shape["token_count"]), int(shape["hidden_size"])
    need = t * k * EAGER_BYTES_PER_ELEM
    if need > EAGER_PEAK_LIMIT:
        return Support.no(f"the eager formulation materializes fp32 copies of x: ~{need / 2**30:.0f} GiB peak "
                          f"with the checker's copies (limit {EAGER_PEAK_LIMIT / 2**30:.0f} GiB)")
    return Support.yes()


_VLLM = ("vllm.model_executor.layers.quantization.utils.fp8_utils", "per_token_group_quant_fp8")


def _register(spec) -> None:
    op, ue8m0, colmajor = spec.name, spec.ue8m0, spec.column_major

    def ours(x, group_size, eps, out=None):
        from solbench.kernels.fp8_quant import per_token_group_quant_fp8

        return per_token_group_quant_fp8(x, group_size, eps, column_major_scales=colmajor, use_ue8m0=ue8m0, out=out)

    def eager(x, group_size, eps):
        return eager_group_quant(x, group_size, eps, ue8m0)

    def vllm(x, group_size, eps):
        fn = VLLM.get(*_VLLM)
        return fn(x, group_size, eps, column_major_scales=colmajor, use_ue8m0=ue8m0)

    layout = ("UE8M0 " if ue8m0 else "") + ("column-major" if colmajor else "row-major") + " scales"
    add_impl(Impl(op, "ours_triton", ours, available=triton_support, takes_out=True,
                  description=f"solbench Triton per-token-group fp8 quant (one pass, ~4K-element tiles; {layout})"))
    desc = "view as groups, fp32 max-abs, " + ("exp2(ceil(log2)) scale, " if ue8m0 else "") + "divide, clamp, cast"
    register_torch_baselines(op, eager, desc)
    # torch.compile fuses the same function into one kernel without the fp32 temporaries, so
    # only the eager baseline is refused on the largest shapes: re-register it with that refusal.
    add_impl(Impl(op, "torch_eager", eager, supports=_eager_supports, baseline=True, description=desc))
    add_impl(Impl(op, "vllm", vllm, available=lambda: VLLM.support(*_VLLM), baseline=True,
                  description=f"vllm fp8_utils.per_token_group_quant_fp8 (CUDA kernel, {layout})"))


for _spec in GROUP_QUANT_SPECS.values():
    _register(_spec)
