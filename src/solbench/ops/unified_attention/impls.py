"""unified_attention implementations: ours_triton (the paged varlen flash kernel), the paged cache
gathered into a padded batch for eager attention (and its torch.compile), SDPA (the backend that
ran named in the record), SDPA held to its flash backend, compiled FlexAttention, and the
``sdpa_dense`` reference (K/V gathered before the timed call, ranked apart), and flag-gems' paged varlen
flash attention where it imports."""
from __future__ import annotations

from solbench.core import attention_peers as peers
from solbench.core.attention_ref import dense_scores_support, pad_varlen, unpad_varlen, visibility_mask
from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.paged import token_slots
from solbench.core.spec import Impl, Support, add_impl
from solbench.ops._cuda_support import sm90_cuda_support
from solbench.ops.unified_attention.spec import spec
from solbench.peers import FLAG_GEMS, FLAG_GEMS_VARLEN_ATTENTION, flag_gems_head_support


def ours(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q, max_seqlen_k, softmax_scale,
         out=None):
    from solbench.kernels.attention import unified_attention

    return unified_attention(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q,
                             softmax_scale, causal=True, out=out, max_seqlen_k=max_seqlen_k)


def _gather_kv(k_cache, v_cache, block_table, max_seqlen_k):
    """The sequences' K, V as a padded batch [B, Lk, H_kv, D] (positions past L_k are stale rows)."""
    nb, bs, hkv, d = k_cache.shape
    slots = token_slots(block_table, max_seqlen_k, bs)
    return k_cache.reshape(nb * bs, hkv, d)[slots], v_cache.reshape(nb * bs, hkv, d)[slots]


