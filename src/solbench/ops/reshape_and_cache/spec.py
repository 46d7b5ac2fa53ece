"""reshape_and_cache (vLLM ``reshape_and_cache_flash``, csrc/cache_kernels.cu, kv_cache_dtype "auto").

``key`` / ``value`` [num_tokens, num_heads, head_size] bf16 are copied into ``key_cache`` /
``value_cache`` [num_blocks, block_size, num_heads, head_size] (vLLM's ``nhd`` layout) at
``slot_mapping`` [num_tokens] int64: token t goes to block slot // block_size, offset
slot % block_size; a negative slot (-1, CUDA-graph padding) means the token is skipped. The
caches are updated in place and are the outputs; every slot no token maps to keeps its value.

Inputs: the catalog's ``shape`` = [num_tokens, num_heads, head_size] and ``block_size``. The pool
has 1/8 more blocks than the tokens need; tokens fill randomly chosen blocks in order (as vLLM's
allocator hands them out). Every catalog token has a slot: the traces record no padding count,
and a made-up one would change the cost. Padding (the last ``padding_tokens`` tokens get slot
-1) is exercised by a smoke shape only.
"""
from __future__ import annotations

import dataclasses
import math

from solbench.core import inputs as rnd
from solbench.core.paged import pool_blocks
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype


def padding_tokens(shape: Shape) -> int:
    """Trailing tokens with slot -1: the shape's ``padding_tokens`` (0 on every catalog shape)."""
    return int(shape.get("padding_tokens", 0))


def _bits(t):
    """The raw bits of a tensor, for exact comparison (NaN-safe, -0.0 distinct from 0.0)."""
    import torch

    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    return t.contiguous().view(ints[t.element_size()])


class ReshapeAndCache(OpSpec):
    name = "reshape_and_cache"
    dtype = "bf16"
    output_names = ("key_cache", "value_cache")
    structural = True

    @staticmethod
    def dims(shape: Shape) -> tuple[int, int, int, int]:
        t, h, d = (int(x) for x in shape["shape"])
        bs = int(shape["block_size"])
        if min(h, d, bs) < 1 or t < 0 or not 0 <= padding_tokens(shape) <= t:
            raise ValueError(f"reshape_and_cache shape {shape.id}: shape {shape['shape']}, block_size {bs} "
                             f"and padding_tokens {padding_tokens(shape)} must be positive, with at most "
                             f"num_tokens padding tokens")
        return t, h, d, bs

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        import torch

        t, h, d, bs = self.dims(shape)
        nb = pool_blocks(math.ceil(t / bs))
        gen = rnd.generator(device, seed)
        dt = torch_dtype(self.dtype)
        blocks = torch.randperm(nb, generator=gen, device=device)
        tok = torch.arange(t, device=device)
        slots = blocks[tok // bs] * bs + tok % bs
        slots[t - padding_tokens(shape):] = -1
        return {
            "key": rnd.randn((t, h, d), dt, device, gen),
            "value": rnd.randn((t, h, d), dt, device, gen),
            "key_cache": rnd.randn((nb, bs, h, d), dt, device, gen),
            "value_cache": rnd.randn((nb, bs, h, d), dt, device, gen),
            "slot_mapping": slots.to(torch.int64),
        }

    def reference(self, key, value, key_cache, value_cache, slot_mapping):
        """cache[slot_mapping[t] // block_size, slot_mapping[t] % block_size] = x[t] for every token
        with slot_mapping[t] >= 0, for (x, cache) in (key, key_cache), (value, value_cache); the rest
        of each cache unchanged. Returns the updated caches."""
        nb, bs, h, d = key_cache.shape
        keep = slot_mapping >= 0
        slots = slot_mapping[keep]
        kc, vc = key_cache.clone(), value_cache.clone()
        kc.view(nb * bs, h, d)[slots] = key[keep]
        vc.view(nb * bs, h, d)[slots] = value[keep]
        return kc, vc

    def check_invariants(self, shape, inputs, got, ref) -> list[str]:
        """Every token with a slot is in its slot bit for bit; every other slot is bit-identical to
        the cache before the call (nothing else was written)."""
        import torch

        errors = []
        slots = inputs["slot_mapping"]
        keep = slots >= 0
        for src, cache in (("key", "key_cache"), ("value", "value_cache")):
            before, after = inputs[cache], got[cache]
            if tuple(after.shape) != tuple(before.shape) or after.dtype != before.dtype:
                errors.append(f"{cache}: shape {tuple(after.shape)} {after.dtype}, expected "
                              f"{tuple(before.shape)} {before.dtype}")
                continue
            nb, bs, h, d = before.shape
            flat_after = _bits(after).view(nb * bs, h * d)
            written = torch.zeros(nb * bs, dtype=torch.bool, device=before.device)
            written[slots[keep]] = True
            bad_tok = (flat_after[slots[keep]] != _bits(inputs[src]).view(-1, h * d)[keep]).any(dim=1)
            n_bad = int(bad_tok.sum())
            if n_bad:
                i = int(bad_tok.nonzero()[0])
                t = int(keep.nonzero()[i])
                errors.append(f"{cache}: {n_bad} of {int(keep.sum())} tokens not found in their slot "
                              f"(first: token {t}, slot {int(slots[t])})")
            changed = (flat_after != _bits(before).view(nb * bs, h * d)).any(dim=1) & ~written
            n_changed = int(changed.sum())
            if n_changed:
                errors.append(f"{cache}: {n_changed} slots that no token maps to were modified "
                              f"(first: slot {int(changed.nonzero()[0])})")
        return errors

    def cost(self, shape: Shape) -> Cost:
        # Read: key and value of the tokens that have a slot (bf16), slot_mapping for all tokens
        # (int64). Write: those tokens' rows of key_cache and value_cache. No arithmetic.
        t, h, d, bs = self.dims(shape)
        kept = t - padding_tokens(shape)
        row = h * d * 2
        return Cost(flops={}, bytes_read=2 * kept * row + t * 8, bytes_written=2 * kept * row)

    def tolerance(self, shape: Shape) -> Tolerance:
        # A copy: exact.
        return Tolerance(atol=0.0, rtol=0.0, rms_rtol=0.0)

    def smoke_shapes(self) -> list[Shape]:
        # The two smallest catalog shapes, plus CUDA-graph padding: 37 tokens of which the last 5
        # have slot -1 (a partial block, a token tile that mixes kept and skipped tokens).
        base = min(self.shapes, key=lambda s: self.cost(s).total_bytes)
        params = {**base.params, "shape": [37, 2, 64], "padding_tokens": 5}
        return super().smoke_shapes() + [dataclasses.replace(
            base, id="smoke_pad", params=params, smoke=True,
            description="reduced: 37 tokens (5 padding, slot -1), 2 heads of 64")]


spec = register_spec(ReshapeAndCache.from_catalog())
