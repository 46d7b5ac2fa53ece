"""Helpers shared by the linear-attention and conv kernels (no benchmark imports, no Triton: the
Triton helpers are in :mod:`._common_triton`, imported at the first launch)."""
from __future__ import annotations

from solbench.kernels.common import sm_count  # noqa: F401 - re-exported for the linear-attention and conv kernels


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def check_tensor(x, what: str, arg: str, dims: int, dtypes=None, last_contiguous: bool = True) -> None:
    """``x`` is a tensor of ``dims`` dims, of one of ``dtypes``, contiguous in its last dim (other
    strides are passed to the kernel). Any device: off CUDA the ops compute with their torch
    formulation."""
    import torch

    from solbench.kernels.common import check_dtype

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: {arg} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != dims:
        raise ValueError(f"{what}: {arg} must have {dims} dims, got shape {tuple(x.shape)}")
    if dtypes is not None:
        check_dtype(x, dtypes, what, arg)
    if last_contiguous and x.shape[-1] > 1 and x.stride(-1) != 1:
        raise ValueError(f"{what}: {arg} must be contiguous in its last dimension (stride {x.stride(-1)})")


def check_shape(x, shape, what: str, arg: str) -> None:
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{what}: {arg} has shape {tuple(x.shape)}, expected {tuple(shape)}")


def same_device(what: str, ref, **tensors) -> None:
    for name, t in tensors.items():
        if t is not None and t.device != ref.device:
            raise ValueError(f"{what}: {name} is on {t.device}, expected {ref.device}")


def float_dtypes():
    import torch

    return (torch.bfloat16, torch.float16, torch.float32)


def index_dtypes():
    import torch

    return (torch.int32, torch.int64)


def rounds_by_hand(t) -> bool:
    """True where a kernel must round its bf16 outputs itself: Triton's CPU interpreter truncates
    fp32 -> bf16 conversions (compiled kernels round to nearest even), which doubles the output
    error and fails the tight RMS bounds of the fp32-state operators."""
    import torch

    from solbench.kernels.common import gpu_codegen

    return t.dtype == torch.bfloat16 and not gpu_codegen(t)
