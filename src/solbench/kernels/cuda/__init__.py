"""The JIT CUDA backend: CUDA C++ kernels shipped as sources (``*.cu`` / ``*.cuh`` beside this
file), compiled at first use through NVRTC and cached on disk.

- :mod:`solbench.kernels.cuda.jit`: compile (NVRTC), disk cache, load and launch (CUDA driver),
  through ``cuda-bindings``; imported by nothing at ``import solbench``.
- :mod:`solbench.kernels.cuda.glu`: the GLU family (silu / gelu / gelu_tanh / relu and-mul,
  swiglu's alpha, limit and up_shift, the interleaved layout) as ``torch.ops.solbench.glu_cuda``.
- ``python -m solbench.kernels.cuda``: first-use compile and cache-hit times of the GLU variants.
- :mod:`solbench.pdl_chain`: measures programmatic dependent launch on a chain of
  two dependent kernels in one CUDA graph (``python -m solbench.pdl_chain``).

See docs/JIT_CUDA.md.
"""
