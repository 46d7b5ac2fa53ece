"""The JIT CUDA backend: CUDA C++ kernels shipped as sources (``*.cu`` / ``*.cuh`` beside this
file), compiled at first use through NVRTC and cached on disk.

- :mod:`solbench.kernels.cuda.jit`: compile (NVRTC), disk cache, load and launch (CUDA driver),
  through ``cuda-bindings``; imported by nothing at ``import solbench``.
- :mod:`solbench.kernels.cuda.glu`: the GLU family (silu / gelu / gelu_tanh / relu and-mul,
  swiglu's alpha, limit and up_shift, the interleaved layout) as ``torch.ops.solbench.glu_cuda``.
- :mod:`solbench.kernels.cuda.block_fp8` and :mod:`solbench.kernels.cuda.attention`: sm_90a
  kernels on warpgroup MMAs and TMA (the ``backend="cuda"`` of block_scaled_mm, varlen_attention
  and unified_attention); :func:`sm90_unavailable_reason` says whether they can run here.
- ``python -m solbench.kernels.cuda``: first-use compile and cache-hit times of the GLU variants.
- :mod:`solbench.pdl_chain`: measures programmatic dependent launch on a chain of
  two dependent kernels in one CUDA graph (``python -m solbench.pdl_chain``).

See docs/JIT_CUDA.md.
"""


def sm90_unavailable_reason() -> str | None:
    """Why the sm_90a kernels cannot run here (None when they can): they need an H100 / H200 and
    NVRTC through cuda-bindings."""
    import torch

    if not torch.cuda.is_available() or torch.version.hip:
        return "the sm_90a CUDA kernels need an NVIDIA GPU"
    if torch.cuda.get_device_capability() != (9, 0):
        return "the CUDA kernels with warpgroup MMAs and TMA are built for sm_90a (H100 / H200) only"
    from solbench.kernels.cuda import jit

    return jit.nvrtc_unavailable_reason()


def lazy_kernels(what: str, source: str, names: dict, shared_bytes: int):
    """A function that returns ``source``'s :class:`jit.Sm90Kernels`, built at its first call, so
    that importing a kernel module imports no JIT code."""
    built = []

    def kernels():
        if not built:
            from solbench.kernels.cuda import jit

            built.append(jit.Sm90Kernels(what, source, names, shared_bytes))
        return built[0]

    return kernels
