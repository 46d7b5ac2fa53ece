"""attention_forward implementations: ours_triton (the varlen flash kernel), explicit eager
attention (and its torch.compile), ``F.scaled_dot_product_attention`` (torch_native, the backend
named in the record), SDPA held to its flash backend, compiled FlexAttention, and the
``sdpa_dense`` reference (SDPA's fastest backend on the one sequence as strided views, no padding
copy; ranked apart), and flag-gems' varlen flash attention where it imports."""
from __future__ import annotations

from solbench.core import attention_peers as peers
from solbench.core.attention_ref import dense_scores_support, pad_varlen, unpad_varlen
from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, Support, add_impl
from solbench.ops._cuda_support import sm90_cuda_support
from solbench.ops.attention_forward.spec import spec
from solbench.peers import FLAG_GEMS, FLAG_GEMS_VARLEN_ATTENTION, flag_gems_head_support


def ours(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, out=None):
    from solbench.kernels.attention import varlen_attention

    return varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, softmax_scale,
                            causal=spec.causal, out=out)


def _expand_kv(x, num_heads: int):
    """[B, L, Hkv, D] -> [B, L, H, D] for grouped-query inputs (query head h uses kv head h // G)."""
    g = num_heads // x.shape[2]
    return x if g == 1 else x.repeat_interleave(g, dim=2)


def eager(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale):
    """Pad the batch, softmax(q k^T · scale) v in bf16 with a key-padding mask, unpad."""
    import torch

    qp, _ = pad_varlen(q, cu_seqlens_q, max_seqlen_q)
    kp, kvalid = pad_varlen(k, cu_seqlens_k, max_seqlen_k)
    vp, _ = pad_varlen(v, cu_seqlens_k, max_seqlen_k)
    kp, vp = _expand_kv(kp, q.shape[1]), _expand_kv(vp, q.shape[1])
    s = torch.einsum("bqhd,bkhd->bhqk", qp, kp) * softmax_scale
    s = s.masked_fill(~kvalid[:, None, None, :], float("-inf"))
    p = torch.softmax(s, dim=-1)
    o = torch.einsum("bhqk,bkhd->bqhd", p, vp)
    return unpad_varlen(o, cu_seqlens_q, q.shape[0])


def native(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale):
    """F.scaled_dot_product_attention on the padded batch; with one sequence there is no padding
    and no mask, so the flash backend can run."""
    import torch.nn.functional as F

    qp, _ = pad_varlen(q, cu_seqlens_q, max_seqlen_q)
    kp, kvalid = pad_varlen(k, cu_seqlens_k, max_seqlen_k)
    vp, _ = pad_varlen(v, cu_seqlens_k, max_seqlen_k)
    kp, vp = _expand_kv(kp, q.shape[1]), _expand_kv(vp, q.shape[1])
    mask = None if cu_seqlens_q.shape[0] == 2 else kvalid[:, None, None, :]
    o = F.scaled_dot_product_attention(qp.transpose(1, 2), kp.transpose(1, 2), vp.transpose(1, 2),
                                       attn_mask=mask, scale=softmax_scale)
    return unpad_varlen(o.transpose(1, 2), cu_seqlens_q, q.shape[0])


def _dense_supports(shape, device):
    lens = spec.seq_lens(shape)
    return dense_scores_support(len(lens) * int(shape["num_heads"]) * max(lens) ** 2,
                                "eager attention")


def _one_seq(q, k, v):
    """The single sequence as [1, L, H, D] views (no copy)."""
    return q[None], k[None], v[None]


def native_prepare(shape, inputs):
    i = inputs
    qp, kp, vp = (x.transpose(1, 2) for x in _one_seq(i["q"], i["k"], i["v"]))
    if len(spec.seq_lens(shape)) > 1:
        return {"sdpa_backend": "varlen: padded batch with a key-padding mask"}
    return {"sdpa_backend": peers.sdpa_backend_ran(qp, kp, vp, None, spec.causal, i["softmax_scale"])}


def flash(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale):
    """SDPA held to its flash backend on the one sequence (views, no copy)."""
    qp, kp, vp = _one_seq(q, k, v)
    return peers.sdpa(qp, kp, vp, is_causal=spec.causal, scale=softmax_scale, backend="FLASH_ATTENTION")[0]


_flex = peers.Flex()