def _gather(q, k_cache, v_cache, cu_seqlens_q, block_table, max_seqlen_q, max_seqlen_k):
    """Padded q [B, Lq, H, D] and the sequences' K, V [B, Lk, H, D] (kv heads repeated for GQA)."""
    h, hkv = q.shape[1], k_cache.shape[2]
    kp, vp = _gather_kv(k_cache, v_cache, block_table, max_seqlen_k)
    if h != hkv:
        kp, vp = kp.repeat_interleave(h // hkv, dim=2), vp.repeat_interleave(h // hkv, dim=2)
    qp, _ = pad_varlen(q, cu_seqlens_q, max_seqlen_q)
    return qp, kp, vp


def eager(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q, max_seqlen_k, softmax_scale):
    """Gather the pages, bf16 einsum + causal/padding-masked softmax + einsum."""
    import torch

    qp, kp, vp = _gather(q, k_cache, v_cache, cu_seqlens_q, block_table, max_seqlen_q, max_seqlen_k)
    mask = visibility_mask(cu_seqlens_q, seqused_k, max_seqlen_q, max_seqlen_k, causal=True)
    s = torch.einsum("bqhd,bkhd->bhqk", qp, kp) * softmax_scale
    s = s.masked_fill(~mask[:, None], float("-inf"))
    p = torch.softmax(s, dim=-1)
    o = torch.einsum("bhqk,bkhd->bqhd", p, vp)
    return unpad_varlen(o, cu_seqlens_q, q.shape[0])


def _single(seqused_k, max_seqlen_q, max_seqlen_k) -> bool:
    """One sequence with L_q = L_k (known from the host-side maxima): plain causal attention."""
    return seqused_k.shape[0] == 1 and int(max_seqlen_q) == int(max_seqlen_k)


def native(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q, max_seqlen_k, softmax_scale):
    """F.scaled_dot_product_attention on the gathered batch: ``is_causal`` and no mask for one
    sequence (so a fused backend can run), else a boolean bottom-right causal + padding mask."""
    qp, kp, vp = _gather(q, k_cache, v_cache, cu_seqlens_q, block_table, max_seqlen_q, max_seqlen_k)
    single = _single(seqused_k, max_seqlen_q, max_seqlen_k)
    mask = None if single else visibility_mask(cu_seqlens_q, seqused_k, max_seqlen_q, max_seqlen_k, True)[:, None]
    o = peers.sdpa(qp, kp, vp, is_causal=single, scale=softmax_scale, mask=mask)
    return unpad_varlen(o, cu_seqlens_q, q.shape[0])


def native_prepare(shape, inputs):
    """Name the SDPA backend this shape runs on (it goes into the record)."""
    i = inputs
    qp, kp, vp = _gather(i["q"], i["k_cache"], i["v_cache"], i["cu_seqlens_q"], i["block_table"],
                         i["max_seqlen_q"], i["max_seqlen_k"])
    single = _single(i["seqused_k"], i["max_seqlen_q"], i["max_seqlen_k"])
    mask = None if single else visibility_mask(i["cu_seqlens_q"], i["seqused_k"], i["max_seqlen_q"],
                                               i["max_seqlen_k"], True)[:, None]
    return {"sdpa_backend": peers.sdpa_backend_ran(qp.transpose(1, 2), kp.transpose(1, 2), vp.transpose(1, 2),
                                                   mask, single, i["softmax_scale"])}


def _equal_square(shape) -> bool:
    lq, lk = spec.lengths(shape)
    return len(set(lk)) == 1 and lq == lk


def _batched(q, cu_seqlens_q, max_seqlen_q):
    """Equal-length sequences as a [B, L, H, D] view of packed q (no copy)."""
    b = cu_seqlens_q.shape[0] - 1
    return q.view(b, int(max_seqlen_q), q.shape[1], q.shape[2])


def flash(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q, max_seqlen_k, softmax_scale):
    """Gather the pages, SDPA held to its flash backend (equal-length batches, L_q = L_k)."""
    kp, vp = _gather_kv(k_cache, v_cache, block_table, max_seqlen_k)
    o = peers.sdpa(_batched(q, cu_seqlens_q, max_seqlen_q), kp, vp, is_causal=True, scale=softmax_scale,
                   backend="FLASH_ATTENTION")
    return o.reshape(q.shape)


_flex = peers.Flex()


def flex(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q, max_seqlen_k, softmax_scale):
    """Gather the pages, compiled FlexAttention with a causal + length block mask and GQA."""
    kp, vp = _gather_kv(k_cache, v_cache, block_table, max_seqlen_k)
    qp, _ = pad_varlen(q, cu_seqlens_q, max_seqlen_q)
    key = peers.Flex.key(seqused_k.shape[0], max_seqlen_q, max_seqlen_k, q.shape[0])
    return unpad_varlen(_flex(qp, kp, vp, scale=softmax_scale, key=key), cu_seqlens_q, q.shape[0])


def flex_prepare(shape, inputs):
    lq, lk = spec.lengths(shape)
    _flex.build(lq, lk, True, inputs["q"].device)
    return {}


_dense = peers.DenseReference()


def _dense_kv(k_cache, v_cache, block_table, max_seqlen_k, h):
    import torch

    def gather():
        kp, vp = _gather_kv(k_cache, v_cache, block_table, max_seqlen_k)
        g = h // kp.shape[2]
        return kp.repeat_interleave(g, dim=2).contiguous(), vp.repeat_interleave(g, dim=2).contiguous()

    return _dense.dense(k_cache, gather)


def sdpa_dense(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q, max_seqlen_k,
               softmax_scale):
    """Reference: SDPA's fastest backend on K/V gathered dense before the timed call."""
    kp, vp = _dense_kv(k_cache, v_cache, block_table, max_seqlen_k, q.shape[1])
    o = peers.sdpa(_batched(q, cu_seqlens_q, max_seqlen_q), kp, vp, is_causal=True, scale=softmax_scale,
                   backend=_dense.backend)
    return o.reshape(q.shape)


_dense_ours = peers.DenseReference()


def ours_dense(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q, max_seqlen_k,
               softmax_scale):
    """Reference: our kernel's dense path on K/V gathered before the timed call (what paging costs us)."""
    from solbench.kernels.attention import varlen_attention

    import torch

    def gather():
        kp, vp = _gather_kv(k_cache, v_cache, block_table, max_seqlen_k)
        b, lk, hkv, d = kp.shape
        cu_k = torch.arange(0, (b + 1) * lk, lk, device=q.device, dtype=torch.int32)
        return kp.reshape(b * lk, hkv, d).contiguous(), vp.reshape(b * lk, hkv, d).contiguous(), cu_k

    k, v, cu_k = _dense_ours.dense(k_cache, gather)
    return varlen_attention(q, k, v, cu_seqlens_q, cu_k, max_seqlen_q, softmax_scale, causal=True)


def dense_prepare(shape, inputs):
    i = inputs
    kp, vp = _dense_kv(i["k_cache"], i["v_cache"], i["block_table"], i["max_seqlen_k"], i["q"].shape[1])
    backend = _dense.pick_backend(_batched(i["q"], i["cu_seqlens_q"], i["max_seqlen_q"]), kp, vp, True,
                                  i["softmax_scale"])
    return {"sdpa_backend": backend.lower()}


def _dense_supports(shape, device):
    lq, lk = spec.lengths(shape)
    return dense_scores_support(len(lk) * int(shape["num_query_heads"]) * max(lq) * max(lk), "eager attention")


def _flash_supports(shape, device):
    return peers.flash_support(_equal_square(shape), True)


def _dense_ref_supports(shape, device):
    if not _equal_square(shape):
        return Support.no("sdpa_dense runs equal-length batches with L_q = L_k only (one is_causal call)")
    return Support.yes()


def flag_gems(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q, max_seqlen_k,
              softmax_scale, out=None):
    """vLLM's flash_attn_varlen_func call on the paged cache: block_table + seqused_k, causal
    (bottom-right), GQA by head ratio; writes into ``out``."""
    fn = FLAG_GEMS.get(*FLAG_GEMS_VARLEN_ATTENTION)
    return fn(q, k_cache, v_cache, max_seqlen_q, cu_seqlens_q, max_seqlen_k, seqused_k=seqused_k,
              softmax_scale=softmax_scale, causal=True, block_table=block_table, out=out)


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton flash attention over the paged cache: GQA heads share K/V tiles, "
                          "unmasked tiles below the causal diagonal, no host sync"))
