"""The Triton kernels behind :mod:`solbench.kernels.gate` (imported at the first launch, so
``import solbench`` decorates no Triton kernel)."""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.kernels.common import gpu_codegen, next_pow2, sm_count
from solbench.kernels.gate import GateOptions, gemm_options, vector_rows


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


def launch(hidden_states, weight, bias, post_mul, out) -> None:
    t, h = hidden_states.shape
    n, d = weight.shape[0], post_mul.shape[1]
    if t == 0 or d == 0:
        return
    b = bias if bias is not None else weight
    if n == 1:
        opts = GateOptions()
        bh = min(next_pow2(h), opts.tile_elems)
        bd = min(next_pow2(d), opts.tile_elems)
        bt = vector_rows(t, max(bh, bd), sm_count(hidden_states), opts.tile_elems)
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
