"""Paged KV caches: random block tables, token-slot arithmetic and the two cache layouts in use.

Layouts (names used across solbench):

* ``"nhd"`` — vLLM v1 / FlashAttention: ``[num_blocks, block_size, num_kv_heads, head_size]``
  (vLLM ``reshape_and_cache_flash``, ``triton_unified_attention``).
* ``"x_split"`` — the original vLLM paged-attention layout that aiter's ``paged_attention_rocm``
  and rtp-llm keep: key ``[num_blocks, num_kv_heads, head_size / x, block_size, x]`` with
  ``x = 16 bytes / element size`` (8 for bf16/fp16), value ``[num_blocks, num_kv_heads,
  head_size, block_size]``.

Token ``j`` of sequence ``b`` lives in block ``block_table[b, j // block_size]`` at offset
``j % block_size``; its flat slot is ``block * block_size + offset``.
"""
from __future__ import annotations

import math
from typing import Sequence


def blocks_needed(seq_lens: Sequence[int], block_size: int) -> list[int]:
    return [math.ceil(int(n) / block_size) for n in seq_lens]


def pool_blocks(needed: int) -> int:
    """A pool a little larger than what the batch needs (1/8 more, at least 2 blocks), so that
    block tables pick from blocks the batch does not use and nothing relies on a full pool."""
    return int(needed) + max(2, int(needed) // 8)


def random_block_table(seq_lens: Sequence[int], block_size: int, num_blocks: int, device, gen):
    """``[num_seqs, max_blocks]`` int32: distinct random physical blocks for every sequence (a
    random permutation of the pool, never the identity). Entries past a sequence's last block
    are also distinct valid blocks, as vLLM leaves stale ids there."""
    import torch

    per_seq = max(blocks_needed(seq_lens, block_size) or [0])
    total = len(seq_lens) * per_seq
    if total > num_blocks:
        raise ValueError(f"random_block_table: {total} table entries need at least that many blocks, "
                         f"pool has {num_blocks}")
    perm = torch.randperm(num_blocks, generator=gen, device=device)
    return perm[:total].view(len(seq_lens), per_seq).to(torch.int32)


def token_slots(block_table, max_len: int, block_size: int):
    """Flat cache slot of token ``j`` of every sequence: ``[num_seqs, max_len]`` int64. Sync-free
    (``max_len`` is a host int); positions past a sequence's length are garbage to be masked."""
    import torch

    j = torch.arange(int(max_len), device=block_table.device)
    nblk = block_table.shape[1]
    blk = block_table.long()[:, (j // block_size).clamp(max=max(nblk - 1, 0))]
    return blk * block_size + (j % block_size)[None, :]


def x_split_to_nhd(key_cache, value_cache):
    """Views of the ``x_split`` caches as ``nhd`` ``[num_blocks, block_size, heads, head_size]``
    (permuted views, not copies)."""
    nb, h, dx, bs, x = key_cache.shape
    k = key_cache.permute(0, 3, 1, 2, 4).reshape(nb, bs, h, dx * x)
    v = value_cache.permute(0, 3, 1, 2)
    return k, v


def packed_from_nhd(cache, block_table, seq_lens: Sequence[int]):
    """The tokens of every sequence, packed ``[sum(seq_lens), heads, head_size]`` (for references:
    ``seq_lens`` is a host list)."""
    import torch

    nb, bs, h, d = cache.shape
    max_len = max([int(n) for n in seq_lens] or [0])
    slots = token_slots(block_table, max_len, bs)
    lens = torch.tensor([int(n) for n in seq_lens], device=cache.device)
    valid = torch.arange(max_len, device=cache.device)[None, :] < lens[:, None]
    flat = cache.reshape(nb * bs, h, d)
    return flat[slots[valid]]
