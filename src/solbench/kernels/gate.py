"""Sigmoid-gated multiply: ``out = sigmoid(hidden_states @ weight^T + bias) * post_mul``
(sgl_kernel ``fused_linear_sigmoid_mul``).

Two forms, picked by the weight's rows:

* ``weight [1, H]`` -- Qwen2-MoE's ``shared_expert_gate`` (a Linear(H, 1)): one scalar gate per
  token, broadcast over its row of ``post_mul [T, D]``. Memory-bound: each program reads its
  tokens' hidden rows once for the dot products, then streams post_mul to out, 16-byte vectors.
* ``weight [N, H]`` with N > 1 -- a bf16 tensor-core GEMM ``[T, H] x [H, N]`` whose epilogue adds
  the bias, applies the sigmoid and multiplies by ``post_mul [T, N]`` before the one store.

Custom ops ``torch.ops.solbench.linear_sigmoid_mul`` (functional) and ``linear_sigmoid_mul.out``;
off CUDA they compute with torch. The Triton kernels are in ``_gate_triton`` (imported at the
first launch).
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import check_disjoint, check_out, functional_op, kernel_op

WHAT = "linear_sigmoid_mul"
DTYPES = (torch.bfloat16, torch.float16)


@dataclasses.dataclass(frozen=True)
class GateOptions:
    """Gate-vector form: ``tile_elems`` elements of a tensor one program holds (rows x columns),
    ``warps``."""

    tile_elems: int = 8192
    warps: int = 8


@dataclasses.dataclass(frozen=True)
class GemmOptions:
    """GEMM form: tile sizes, pipeline stages and warps (see :func:`gemm_options`)."""

    block_m: int
    block_n: int
    block_k: int
    stages: int
    warps: int
    group_m: int = 8


def vector_rows(t: int, width: int, sms: int | None, tile_elems: int = GateOptions.tile_elems) -> int:
    """Rows per program of the gate-vector form: as many as ``tile_elems`` holds at the wider of
    the hidden and post_mul rows (fewer programs, each streaming more), but halved while the
    launch has fewer programs than SMs and halving adds programs (``sms``; None off CUDA: the
    most; one token keeps the tile it was measured with). A program's time is
    its rows' passes one after another, so a few tokens run fastest as one-row programs side by
    side: H100, one token (one row) 2.8 us; 13 tokens as 4 programs of 4 rows 3.3 us."""
    rows = max(1, tile_elems // max(1, width))
    while sms and rows > 1 and -(-t // rows) < sms and -(-t // (rows // 2)) > -(-t // rows):
        rows //= 2
    return rows


def gemm_options(m: int, n: int) -> GemmOptions:
    """Large M: 128x256 tiles (tensor-core bound). Decode-sized M: the weight read dominates, so
    narrow N tiles spread it over every SM."""
    if m >= 512:
        return GemmOptions(128, 256, 64, 3, 8)
    if m >= 64:
        return GemmOptions(64, 128, 64, 4, 4)
    return GemmOptions(16, 32 if n <= 8192 else 64, 128, 4, 4)


def _check_aliasing(hidden_states, weight, bias, post_mul, out) -> None:
    check_disjoint(WHAT, (("out", out),), (("hidden_states", hidden_states), ("weight", weight), ("bias", bias),
                                          ("post_mul", post_mul)))


def _eager(hidden_states, weight, bias, post_mul, out) -> None:
    """The torch formulation (off CUDA): the gate logits in fp32, one rounding."""
    _check_aliasing(hidden_states, weight, bias, post_mul, out)
    logit = hidden_states.float() @ weight.float().T
    if bias is not None:
        logit = logit + bias.float()
    out.copy_(torch.sigmoid(logit) * post_mul.float())


@kernel_op("solbench::linear_sigmoid_mul.out", mutates_args=("out",), eager=_eager)
def _gate_op(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, post_mul: torch.Tensor,
             out: torch.Tensor) -> None:
    from solbench.kernels._gate_triton import launch

    _check_aliasing(hidden_states, weight, bias, post_mul, out)
    launch(hidden_states, weight, bias, post_mul, out)


@_gate_op.register_fake
def _gate_fake(hidden_states, weight, bias, post_mul, out) -> None:
    return None


functional_op("solbench::linear_sigmoid_mul", _gate_op,
              lambda hidden_states, weight, bias, post_mul: (
                  torch.empty_like(post_mul, memory_format=torch.contiguous_format),))


def _rows(x, name: str, width: int | None = None):
    if x.dtype not in DTYPES:
        raise TypeError(f"{WHAT}: {name} has dtype {x.dtype}; supported: bfloat16, float16")
    if x.dim() != 2 or (width is not None and x.shape[1] != width):
        want = f"[rows, {width}]" if width is not None else "2-D"
        raise ValueError(f"{WHAT}: {name} must be {want}, got shape {tuple(x.shape)}")
    if x.shape[1] > 1 and x.stride(1) != 1:
        raise ValueError(f"{WHAT}: {name} must be contiguous in its last dimension (stride {x.stride(1)})")


def linear_sigmoid_mul(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                       post_mul: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``out = sigmoid(hidden_states @ weight^T + bias) * post_mul``, fp32 math, one rounding.

    ``hidden_states`` [T, H]; ``weight`` [N, H]; ``bias`` [N] or None; all bf16 or fp16 (one dtype),
    rows may be strided (last dim contiguous). N = 1 (the shared-expert gate): ``post_mul``
    [T, D] for any D, each token's gate scales its whole row. N > 1: ``post_mul`` [T, N], a GEMM
    with the gate in its epilogue. ``out`` like ``post_mul`` (allocated when None). Returns out."""
    _rows(hidden_states, "hidden_states")
    t, h = hidden_states.shape
    _rows(weight, "weight", h)
    n = weight.shape[0]
    if n < 1:
        raise ValueError(f"{WHAT}: weight must have at least one row")
    _rows(post_mul, "post_mul", None if n == 1 else n)
    if post_mul.shape[0] != t:
        raise ValueError(f"{WHAT}: post_mul has {post_mul.shape[0]} rows, hidden_states {t}")
    for name, x in (("weight", weight), ("post_mul", post_mul)) + ((("bias", bias),) if bias is not None else ()):
        if x.dtype != hidden_states.dtype:
            raise TypeError(f"{WHAT}: {name} has dtype {x.dtype}, hidden_states {hidden_states.dtype}; they must match")
    if bias is not None:
        if tuple(bias.shape) != (n,) or not bias.is_contiguous():
            raise ValueError(f"{WHAT}: bias must be a contiguous [{n}] tensor, got {tuple(bias.shape)}")
    if out is None:
        out = torch.empty_like(post_mul, memory_format=torch.contiguous_format)
    else:
        check_out(out, post_mul.shape, post_mul.dtype, post_mul.device, WHAT)
        _rows(out, "out", post_mul.shape[1])
    _gate_op(hidden_states, weight, bias, post_mul, out)
    return out