def flex(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale):
    """Compiled FlexAttention on the padded batch with a length block mask."""
    qp, _ = pad_varlen(q, cu_seqlens_q, max_seqlen_q)
    kp, _ = pad_varlen(k, cu_seqlens_k, max_seqlen_k)
    vp, _ = pad_varlen(v, cu_seqlens_k, max_seqlen_k)
    key = peers.Flex.key(cu_seqlens_q.shape[0] - 1, max_seqlen_q, max_seqlen_k, q.shape[0])
    return unpad_varlen(_flex(qp, kp, vp, scale=softmax_scale, key=key), cu_seqlens_q, q.shape[0])


def flex_prepare(shape, inputs):
    lens = spec.seq_lens(shape)
    _flex.build(lens, lens, spec.causal, inputs["q"].device)
    return {}


_dense = peers.DenseReference()


def sdpa_dense(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale):
    """Reference: SDPA's fastest backend on the one sequence (views)."""
    qp, kp, vp = _one_seq(q, k, v)
    return peers.sdpa(qp, kp, vp, is_causal=spec.causal, scale=softmax_scale, backend=_dense.backend)[0]


def dense_prepare(shape, inputs):
    qp, kp, vp = _one_seq(inputs["q"], inputs["k"], inputs["v"])
    return {"sdpa_backend": _dense.pick_backend(qp, kp, vp, spec.causal, inputs["softmax_scale"]).lower()}


def _single_supports(shape, device):
    if len(spec.seq_lens(shape)) > 1:
        return Support.no("runs one sequence per call (no varlen mask in SDPA's fused backends)")
    return Support.yes()


def flag_gems(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, out=None):
    """vLLM's flash_attn_varlen_func call on packed q, k, v (cu_seqlens_k, not causal); writes into ``out``."""
    fn = FLAG_GEMS.get(*FLAG_GEMS_VARLEN_ATTENTION)
    return fn(q, k, v, max_seqlen_q, cu_seqlens_q, max_seqlen_k, cu_seqlens_k=cu_seqlens_k,
              softmax_scale=softmax_scale, causal=spec.causal, out=out)


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton varlen flash attention (GQA heads share K/V tiles, no host sync)"))
register_torch_baselines(spec.name, eager, "padded batch, bf16 einsum + masked softmax + einsum",
                         supports=_dense_supports)
add_impl(Impl(spec.name, "torch_native", native, baseline=True, prepare=native_prepare,
              description="F.scaled_dot_product_attention on the padded batch (key-padding mask when varlen); "
                          "the record names the backend"))
add_impl(Impl(spec.name, "sdpa_flash", flash, baseline=True, supports=_single_supports,
              available=lambda: peers.flash_support(True, True),
              description="SDPA held to its flash backend on the sequence as views"))
add_impl(Impl(spec.name, "flex_attention", flex, available=peers.Flex.available, baseline=True,
              prepare=flex_prepare, description="compiled FlexAttention (length block mask) on the padded batch"))
add_impl(Impl(spec.name, "sdpa_dense", sdpa_dense, supports=_single_supports, prepare=dense_prepare,
              role="reference", available=lambda: peers.flash_support(True, True),
              description="reference: SDPA's fastest backend (cuDNN first) on the sequence as strided views, "
                          "no padding copy"))
add_impl(Impl(spec.name, "flag_gems", flag_gems, available=lambda: FLAG_GEMS.support(*FLAG_GEMS_VARLEN_ATTENTION),
              supports=lambda shape, device: flag_gems_head_support(int(shape["head_dim"])), takes_out=True,
              baseline=True,
              description="flag_gems.flash_attn_varlen_func on packed q/k/v (cu_seqlens_k, causal=False; "
                          "its Triton FA2 path)"))


def ours_cuda(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, out=None):
    from solbench.kernels.attention import varlen_attention

    return varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, softmax_scale,
                            causal=spec.causal, out=out, backend="cuda")



def _cuda_supports(shape, device) -> Support:
    from solbench.kernels.cuda.attention import shape_reason

    why = shape_reason(int(shape["num_heads"]), int(shape["num_heads"]), int(shape["head_dim"]))
    return Support.no(why) if why else Support.yes()

add_impl(Impl(spec.name, "ours_cuda", ours_cuda, available=sm90_cuda_support, supports=_cuda_supports, takes_out=True,
              description="solbench CUDA varlen flash attention (sm_90a warpgroup MMAs, TMA, softmax under the p.v products)"))
