"""Shared attention mechanics: a memory-bounded fp32 reference, exact work counts for cost models,
and the sync-free padding helpers the eager baselines use.

Conventions used by every attention operator here:

* packed (varlen) tensors are ``[tokens, heads, dim]`` with ``cu_seqlens`` ``[num_seqs + 1]``;
* grouped-query attention maps query head ``h`` to kv head ``h // (H / H_kv)`` (what
  ``repeat_interleave`` on the kv heads gives, and what vLLM / aiter / FlashAttention do);
* causal masks are aligned bottom-right: query ``i`` of a sequence with ``L_q`` queries and
  ``L_k`` keys sees key ``j`` iff ``j <= i + L_k - L_q`` (the queries are the tail of the
  sequence, as in vLLM's chunked prefill and FlashAttention's varlen kernels).
"""
from __future__ import annotations

import contextlib
from typing import Sequence

# Scores per chunk of the reference (fp32): 2^27 elements = 512 MiB, so a chunk plus its exp/
# mask temporaries stays near 1.5 GiB on any catalog shape.
REFERENCE_CHUNK_SCORES = 1 << 27

# Eager baselines that materialize the whole [B, H, Lq, Lk] score matrix refuse beyond this many
# elements (2 GiB per bf16 copy; the formulation holds about three copies at once, next to the
# inputs, their checker copies and the reference output).
DENSE_SCORES_LIMIT = 1 << 30


@contextlib.contextmanager
def full_fp32():
    """Run fp32 matmuls as true fp32 (no TF32), whatever the process-wide setting is. Uses the
    legacy ``allow_tf32`` flag, or the newer ``fp32_precision`` where torch refuses to mix them."""
    import torch

    mm = torch.backends.cuda.matmul
    try:
        old, attr, value = mm.allow_tf32, "allow_tf32", False
    except RuntimeError:  # torch >= 2.9 after the new API was used: stay on the new API
        old, attr, value = mm.fp32_precision, "fp32_precision", "ieee"
    setattr(mm, attr, value)
    try:
        yield
    finally:
        setattr(mm, attr, old)


# ---- work counts (cost models) -------------------------------------------------------------------
def visible_pairs(len_q: int, len_k: int, causal: bool) -> int:
    """Number of (query, key) pairs that take part in attention for one sequence."""
    len_q, len_k = int(len_q), int(len_k)
    if len_q <= 0 or len_k <= 0:
        return 0
    if not causal:
        return len_q * len_k
    # Query i sees min(L_k, max(0, i + L_k - L_q + 1)) keys (bottom-right aligned).
    total = 0
    d = len_k - len_q
    # Rows whose visible count is clipped at 0 (i + d + 1 <= 0) contribute nothing; rows from
    # L_q - 1 on (i + d + 1 >= L_k) contribute L_k; the rest form an arithmetic series.
    first = max(0, -d)
    full_from = min(max(first, len_q - 1), len_q)
    if full_from > first:
        a = first + d + 1
        b = full_from - 1 + d + 1
        total += (a + b) * (full_from - first) // 2
    total += max(0, len_q - full_from) * len_k
    return total


def attention_matmul_flops(pairs: int, num_heads: int, head_dim_qk: int, head_dim_v: int) -> int:
    """FLOPs of the two attention GEMMs: 2·D_qk for a score and 2·D_v for its share of the output,
    per visible pair and head. The softmax's elementwise work is not counted: FlashAttention-style
    kernels overlap it with the tensor-core work, and published attention TFLOP/s use this count."""
    return 2 * int(pairs) * int(num_heads) * (int(head_dim_qk) + int(head_dim_v))


# ---- the reference -------------------------------------------------------------------------------
def _host_list(t) -> list[int]:
    return [int(x) for x in t.detach().cpu().long().tolist()]


