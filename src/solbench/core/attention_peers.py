"""Attention peers that ship with torch, shared by the prefill operators: SDPA with the backend
that ran named in the record, SDPA held to its flash backend, compiled FlexAttention, and the
``sdpa_dense`` reference (SDPA's fastest backend on K/V gathered dense before the timed call).

Every function takes a padded batch: q ``[B, Lq, H, D]``, k / v ``[B, Lk, H_kv, D]`` (views are
fine) and per-sequence lengths, and returns ``[B, Lq, H, D]``.
"""
from __future__ import annotations

import weakref

from solbench.core.spec import Support

#: SDPA backends in the order ``sdpa_dense`` tries them (cuDNN first: fastest on Hopper where it runs).
DENSE_ORDER = ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION")


def sdpa_backend_ran(q, k, v, mask, is_causal: bool, scale: float, enable_gqa: bool = False) -> str:
    """The backend ``F.scaled_dot_product_attention`` picks for these arguments (BHLD tensors)."""
    import torch

    try:
        from torch.nn.attention import SDPBackend

        kw = {"enable_gqa": enable_gqa} if enable_gqa else {}
        choice = torch._fused_sdp_choice(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=is_causal, scale=scale,
                                         **kw)
        return SDPBackend(choice).name.lower()
    except Exception as e:  # noqa: BLE001 - private API; the record says why the name is missing
        return f"unknown ({type(e).__name__})"


def sdpa(q, k, v, *, is_causal: bool, scale: float, mask=None, backend: str | None = None):
    """SDPA on BLHD inputs (transposed views, no copy); ``backend`` holds it to one backend."""
    import contextlib

    import torch.nn.functional as F

    ctx = contextlib.nullcontext()
    if backend:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        ctx = sdpa_kernel([getattr(SDPBackend, backend)])
    g = q.shape[2] // k.shape[2]
    if g > 1:
        k, v = k.repeat_interleave(g, dim=2), v.repeat_interleave(g, dim=2)
    with ctx:
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=mask, is_causal=is_causal, scale=scale)
    return o.transpose(1, 2)


def flash_support(equal_lengths: bool, causal_square: bool) -> Support:
    """SDPA's flash backend takes no mask: only batches of equal-length sequences with Lq = Lk
    (or non-causal) fit it."""
    import torch

    if not torch.cuda.is_available():
        return Support.no("SDPA's flash backend needs a CUDA device")
    if not equal_lengths or not causal_square:
        return Support.no("SDPA's flash backend takes no mask: only equal-length batches with L_q = L_k fit it")
    return Support.yes()


class Flex:
    """Compiled FlexAttention with a block mask built once per shape (outside the timed call)
    from the host-side lengths: key j of sequence b is visible to query i iff j < L_k[b] and,
    when causal, j <= i + L_k[b] - L_q[b]. GQA through ``enable_gqa`` (no repeat of K/V)."""

    def __init__(self):
        self._fn = None
        self._masks: dict[tuple, object] = {}

    @staticmethod
    def available() -> Support:
        import torch

        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention  # noqa: F401
        except Exception as e:  # noqa: BLE001
            return Support.no(f"this torch has no FlexAttention ({type(e).__name__})")
        if not torch.cuda.is_available():
            return Support.no("compiled FlexAttention needs a CUDA device here")
        return Support.yes()

    @staticmethod
    def key(num_seqs: int, max_q: int, max_k: int, total_q: int) -> tuple:
        return (int(num_seqs), int(max_q), int(max_k), int(total_q))

    def build(self, lq: list[int], lk: list[int], causal: bool, device) -> None:
        """Make the block mask for these lengths (call from ``prepare``)."""
        import torch
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        if self._fn is None:
            # One compile per shape (dynamic=False, as FlexAttention is meant to run): with torch's
            # default limit of 8 recompiles, the 9th shape of a run silently ran uncompiled
            # (H100 unified_attention: 8-100 ms, graph capture failing, OOM on long prefills).
            from solbench.core.baselines import configure_dynamo

            configure_dynamo()
            self._fn = torch.compile(flex_attention, dynamic=False)
        lq_t = torch.tensor(lq, device=device)
        lk_t = torch.tensor(lk, device=device)

        def visible(b, h, qi, kj):
            ok = kj < lk_t[b]
            if causal:
                ok = ok & (kj <= qi + lk_t[b] - lq_t[b])
            return ok

        mask = create_block_mask(visible, len(lq), None, max(lq), max(lk), device=device)
        self._masks = {self.key(len(lq), max(lq), max(lk), sum(lq)): mask}

    def __call__(self, q, k, v, *, scale: float, key: tuple):
        mask = self._masks.get(key)
        if mask is None:
            raise RuntimeError("FlexAttention: no block mask was built for these lengths (prepare did not run)")
        o = self._fn(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), block_mask=mask, scale=scale,
                     enable_gqa=q.shape[2] != k.shape[2])
        return o.transpose(1, 2)


class DenseReference:
    """``sdpa_dense``: what a non-paged kernel could do. K/V are gathered (and GQA-expanded) into
    contiguous ``[B, L, H, D]`` by ``gather`` once per input set, outside the timed call, and SDPA
    runs on them with the fastest backend that accepts the problem (cuDNN, then flash, then
    memory-efficient). Ranked apart: it is never a paged implementation."""

    def __init__(self):
        self._gathered: dict[int, tuple] = {}
        self.backend: str | None = None

    def dense(self, source, gather):
        """The gathered tensors for input tensor ``source`` (cached while ``source`` lives)."""
        hit = self._gathered.get(id(source))
        if hit is not None and hit[0]() is source:
            return hit[1]
        import torch

        if torch.cuda.is_available() and torch.cuda.is_current_stream_capturing():
            # The gather would be captured into the timed graph: refuse rather than time it.
            raise RuntimeError("reference gather reached inside CUDA-graph capture (an input set the timer did "
                               "not warm up): its time would count")
        dense = gather()
        self._gathered = {k: v for k, v in self._gathered.items() if v[0]() is not None}
        self._gathered[id(source)] = (weakref.ref(source), dense)
        return dense

    def pick_backend(self, q, k, v, is_causal: bool, scale: float) -> str:
        """The first backend of :data:`DENSE_ORDER` that runs these inputs (tried once per shape)."""
        errors = []
        for name in DENSE_ORDER:
            try:
                sdpa(q, k, v, is_causal=is_causal, scale=scale, backend=name)
                self.backend = name
                return name
            except Exception as e:  # noqa: BLE001 - a backend that refuses the problem
                errors.append(f"{name}: {type(e).__name__}")
        raise RuntimeError("no SDPA backend ran the dense problem (" + "; ".join(errors) + ")")
