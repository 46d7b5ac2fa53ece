"""Helpers shared by the linear-attention and conv kernels (no benchmark imports)."""
from __future__ import annotations

import functools

import triton
import triton.language as tl


@functools.lru_cache(maxsize=None)
def _sm_count_of(index: int) -> int:
    import torch

    return int(torch.cuda.get_device_properties(index).multi_processor_count)


def sm_count(t) -> int | None:
    """SMs of the CUDA device holding ``t``; None on the CPU (interpreter), where the launch
    heuristics keep their first-principles tiles."""
    if t.device.type != "cuda":
        return None
    return _sm_count_of(t.device.index if t.device.index is not None else 0)


def check_tensor(x, what: str, arg: str, dims: int, dtypes=None, last_contiguous: bool = True) -> None:
    """``x`` is a tensor of ``dims`` dims on a device our kernels run on, of one of ``dtypes``,
    contiguous in its last dim (other strides are passed to the kernel)."""
    import torch

    from solbench.kernels.common import check_dtype, require_device

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what}: {arg} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != dims:
        raise ValueError(f"{what}: {arg} must have {dims} dims, got shape {tuple(x.shape)}")
    if dtypes is not None:
        check_dtype(x, dtypes, what, arg)
    require_device(x, what)
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


@triton.jit
def rtne_bf16(x, BY_HAND: tl.constexpr):
    """``x`` (fp32) rounded to the nearest bf16 (ties to even), still fp32, so the following
    conversion is exact even where it truncates; the identity when ``BY_HAND`` is off."""
    if BY_HAND:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        x = bits.to(tl.float32, bitcast=True)
    return x


@triton.jit
def dot_lp(a, b, BY_HAND: tl.constexpr):
    """``tl.dot`` of two 16-bit operands with fp32 accumulation. Triton's CPU interpreter
    multiplies bf16 blocks wrongly, so there (``BY_HAND``, set with :func:`rounds_by_hand`) the
    same bf16 values are multiplied as fp32, which is exact per product."""
    if BY_HAND:
        c = tl.dot(a.to(tl.float32), b.to(tl.float32))
    else:
        c = tl.dot(a, b)
    return c


@triton.jit
def gdn_gates(a, b, neg_A, bias, sp_beta, sp_threshold, m, MASKED: tl.constexpr):
    """Gated DeltaNet gates of a token (or a block of them): the log-decay ``-exp(A_log)
    softplus_beta(a + dt_bias)`` (torch's linear branch above the threshold, exp clamped there)
    and ``sigmoid(b)``; with ``MASKED`` both are zero where ``m`` is off (tokens past the end)."""
    x = a.to(tl.float32) + bias
    bx = sp_beta * x
    soft = tl.where(bx <= sp_threshold, tl.log(1.0 + tl.exp(tl.minimum(bx, sp_threshold))) / sp_beta, x)
    g = neg_A * soft
    beta = tl.sigmoid(b.to(tl.float32))
    if MASKED:
        g = tl.where(m, g, 0.0)
        beta = tl.where(m, beta, 0.0)
    return g, beta
