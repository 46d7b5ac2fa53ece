"""reshape_and_cache implementations: ours_triton, the torch baselines (an in-place scatter into
the flattened caches) and flag-gems' Triton kernel where it imports."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, add_impl
from solbench.ops.reshape_and_cache.spec import spec
from solbench.peers import FLAG_GEMS


def eager(key, value, key_cache, value_cache, slot_mapping):
    """index_put_ of every token's row at its slot, in place.

    Skipped tokens (slot -1) are redirected to the first kept token's slot with that token's data:
    duplicate writes of identical data are well defined, and the copy needs neither boolean
    indexing nor a host sync (so it can be graph-captured and compiled with fullgraph). When no
    token is kept, every write puts a slot's own value back."""
    import torch

    nb, bs, h, d = key_cache.shape
    keep = slot_mapping >= 0
    first = torch.argmax(keep.to(torch.int32)).view(1)  # a tensor index: no host sync
    slot = torch.where(keep, slot_mapping, slot_mapping.index_select(0, first))
    any_kept = keep.any()
    for src, cache in ((key, key_cache), (value, value_cache)):
        flat = cache.view(nb * bs, h, d)
        rows = torch.where(keep[:, None, None], src, src.index_select(0, first))
        rows = torch.where(any_kept, rows, flat[slot])
        flat.index_put_((slot,), rows)
    return key_cache, value_cache


def ours(key, value, key_cache, value_cache, slot_mapping):
    from solbench.kernels.kv_cache import reshape_and_cache

    return reshape_and_cache(key, value, key_cache, value_cache, slot_mapping)


_FLAG_GEMS = ("flag_gems.fused", "reshape_and_cache_flash")


def flag_gems(key, value, key_cache, value_cache, slot_mapping):
    import torch

    fn = FLAG_GEMS.get(*_FLAG_GEMS)
    one = torch.ones((), dtype=torch.float32, device=key.device)  # scales of an "auto" (unquantized) cache
    fn(key, value, key_cache, value_cache, slot_mapping, "auto", one, one)
    return key_cache, value_cache


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support,
              description="solbench Triton scatter: key and value in one launch, 16-byte vectors, "
                          "several tokens per program"))
register_torch_baselines(spec.name, eager, "in-place index_put_ into the flattened caches (sync-free)")
add_impl(Impl(spec.name, "flag_gems", flag_gems, available=lambda: FLAG_GEMS.support(*_FLAG_GEMS), baseline=True,
              description="flag_gems.fused.reshape_and_cache_flash (kv_cache_dtype auto)"))
