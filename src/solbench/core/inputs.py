"""Seeded random inputs. Every generator takes an explicit ``torch.Generator`` so that a shape's
inputs are a pure function of (shape, device, seed), and values are never all zeros."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence


def generator(device, seed: int):
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def randn(shape: Sequence[int], dtype, device, gen, scale: float = 1.0, shift: float = 0.0):
    """Normal(shift, scale) drawn in fp32 and cast once."""
    import torch

    x = torch.randn(tuple(shape), generator=gen, device=device, dtype=torch.float32)
    if scale != 1.0:
        x.mul_(scale)
    if shift:
        x.add_(shift)
    return x.to(dtype)


def uniform(shape: Sequence[int], dtype, device, gen, low: float = 0.0, high: float = 1.0):
    import torch

    x = torch.rand(tuple(shape), generator=gen, device=device, dtype=torch.float32)
    return (x * (high - low) + low).to(dtype)


def randint(shape: Sequence[int], low: int, high: int, device, gen, dtype=None):
    import torch

    return torch.randint(low, high, tuple(shape), generator=gen, device=device, dtype=dtype or torch.int32)


def row_slice(x, extra: int):
    """A view of ``x`` with the same values whose rows are ``extra`` elements longer than its last
    dim: a non-contiguous-rows input, as a slice of a wider activation buffer would be."""
    import torch

    n = x.shape[-1]
    wide = torch.empty((*x.shape[:-1], n + extra), dtype=x.dtype, device=x.device)
    wide[..., n:] = 0
    wide[..., :n] = x
    return wide[..., :n]


def _inner(value) -> tuple | list:
    """What a container value of an input set holds (a mapping's values, a list's or tuple's
    items); nothing for a tensor or a scalar."""
    if isinstance(value, Mapping):
        return list(value.values())
    return value if isinstance(value, (list, tuple)) else ()


def _storage_key(t) -> tuple:
    st = t.untyped_storage()
    return st.device, st.data_ptr()


def footprint(inputs: Mapping) -> int:
    """Bytes of memory an input set holds: the storages of its tensors, each counted once."""
    import torch

    seen: dict = {}
    for v in inputs.values():
        for t in (*_inner(v), v):
            if isinstance(t, torch.Tensor):
                seen[_storage_key(t)] = t.untyped_storage().nbytes()
    return sum(seen.values())


def copyable(inputs: Mapping) -> bool:
    """Whether :func:`replicate` can copy the set: no tensors inside containers."""
    import torch

    return not any(isinstance(x, torch.Tensor) for v in inputs.values() for x in _inner(v))


def replicate(base: Mapping, n: int, align: int = 512) -> list[dict] | None:
    """``n`` input sets holding ``base``'s values, each in memory of its own: every storage that
    ``base``'s tensors use is copied ``n`` times into one buffer (one copy kernel per storage), and
    each tensor is re-created on each copy with its size, strides and offset, so tensors that
    share a storage in ``base`` (views of one packed buffer, a row-strided slice) share one in
    every copy. Non-tensor values are shared. None when ``base`` is not :func:`copyable`
    (the caller then makes each set itself)."""
    import torch

    if not copyable(base):
        return None
    groups: dict = {}
    for key, t in base.items():
        if isinstance(t, torch.Tensor):
            groups.setdefault(_storage_key(t), (t.untyped_storage(), []))[1].append(key)
    out = [dict(base) for _ in range(n)]
    for st, keys in groups.values():
        nbytes = st.nbytes()
        row = max(1, -(-nbytes // align)) * align  # each copy starts on an ``align``-byte boundary
        big = torch.empty((n, row), dtype=torch.uint8, device=st.device)
        if nbytes:
            src = torch.empty(0, dtype=torch.uint8, device=st.device).set_(st)
            big[:, :nbytes].copy_(src.expand(n, nbytes))
        for key in keys:
            t = base[key]
            typed = big.view(-1).view(t.dtype)
            per_copy = row // t.element_size()
            for i in range(n):
                out[i][key] = typed.as_strided(t.size(), t.stride(), i * per_copy + t.storage_offset())
    return out


def rotating_sets(make: Callable[[int], dict], n: int, distinct: int = 8) -> list[dict]:
    """``n`` input sets for a rotating timer: ``distinct`` of them made by ``make(i)`` (fresh
    seeds), the rest copies of those in turn (:func:`replicate`), so a decode call's thousands of
    sets cost a few copy kernels, not thousands of random draws. The sets must be
    :func:`copyable`."""
    bases = [make(j) for j in range(min(n, distinct))]
    if n <= len(bases):
        return bases
    copies = [replicate(b, len(range(j, n, len(bases)))) for j, b in enumerate(bases)]
    if any(c is None for c in copies):
        raise ValueError("rotating_sets: an input set holds tensors inside containers and cannot be copied")
    return [copies[i % len(bases)][i // len(bases)] for i in range(n)]
