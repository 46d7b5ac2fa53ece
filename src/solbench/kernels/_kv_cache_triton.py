"""The Triton kernel behind :mod:`solbench.kernels.kv_cache` (imported at the first launch, so
``import solbench`` decorates no Triton kernel)."""
from __future__ import annotations

import triton
import triton.language as tl

from solbench.kernels.kv_cache import CacheWriteOptions


@triton.jit
def _cache_write_kernel(key_ptr, value_ptr, kc_ptr, vc_ptr, slot_ptr, T, N, BS,
                        k_tok_stride, v_tok_stride, kc_blk_stride, kc_slot_stride,
                        vc_blk_stride, vc_slot_stride,
                        BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, VEC: tl.constexpr):
    pid_t = tl.program_id(0)
    pid_n = tl.program_id(1)
    toks = pid_t.to(tl.int64) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.max_contiguous(tl.multiple_of(cols, VEC), VEC)
    slot = tl.load(slot_ptr + toks, mask=toks < T, other=-1).to(tl.int64)
    blk = slot // BS
    off = slot - blk * BS
    mask = (slot >= 0)[:, None] & (cols < N)[None, :]
    k = tl.load(key_ptr + toks[:, None] * k_tok_stride + cols[None, :], mask=mask)
    v = tl.load(value_ptr + toks[:, None] * v_tok_stride + cols[None, :], mask=mask)
    tl.store(kc_ptr + (blk * kc_blk_stride + off * kc_slot_stride)[:, None] + cols[None, :], k, mask=mask)
    tl.store(vc_ptr + (blk * vc_blk_stride + off * vc_slot_stride)[:, None] + cols[None, :], v, mask=mask)


def launch(key, value, key_cache, value_cache, slot_mapping) -> None:
    t, h, d = key.shape
    n = h * d
    if t == 0 or n == 0:
        return
    bt, bn, warps = CacheWriteOptions().tile(n, key.element_size())
    grid = (triton.cdiv(t, bt), triton.cdiv(n, bn))
    _cache_write_kernel[grid](key, value, key_cache, value_cache, slot_mapping, t, n, key_cache.shape[1],
                              key.stride(0), value.stride(0), key_cache.stride(0), key_cache.stride(1),
                              value_cache.stride(0), value_cache.stride(1),
                              BLOCK_T=bt, BLOCK_N=bn, VEC=max(1, 16 // key.element_size()), num_warps=warps)
