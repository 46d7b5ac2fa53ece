"""Availability of our sm_90a CUDA kernels, for the operators that register an ``ours_cuda``
implementation on them (block_scaled_mm, unified_attention, attention_forward). It lives on the
operator side: the benchmark core imports no kernel."""
from __future__ import annotations

from solbench.core.spec import Support


def sm90_cuda_support() -> Support:
    """Our sm_90a CUDA kernels (warpgroup MMAs, TMA) run on an H100 / H200 with NVRTC."""
    from solbench.kernels.cuda import sm90_unavailable_reason

    why = sm90_unavailable_reason()
    return Support.no(why) if why else Support.yes()