def _attend(qp, kp, vp, q_pos, row_valid, k_len, diag, causal: bool, scale: float):
    """Dense attention for a chunk of padded sequences, fp32.

    qp [n, Lq, H, D], kp [n, Lk, Hkv, D], vp [n, Lk, Hkv, Dv]; q_pos [n, Lq] row index of each
    query inside its sequence; row_valid [n, Lq]; k_len [n] keys per sequence; diag [n] = L_k - L_q.
    Returns [n, Lq, H, Dv] fp32 (rows that are padding or see no key are 0).
    """
    import torch

    n, lq, h, d = qp.shape
    lk, hkv, dv = kp.shape[1], kp.shape[2], vp.shape[-1]
    g = h // hkv
    q = qp.view(n, lq, hkv, g, d).permute(0, 2, 3, 1, 4).reshape(n, hkv, g * lq, d)
    k = kp.permute(0, 2, 3, 1)                      # [n, Hkv, D, Lk]
    v = vp.permute(0, 2, 1, 3)                      # [n, Hkv, Lk, Dv]
    s = torch.matmul(q * scale, k).view(n, hkv, g, lq, lk)
    j = torch.arange(lk, device=qp.device)
    visible = (j[None, None, :] < k_len[:, None, None]) & row_valid[:, :, None]
    if causal:
        visible &= j[None, None, :] <= (q_pos + diag[:, None])[:, :, None]
    s.masked_fill_(~visible[:, None, None], float("-inf"))
    m = s.amax(dim=-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    s.sub_(m).exp_()
    denom = s.sum(dim=-1, keepdim=True)
    o = torch.matmul(s.view(n, hkv, g * lq, lk), v).view(n, hkv, g, lq, dv)
    o = o / torch.where(denom > 0, denom, torch.ones_like(denom))
    return o.permute(0, 3, 1, 2, 4).reshape(n, lq, h, dv)


def varlen_attention_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, *, scale: float, causal: bool,
                               out_dtype=None, chunk_scores: int = REFERENCE_CHUNK_SCORES):
    """out[t, h] = Σ_j softmax_j(scale · q[t, h]·k[j, h // G] + mask) · v[j, h // G], fp32 math.

    ``q`` [Tq, H, D], ``k`` [Tk, Hkv, D], ``v`` [Tk, Hkv, Dv] packed by ``cu_seqlens_q`` /
    ``cu_seqlens_k``; G = H / Hkv. The mask keeps key j < L_k of the query's own sequence and,
    when ``causal``, only j <= i + L_k - L_q. A query that sees no key gets 0.

    Memory stays bounded: sequences are processed in padded groups of at most ``chunk_scores``
    scores, and a sequence too long for one chunk is processed in blocks of query rows (with the
    keys a causal block cannot see left out). The result is cast once to ``out_dtype``.
    """
    import torch

    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError("varlen_attention_reference: q, k, v must be [tokens, heads, dim]")
    tq, h, d = q.shape
    hkv, dv = k.shape[1], v.shape[-1]
    if h % hkv:
        raise ValueError(f"varlen_attention_reference: {h} query heads is not a multiple of {hkv} kv heads")
    out_dtype = out_dtype or q.dtype
    cq, ck = _host_list(cu_seqlens_q), _host_list(cu_seqlens_k)
    if len(cq) != len(ck):
        raise ValueError("varlen_attention_reference: cu_seqlens_q and cu_seqlens_k describe different batch sizes")
    lq = [b - a for a, b in zip(cq[:-1], cq[1:])]
    lk = [b - a for a, b in zip(ck[:-1], ck[1:])]
    dev = q.device
    out = torch.zeros((tq, h, dv), dtype=out_dtype, device=dev)

    def run(seqs: Sequence[int], row0: int = 0, rows: int | None = None, kv=None):
        # One padded chunk: sequences ``seqs`` (or rows [row0, row0+rows) of a single sequence,
        # whose fp32 keys and values ``kv`` are converted once for all its row blocks).
        n = len(seqs)
        nq = rows if rows is not None else max(lq[s] for s in seqs)
        if rows is not None and causal:
            s0 = seqs[0]
            nk = min(lk[s0], max(0, row0 + nq + lk[s0] - lq[s0]))
        else:
            nk = max(lk[s] for s in seqs)
        if nq == 0 or nk == 0:
            return
        pos = torch.arange(nq, device=dev) + row0
        kpos = torch.arange(nk, device=dev)
        qstart = torch.tensor([cq[s] for s in seqs], device=dev)
        kstart = torch.tensor([ck[s] for s in seqs], device=dev)
        qlen = torch.tensor([lq[s] for s in seqs], device=dev)
        klen = torch.tensor([lk[s] for s in seqs], device=dev)
        row_valid = pos[None, :] < qlen[:, None]
        qidx = (qstart[:, None] + pos[None, :]).clamp(max=max(tq - 1, 0))
        kidx = (kstart[:, None] + kpos[None, :]).clamp(max=max(k.shape[0] - 1, 0))
        qp = q[qidx].float()
        if kv is not None:
            kp, vp = kv[0][:, :nk], kv[1][:, :nk]
        else:
            kp, vp = k[kidx].float(), v[kidx].float()
        o = _attend(qp, kp, vp, pos[None, :].expand(n, nq), row_valid, klen, klen - qlen, causal, scale)
        dst = qidx[row_valid]
        out[dst] = o[row_valid].to(out_dtype)

    with full_fp32(), torch.no_grad():
        group: list[int] = []
        gq = gk = 0
        for s in range(len(lq)):
            if lq[s] == 0 or lk[s] == 0:
                continue
            if h * lq[s] * lk[s] > chunk_scores:
                # Too long for one chunk: blocks of query rows over this sequence alone.
                rows = max(1, chunk_scores // (h * lk[s]))
                kv = (k[ck[s]:ck[s + 1]].float()[None], v[ck[s]:ck[s + 1]].float()[None])
                for r0 in range(0, lq[s], rows):
                    run([s], r0, min(rows, lq[s] - r0), kv)
                del kv
                continue
            nq, nk = max(gq, lq[s]), max(gk, lk[s])
            if group and (len(group) + 1) * h * nq * nk > chunk_scores:
                run(group)
                group, nq, nk = [], lq[s], lk[s]
            group.append(s)
            gq, gk = nq, nk
        if group:
            run(group)
    return out


# ---- sync-free padding for eager baselines -----------------------------------------------------
def pad_varlen(x, cu_seqlens, max_len: int):
    """``x`` [T, ...] packed by ``cu_seqlens`` -> (``[B, max_len, ...]``, valid ``[B, max_len]``).
    No host synchronization: ``max_len`` is the caller's host-side bound (as in FlashAttention's
    ``max_seqlen`` arguments). Padding positions repeat a valid row and must be masked."""
    import torch

    cu = cu_seqlens.long()
    pos = torch.arange(int(max_len), device=x.device)
    valid = pos[None, :] < (cu[1:] - cu[:-1])[:, None]
    idx = (cu[:-1, None] + pos[None, :]).clamp(max=max(x.shape[0] - 1, 0))
    return x[idx], valid


def unpad_varlen(xp, cu_seqlens, total: int):
    """Inverse of :func:`pad_varlen`: ``[B, L, ...]`` -> packed ``[total, ...]``, sync-free."""
    import torch

    cu = cu_seqlens.long()
    t = torch.arange(int(total), device=xp.device)
    seq = torch.searchsorted(cu[1:], t, right=True)
    return xp[seq, t - cu[seq]]


def dense_scores_support(num_scores: int, what: str = "this formulation"):
    """Support for an eager baseline that materializes ``num_scores`` attention scores."""
    from solbench.core.spec import Support

    if num_scores > DENSE_SCORES_LIMIT:
        gib = num_scores * 2 / 2**30
        return Support.no(f"{what} materializes the full score matrix ({num_scores:.3g} scores, "
                          f"{gib:.1f} GiB per bf16 copy, about 3 copies live); limit {DENSE_SCORES_LIMIT:.3g}")
    return Support.yes()


def visibility_mask(cu_seqlens_q, seqlens_k, max_len_q: int, max_len_k: int, causal: bool):
    """``[B, max_len_q, max_len_k]`` bool, sync-free: key j is visible to query row i of sequence b
    iff j < L_k[b] and (not causal or j <= i + L_k[b] - L_q[b]) (bottom-right causal)."""
    import torch

    cu = cu_seqlens_q.long()
    lq = cu[1:] - cu[:-1]
    lk = seqlens_k.long()
    i = torch.arange(int(max_len_q), device=cu.device)
    j = torch.arange(int(max_len_k), device=cu.device)
    mask = j[None, None, :] < lk[:, None, None]
    if causal:
        mask = mask & (j[None, None, :] <= (i[None, :] + (lk - lq)[:, None])[:, :, None])
    return mask


def attention_tolerance(dtype: str):
    """Tolerance of a 16-bit attention output against the fp32 reference. Baselines round the
    scores and the probabilities to the input dtype (bf16: 2^-9 relative, so a logit of 10 moves
    by 0.02 and a probability by 2%); measured RMS-relative error is about 6e-3 at any sequence
    length, single elements where p·v terms cancel reach 0.016 absolute (|v| ~ 1). fp16 has
    2^-11, a quarter of that (measured RMS about 7e-4). The RMS bound is 2.5x the measured error;
    a wrong mask, scale or head mapping gives errors of order 1."""
    from solbench.core.spec import Tolerance

    if dtype == "fp16":
        return Tolerance(atol=5e-3, rtol=4e-3, rms_rtol=2e-3)
    return Tolerance(atol=2e-2, rtol=1.6e-2, rms_rtol=1.5e-2)
