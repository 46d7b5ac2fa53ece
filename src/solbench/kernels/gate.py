"""Sigmoid-gated multiply: ``out = sigmoid(hidden_states @ weight^T + bias) * post_mul``
(sgl_kernel ``fused_linear_sigmoid_mul``).

Two forms, picked by the weight's rows:

* ``weight [1, H]`` -- Qwen2-MoE's ``shared_expert_gate`` (a Linear(H, 1)): one scalar gate per
  token, broadcast over its row of ``post_mul [T, D]``. Memory-bound: each program reads its
  tokens' hidden rows once for the dot products, then streams post_mul to out, 16-byte vectors.
* ``weight [N, H]`` with N > 1 -- a bf16 tensor-core GEMM ``[T, H] x [H, N]`` whose epilogue adds
  the bias, applies the sigmoid and multiplies by ``post_mul [T, N]`` before the one store.
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import check_disjoint, check_out, gpu_codegen, kernel_op, next_pow2, require_device

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - reported by triton_unavailable_reason()
    triton = None

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


def gemm_options(m: int, n: int) -> GemmOptions:
    """Large M: 128x256 tiles (tensor-core bound). Decode-sized M: the weight read dominates, so
    narrow N tiles spread it over every SM."""
    if m >= 512:
        return GemmOptions(128, 256, 64, 3, 8)
    if m >= 64:
        return GemmOptions(64, 128, 64, 4, 4)
    return GemmOptions(16, 32 if n <= 8192 else 64, 128, 4, 4)


if triton is not None:

    @triton.jit
    def _gate_vector_kernel(x_ptr, w_ptr, b_ptr, p_ptr, out_ptr, T, H, D, x_stride, p_stride, out_stride,
                            HAS_BIAS: tl.constexpr, BT: tl.constexpr, BH: tl.constexpr, BD: tl.constexpr):
        rows = tl.program_id(0).to(tl.int64) * BT + tl.arange(0, BT)[:, None]
        row_ok = rows < T
        acc = tl.zeros((BT, BH), tl.float32)
        for h0 in range(0, H, BH):
            h = h0 + tl.arange(0, BH)[None, :]
            x = tl.load(x_ptr + rows * x_stride + h, mask=row_ok & (h < H), other=0.0)
            w = tl.load(w_ptr + h, mask=h < H, other=0.0)
            acc += x.to(tl.float32) * w.to(tl.float32)
        logit = tl.sum(acc, axis=1)[:, None]
        if HAS_BIAS:
            logit += tl.load(b_ptr).to(tl.float32)
        gate = 1.0 / (1.0 + tl.exp(-logit))
        for d0 in range(0, D, BD):
            d = d0 + tl.arange(0, BD)[None, :]
            m = row_ok & (d < D)
            p = tl.load(p_ptr + rows * p_stride + d, mask=m, other=0.0)
            tl.store(out_ptr + rows * out_stride + d, (gate * p.to(tl.float32)).to(out_ptr.dtype.element_ty), mask=m)

    @triton.jit
    def _gate_gemm_kernel(x_ptr, w_ptr, b_ptr, p_ptr, out_ptr, M, N, K, x_stride, w_stride, p_stride, out_stride,
                          HAS_BIAS: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                          GROUP_M: tl.constexpr, DOT_FP32: tl.constexpr):
        # Grouped tile order: GROUP_M row tiles share each weight tile while it is in L2.
        pid = tl.program_id(0)
        tiles_m = tl.cdiv(M, BM)
        tiles_n = tl.cdiv(N, BN)
        per_group = GROUP_M * tiles_n
        first_m = (pid // per_group) * GROUP_M
        group_rows = tl.minimum(tiles_m - first_m, GROUP_M)
        pid_m = first_m + (pid % per_group) % group_rows
        pid_n = (pid % per_group) // group_rows
        rm = (pid_m.to(tl.int64) * BM + tl.arange(0, BM))[:, None]
        rn = (pid_n.to(tl.int64) * BN + tl.arange(0, BN))[None, :]
        rk = tl.arange(0, BK)
        acc = tl.zeros((BM, BN), tl.float32)
        for k0 in range(0, K, BK):
            kk = k0 + rk
            a = tl.load(x_ptr + rm * x_stride + kk[None, :], mask=(rm < M) & (kk[None, :] < K), other=0.0)
            b = tl.load(w_ptr + rn * w_stride + kk[:, None], mask=(rn < N) & (kk[:, None] < K), other=0.0)
            if DOT_FP32:  # Triton's CPU interpreter multiplies 16-bit floats in tl.dot wrongly
                acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
            else:
                acc = tl.dot(a, b, acc)
        if HAS_BIAS:
            acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)
        m = (rm < M) & (rn < N)
        p = tl.load(p_ptr + rm * p_stride + rn, mask=m, other=0.0).to(tl.float32)
        out = p / (1.0 + tl.exp(-acc))
        tl.store(out_ptr + rm * out_stride + rn, out.to(out_ptr.dtype.element_ty), mask=m)


@kernel_op("solbench::linear_sigmoid_mul_", mutates_args=("out",))
def _gate_op(hidden_states: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, post_mul: torch.Tensor,
             out: torch.Tensor) -> None:
    check_disjoint(WHAT, (("out", out),), (("hidden_states", hidden_states), ("weight", weight), ("bias", bias),
                                          ("post_mul", post_mul)))
    t, h = hidden_states.shape
    n, d = weight.shape[0], post_mul.shape[1]
    if t == 0 or d == 0:
        return
    b = bias if bias is not None else weight
    if n == 1:
        opts = GateOptions()
        bh = min(next_pow2(h), opts.tile_elems)
        bd = min(next_pow2(d), opts.tile_elems)
        bt = max(1, opts.tile_elems // max(bh, bd))
        _gate_vector_kernel[(triton.cdiv(t, bt),)](
            hidden_states, weight, b, post_mul, out, t, h, d, hidden_states.stride(0), post_mul.stride(0),
            out.stride(0), HAS_BIAS=bias is not None, BT=bt, BH=bh, BD=bd, num_warps=opts.warps)
        return
    o = gemm_options(t, n)
    grid = (triton.cdiv(t, o.block_m) * triton.cdiv(n, o.block_n),)
    _gate_gemm_kernel[grid](hidden_states, weight, b, post_mul, out, t, n, h, hidden_states.stride(0),
                            weight.stride(0), post_mul.stride(0), out.stride(0), HAS_BIAS=bias is not None,
                            BM=o.block_m, BN=o.block_n, BK=o.block_k, GROUP_M=o.group_m,
                            DOT_FP32=not gpu_codegen(hidden_states), num_warps=o.warps,
                            num_stages=o.stages)


@_gate_op.register_fake
def _gate_fake(hidden_states, weight, bias, post_mul, out) -> None:
    return None


def _rows(x, name: str, width: int | None = None):
    require_device(x, WHAT)
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
        require_device(bias, WHAT)
        if tuple(bias.shape) != (n,) or not bias.is_contiguous():
            raise ValueError(f"{WHAT}: bias must be a contiguous [{n}] tensor, got {tuple(bias.shape)}")
    if out is None:
        out = torch.empty_like(post_mul, memory_format=torch.contiguous_format)
    else:
        check_out(out, post_mul.shape, post_mul.dtype, post_mul.device, WHAT)
        _rows(out, "out", post_mul.shape[1])
    _gate_op(hidden_states, weight, bias, post_mul, out)
    return out
