"""Block-scaled fp8 (e4m3) tensors: the DeepSeek-V3 style layout used by vLLM's
``w8a8_triton_block_scaled_mm`` and aiter's ``fmoe_fp8_blockscale_g1u1``.

A tensor ``q [..., N, K]`` in float8_e4m3fn with scales ``s [..., ceil(N/bn), ceil(K/bk)]`` (fp32)
means ``x[..., n, k] = q[..., n, k] * s[..., n // bn, k // bk]``. Weights use (bn, bk) = (128, 128);
per-token-group activations are the same thing with bn = 1 (``s [M, ceil(K/group)]``).
"""
from __future__ import annotations

FP8_E4M3_MAX = 448.0
# Random fp8 payloads are drawn as N(0, Q_STD) so that they use the e4m3 range (7 sigma < 448)
# without clamping in practice, as amax-scaled real tensors do.
Q_STD = 64.0


def expand_scales(s, n: int, k: int, block: tuple[int, int]):
    """Scales ``[..., ceil(n/bn), ceil(k/bk)]`` broadcast to ``[..., n, k]`` (fp32)."""
    import torch

    bn, bk = block
    s = s.to(torch.float32)
    return s.repeat_interleave(bn, dim=-2)[..., :n, :].repeat_interleave(bk, dim=-1)[..., :k]


def dequantize(q, s, block: tuple[int, int], dtype=None):
    """``q * s`` with each scale applied to its block, shape of ``q``.

    ``dtype=None``: fp32 math and result (the references). ``dtype=bf16``: what an eager user
    writes, e4m3 -> bf16 (exact) times the scale rounded to bf16, multiplied in place so the only
    temporary is the bf16 result. Scales are broadcast through a block view, never expanded to
    the full size, when the block sizes divide the dims."""
    import torch

    bn, bk = block
    n, k = q.shape[-2], q.shape[-1]
    dt = torch.float32 if dtype is None else dtype
    if n % bn or k % bk:
        return (q.to(torch.float32) * expand_scales(s, n, k, block)).to(dt)
    lead = q.shape[:-2]
    # A fresh contiguous copy: the in-place scaling below must never touch q itself.
    x = q.to(dtype=dt, copy=True, memory_format=torch.contiguous_format).view(*lead, n // bn, bn, k // bk, bk)
    x.mul_(s.to(dt).view(*lead, n // bn, 1, k // bk, 1))
    return x.view(q.shape)


def quantize(x, block: tuple[int, int]):
    """Block-quantize ``x [..., N, K]``: scale = amax(block) / 448 (a zero block gets scale 1),
    q = round-to-nearest-even(x / scale) in e4m3. Returns (q, s)."""
    import torch
    import torch.nn.functional as F

    bn, bk = block
    n, k = x.shape[-2], x.shape[-1]
    pn, pk = -(-n // bn) * bn, -(-k // bk) * bk
    xf = F.pad(x.to(torch.float32), (0, pk - k, 0, pn - n))
    lead = xf.shape[:-2]
    blocks = xf.reshape(*lead, pn // bn, bn, pk // bk, bk)
    amax = blocks.abs().amax(dim=(-3, -1))
    s = torch.where(amax > 0, amax / FP8_E4M3_MAX, torch.ones_like(amax))
    q = (xf / expand_scales(s, pn, pk, block)).clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX)
    return q[..., :n, :k].to(torch.float8_e4m3fn).contiguous(), s.contiguous()


def random_blocks(shape, block: tuple[int, int], device, gen, scale: float = 1.0, spread: float = 0.5):
    """A random block-scaled tensor whose dequantized values have standard deviation about
    ``scale``: fp8 payload N(0, Q_STD) and per-block scales ``scale / Q_STD * U(1 - spread,
    1 + spread)``. The per-block spread makes a transposed or misaligned scale index visible in
    the output. Leading dims are generated one slice at a time so that an expert stack of several
    GB never exists in fp32."""
    import torch

    *lead, n, k = (int(d) for d in shape)
    bn, bk = block
    sn, sk = -(-n // bn), -(-k // bk)
    q = torch.empty((*lead, n, k), dtype=torch.float8_e4m3fn, device=device)
    s = torch.empty((*lead, sn, sk), dtype=torch.float32, device=device)
    qv, sv = q.view(-1, n, k), s.view(-1, sn, sk)
    for i in range(qv.shape[0]):
        # Row chunks bound the fp32 temporary (a [704512, 2048] activation would be 5.8 GB).
        step = max(1, (1 << 26) // max(k, 1))
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            x = torch.randn((r1 - r0, k), generator=gen, device=device, dtype=torch.float32)
            qv[i, r0:r1] = x.mul_(Q_STD).clamp_(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)
        u = torch.rand((sn, sk), generator=gen, device=device, dtype=torch.float32)
        sv[i] = (u * (2 * spread) + (1 - spread)) * (scale / Q_STD)
    return q, s

