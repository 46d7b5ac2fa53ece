"""Paged KV-cache writes: ``reshape_and_cache`` (vLLM ``reshape_and_cache_flash``, NHD layout).

``key_cache[slot // block_size, slot % block_size] = key[t]`` (and the same for value) for every
token t with ``slot = slot_mapping[t] >= 0``; a negative slot (CUDA-graph padding) skips the token.

One launch copies key and value: each program moves a tile of whole tokens (or a column slice
of one wide token) with 16-byte vectors per thread. The copy is exact (bits, not values), and
every address is formed in int64 so that pools past 2^31 elements work.

Custom op ``torch.ops.solbench.reshape_and_cache_`` (updates the caches in place); off CUDA it
copies with torch. The Triton kernel is in ``_kv_cache_triton`` (imported at the first launch).
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import check_disjoint, kernel_op, next_pow2

WHAT = "reshape_and_cache"
DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@dataclasses.dataclass(frozen=True)
class CacheWriteOptions:
    """Launch options. ``tile_bytes``: bytes of key (and as many of value) one program moves;
    ``bytes_per_thread``: bytes each thread moves per tensor (whole 16-byte vectors)."""

    tile_bytes: int = 4096
    bytes_per_thread: int = 32

    def tile(self, row: int, elem: int) -> tuple[int, int, int]:
        """(tokens per program, columns per program, warps) for rows of ``row`` elements."""
        tile_elems = max(1, self.tile_bytes // elem)
        block_n = min(next_pow2(row), tile_elems)
        block_t = max(1, tile_elems // block_n)
        threads = max(32, block_t * block_n * elem // self.bytes_per_thread)
        return block_t, block_n, max(1, min(16, threads // 32))


def _token_rows(x, name: str):
    """``x`` [T, H, D] as rows of H·D contiguous elements: returns the token stride."""
    if x.dim() != 3:
        raise ValueError(f"{WHAT}: {name} must be [num_tokens, num_heads, head_size], got shape {tuple(x.shape)}")
    t, h, d = x.shape
    if t and h * d > 1 and (x.stride(2) != 1 or (h > 1 and x.stride(1) != d)):
        raise ValueError(f"{WHAT}: each token of {name} must be contiguous over [num_heads, head_size] "
                         f"(strides {x.stride()}); a token stride of its own is fine")
    return x.stride(0)


def _cache_strides(c, name: str, h: int, d: int):
    if c.dim() != 4 or tuple(c.shape[2:]) != (h, d):
        raise ValueError(f"{WHAT}: {name} must be [num_blocks, block_size, {h}, {d}] (NHD), got {tuple(c.shape)}")
    if h * d > 1 and (c.stride(3) != 1 or (h > 1 and c.stride(2) != d)):
        raise ValueError(f"{WHAT}: each slot of {name} must be contiguous over [num_heads, head_size] "
                         f"(strides {c.stride()})")
    return c.stride(0), c.stride(1)


def _check_aliasing(key, value, key_cache, value_cache, slot_mapping) -> None:
    # The two caches are not checked against each other: the halves of one [blocks, 2, ...] pool
    # interleave, and the span test would call them overlapping.
    inputs = (("key", key), ("value", value), ("slot_mapping", slot_mapping))
    check_disjoint(WHAT, (("key_cache", key_cache),), inputs)
    check_disjoint(WHAT, (("value_cache", value_cache),), inputs)


def _eager(key, value, key_cache, value_cache, slot_mapping) -> None:
    """The torch formulation (off CUDA): an indexed copy of the tokens that have a slot."""
    _check_aliasing(key, value, key_cache, value_cache, slot_mapping)
    keep = slot_mapping >= 0
    slots = slot_mapping[keep].long()
    blk, off = slots // key_cache.shape[1], slots % key_cache.shape[1]
    key_cache[blk, off] = key[keep]
    value_cache[blk, off] = value[keep]


@kernel_op("solbench::reshape_and_cache_", mutates_args=("key_cache", "value_cache"), eager=_eager)
def _reshape_and_cache_op(key: torch.Tensor, value: torch.Tensor, key_cache: torch.Tensor,
                          value_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
    from solbench.kernels._kv_cache_triton import launch

    _check_aliasing(key, value, key_cache, value_cache, slot_mapping)
    launch(key, value, key_cache, value_cache, slot_mapping)


@_reshape_and_cache_op.register_fake
def _reshape_and_cache_fake(key, value, key_cache, value_cache, slot_mapping) -> None:
    return None


def reshape_and_cache(key: torch.Tensor, value: torch.Tensor, key_cache: torch.Tensor,
                      value_cache: torch.Tensor, slot_mapping: torch.Tensor):
    """Write every token's key and value rows into the paged caches, in place.

    ``key``/``value`` [num_tokens, num_heads, head_size] (bf16, fp16 or fp32; a token stride of
    their own is fine, e.g. views of a fused qkv), ``key_cache``/``value_cache`` [num_blocks,
    block_size, num_heads, head_size] of the same dtype (a block stride of their own is fine, e.g.
    the halves of a [num_blocks, 2, ...] pool), ``slot_mapping`` [num_tokens] int32/int64: token
    t goes to block ``slot // block_size``, offset ``slot % block_size``; slot < 0 skips it.
    Slots must be distinct and below ``num_blocks · block_size`` (not checked: that would need a
    host sync). Returns ``(key_cache, value_cache)``."""
    for name, x in (("key", key), ("value", value), ("key_cache", key_cache), ("value_cache", value_cache)):
        if x.dtype not in DTYPES:
            raise TypeError(f"{WHAT}: {name} has dtype {x.dtype}; supported: bfloat16, float16, float32")
        if x.dtype != key.dtype:
            raise TypeError(f"{WHAT}: {name} has dtype {x.dtype}, key has {key.dtype}; all four must match")
    _token_rows(key, "key")
    _token_rows(value, "value")
    if value.shape != key.shape:
        raise ValueError(f"{WHAT}: value has shape {tuple(value.shape)}, key has {tuple(key.shape)}")
    _, h, d = key.shape
    _cache_strides(key_cache, "key_cache", h, d)
    _cache_strides(value_cache, "value_cache", h, d)
    if value_cache.shape != key_cache.shape:
        raise ValueError(f"{WHAT}: value_cache has shape {tuple(value_cache.shape)}, key_cache has "
                         f"{tuple(key_cache.shape)}")
    if slot_mapping.dtype not in (torch.int32, torch.int64) or slot_mapping.dim() != 1 \
            or slot_mapping.shape[0] != key.shape[0]:
        raise ValueError(f"{WHAT}: slot_mapping must be int32/int64 [{key.shape[0]}], got "
                         f"{slot_mapping.dtype} {tuple(slot_mapping.shape)}")
    if slot_mapping.numel() > 1 and slot_mapping.stride(0) != 1:
        raise ValueError(f"{WHAT}: slot_mapping must be contiguous")
    _reshape_and_cache_op(key, value, key_cache, value_cache, slot_mapping)
    return key_cache, value_cache
