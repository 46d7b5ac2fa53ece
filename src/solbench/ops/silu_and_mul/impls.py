"""Implementations of the GLU family: ours_triton, ours_cuda, torch_eager, torch_compile, liger."""
from __future__ import annotations

import math

from solbench.core.baselines import register_torch_baselines
from solbench.core.baselines import triton_support
from solbench.core.spec import Impl, Support, add_impl
from solbench.kernels.activation import ActivationSpec, split_gate_up
from solbench.ops.silu_and_mul.spec import GLU_SPECS
from solbench.peers import LIGER
from solbench.runtime import tuning

# liger's GLU functions, by liger_kind (0: SiLU, 1: tanh-GELU); the peer needs both to import.
_LIGER = (("liger_kernel.ops.swiglu", "LigerSiLUMulFunction"), ("liger_kernel.ops.geglu", "LigerGELUMulFunction"))


def eager_glu(x, spec: ActivationSpec):
    """What a user writes in PyTorch: slice, activate and multiply in the input dtype."""
    import torch
    import torch.nn.functional as F

    g, u = split_gate_up(x, spec.layout)
    if spec.limit is not None:
        g = g.clamp(max=spec.limit)
        u = u.clamp(-spec.limit, spec.limit)
    if spec.kind == "silu":
        a = F.silu(g) if spec.effective_alpha == 1.0 else g * torch.sigmoid(spec.effective_alpha * g)
    elif spec.kind == "gelu":
        a = F.gelu(g)
    elif spec.kind == "gelu_tanh":
        a = F.gelu(g, approximate="tanh")
    else:
        a = F.relu(g)
    return a * (u + spec.up_shift) if spec.up_shift else a * u


def _liger_available() -> Support:
    return LIGER.support(*_LIGER[0]) and LIGER.support(*_LIGER[1])


def _cuda_jit_available() -> Support:
    """ours_cuda needs an NVIDIA GPU (sm_80+) and NVRTC through cuda-bindings."""
    import torch

    if not torch.cuda.is_available() or torch.version.hip:
        return Support.no("the JIT CUDA kernels need an NVIDIA GPU")
    from solbench.kernels.cuda import jit

    why = jit.nvrtc_unavailable_reason()
    return Support.no(why) if why else Support.yes()


def _register(op: str) -> None:
    act = GLU_SPECS[op].activation

    def ours(x, out=None):
        from solbench.kernels.glu import glu

        return glu(x, act, out=out, backend="triton")

    add_impl(Impl(op, "ours_triton", ours, available=triton_support, takes_out=True,
                  description="solbench Triton GLU kernel (one pass, fp32 math)"))

    def ours_cuda(x, out=None):
        from solbench.kernels.cuda import glu as cuda_glu

        return cuda_glu.glu(x, act, out=out)

    def prepare_cuda(shape, inputs):
        # Compiles (or loads from the disk cache) at first use; the record keeps how long that took
        # and the fast-math / PDL choices.
        from solbench.kernels.cuda import glu as cuda_glu

        x = inputs["x"]
        facts = cuda_glu.prepare(x.dtype, act.kind, act.layout == "interleaved", act.limit is not None, x.device)
        return {"compile_s": facts.get("jit_first_use_s"), **facts}

    add_impl(Impl(op, "ours_cuda", ours_cuda, available=_cuda_jit_available, takes_out=True, prepare=prepare_cuda,
                  description="solbench CUDA C++ GLU kernel, NVRTC-compiled at first use (16-byte vectors, PDL on sm_90+)"))

    def bucket(params, act=act):
        # solbench.glu's backend choice looks up (key, d) in the rows' tier (kernels/glu.glu_backend).
        from solbench.kernels.activation import ACT_MODES
        from solbench.kernels.glu import backend_kernel

        *lead, width = params["shape"]
        return backend_kernel(ACT_MODES[act.kind]), width // 2, math.prod(lead)

    tuning.register_backend_choice(op, bucket)

    def eager(x):
        return eager_glu(x, act)

    register_torch_baselines(op, eager, "slice + F.<act> + mul in bf16")

    liger_kind = {"silu_and_mul": 0, "gelu_tanh_and_mul": 1}.get(op)
    if liger_kind is not None:
        def liger(x):
            g, u = split_gate_up(x, "halves")
            return LIGER.get(*_LIGER[liger_kind]).apply(g, u)

        add_impl(Impl(op, "liger", liger, available=_liger_available, baseline=True,
                      description="liger_kernel " + ("LigerSiLUMulFunction" if liger_kind == 0 else "LigerGELUMulFunction")))


for _op in GLU_SPECS:
    _register(_op)