register_torch_baselines(spec.name, eager, "gather pages, bf16 einsum + masked softmax + einsum",
                         supports=_dense_supports)
add_impl(Impl(spec.name, "torch_native", native, baseline=True, prepare=native_prepare,
              description="gather pages + F.scaled_dot_product_attention (is_causal for one sequence, else a mask); "
                          "the record names the backend"))
add_impl(Impl(spec.name, "sdpa_flash", flash, baseline=True, supports=_flash_supports,
              description="gather pages + SDPA held to its flash backend (is_causal)"))
add_impl(Impl(spec.name, "flex_attention", flex, available=peers.Flex.available, baseline=True,
              prepare=flex_prepare,
              description="gather pages + compiled FlexAttention (causal + length block mask, enable_gqa)"))
add_impl(Impl(spec.name, "sdpa_dense", sdpa_dense, supports=_dense_ref_supports, prepare=dense_prepare,
              role="reference", available=lambda: peers.flash_support(True, True),
              description="reference, not paged: SDPA's fastest backend (cuDNN first) on K/V gathered dense and "
                          "GQA-expanded before the timed call"))
add_impl(Impl(spec.name, "ours_dense", ours_dense, available=triton_support, supports=_dense_ref_supports,
              role="reference",
              description="reference, not paged: our kernel's dense varlen path on K/V gathered before the timed call"))
add_impl(Impl(spec.name, "flag_gems", flag_gems, available=lambda: FLAG_GEMS.support(*FLAG_GEMS_VARLEN_ATTENTION),
              supports=lambda shape, device: flag_gems_head_support(spec.heads(shape)[2]), takes_out=True,
              baseline=True,
              description="flag_gems.flash_attn_varlen_func on the paged cache (block_table, seqused_k, causal=True; "
                          "its Triton FA2 path, no page gather)"))


def ours_cuda(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q, max_seqlen_k,
              softmax_scale, out=None):
    from solbench.kernels.attention import unified_attention

    return unified_attention(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, max_seqlen_q,
                             softmax_scale, causal=True, out=out, max_seqlen_k=max_seqlen_k, backend="cuda")



def _cuda_supports(shape, device) -> Support:
    from solbench.kernels.cuda.attention import shape_reason

    why = shape_reason(int(shape["num_query_heads"]), int(shape["num_kv_heads"]), int(shape["head_size"]))
    return Support.no(why) if why else Support.yes()

add_impl(Impl(spec.name, "ours_cuda", ours_cuda, available=sm90_cuda_support, supports=_cuda_supports, takes_out=True,
              description="solbench CUDA flash attention (sm_90a warpgroup MMAs, TMA, softmax under the p.v products) on keys staged dense"))
