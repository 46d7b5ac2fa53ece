"""flag-gems peers: registered under ``flag_gems`` for each operator, skipped with a reason where
flag_gems or CUDA is missing, every catalog shape within what the adapters accept, and each
adapter's argument mapping checked on the CPU against the operator's reference, with torch
stand-ins for the flag_gems functions that follow their upstream signatures and semantics."""
import dataclasses
import types

import pytest
import torch
import torch.nn.functional as F

from solbench import peers
from solbench.core import fp8_blocks
from solbench.core.attention_ref import varlen_attention_reference
from solbench.core.check import check_impl
from solbench.core.moe_routing import align_layout
from solbench.core.paged import packed_from_nhd
from solbench.core.spec import get_spec, impls_for

OPS = ("fused_moe", "block_scaled_mm", "fp8_blockscale_fused_moe", "moe_topk_gating_softmax",
       "moe_align_block_size", "moe_sum_reduce", "unified_attention", "attention_forward")
CPU = torch.device("cpu")


def _impl(op):
    return impls_for(op)["flag_gems"]


@pytest.mark.parametrize("op", OPS)
def test_registered_as_a_ranked_peer_naming_the_upstream_function(op):
    impl = _impl(op)
    assert impl.baseline and impl.role == "peer"
    assert "flag_gems." in impl.description


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip reason where there is no CUDA device")
@pytest.mark.parametrize("op", OPS)
def test_unavailable_without_cuda_with_a_reason(op):
    support = _impl(op).available()
    assert not support
    assert "flag_gems" in support.reason or "CUDA" in support.reason


@pytest.mark.parametrize("op", OPS)
def test_every_catalog_shape_is_within_what_the_adapter_accepts(op):
    spec, impl = get_spec(op), _impl(op)
    refused = {s.id: impl.supports(s, CPU).reason for s in spec.shapes if not impl.supports(s, CPU)}
    assert not refused


def test_refusals_name_the_limit():
    scaled = get_spec("moe_sum_reduce").smoke_shapes()[1]
    assert "routed_scaling_factor=2.5" in _impl("moe_sum_reduce").supports(scaled, CPU).reason
    mm = get_spec("block_scaled_mm")
    odd = dataclasses.replace(mm.smoke_shapes()[0], params=dict(m=4, n=96, k=256, group_n=96, group_k=128))
    assert "96x128" in _impl("block_scaled_mm").supports(odd, CPU).reason
    assert "got 84" in peers.flag_gems_head_support(84).reason and not peers.flag_gems_head_support(264)
    assert peers.flag_gems_head_support(72) and peers.flag_gems_head_support(256)


# ---- torch stand-ins for the flag_gems functions (signatures as in flag_gems 5.0.2) -------------------

def _fused_experts(hidden_states, w1, w2, topk_weights, topk_ids):
    """outplace_fused_experts: the hidden dtype out."""
    return get_spec("fused_moe").reference(hidden_states, w1, w2, topk_weights, topk_ids).to(hidden_states.dtype)


def _w8a8_block_fp8_matmul(A, B, As, Bs, block_size, output_dtype=torch.bfloat16):
    block_n, block_k = block_size
    assert -(-A.shape[1] // block_k) == As.shape[1] and -(-B.shape[0] // block_n) == Bs.shape[0]
    assert -(-B.shape[1] // block_k) == Bs.shape[1]
    x = fp8_blocks.dequantize(A, As, (1, block_k))
    return (x @ fp8_blocks.dequantize(B, Bs, (block_n, block_k)).T).to(output_dtype)


def _topk_softmax(topk_weights, topk_indices, token_expert_indices, gating_output, renormalize=False):
    assert topk_indices.dtype == torch.int32 and token_expert_indices.shape == topk_indices.shape
    w, ids = torch.softmax(gating_output.float(), dim=-1).topk(topk_weights.shape[-1], dim=-1)
    if renormalize:
        w = w / w.sum(-1, keepdim=True)
    topk_weights.copy_(w)
    topk_indices.copy_(ids)


def _moe_align_block_size_triton(topk_ids, num_experts, block_size, sorted_token_ids, expert_ids,
                                 num_tokens_post_pad):
    lay = align_layout(topk_ids, num_experts, block_size)
    sorted_token_ids.copy_(lay["sorted_ids"])
    expert_ids.copy_(lay["block_experts"])
    num_tokens_post_pad.copy_(lay["offsets"][-1:])


def _moe_align_block_size(topk_ids, block_size, num_experts):
    lay = align_layout(topk_ids, num_experts, block_size)
    i32 = torch.int32
    return lay["sorted_ids"].to(i32), lay["block_experts"].to(i32), lay["offsets"][-1:].to(i32)


def _moe_sum(input, output):
    output.copy_(input.float().sum(1))


def _flash_attn_varlen_func(q, k, v, max_seqlen_q, cu_seqlens_q, max_seqlen_k, cu_seqlens_k=None, seqused_k=None,
                            softmax_scale=None, causal=False, block_table=None, out=None):
    assert isinstance(max_seqlen_q, int) and isinstance(max_seqlen_k, int)
    assert (cu_seqlens_k is None) != (seqused_k is None) and (block_table is None or seqused_k is not None)
    if block_table is not None:
        lens = seqused_k.tolist()
        k, v = packed_from_nhd(k, block_table, lens), packed_from_nhd(v, block_table, lens)
        cu_seqlens_k = torch.tensor([0] + lens).cumsum(0)
    o = varlen_attention_reference(q, k, v, cu_seqlens_q, cu_seqlens_k, scale=softmax_scale, causal=causal,
                                   out_dtype=q.dtype)
    return o if out is None else out.copy_(o)


def _moe_config(w1_shape, w2_shape, top_k, dtype, M, E, block_shape=None):
    assert dtype == "fp8_w8a8" and block_shape == [128, 128] and E == w1_shape[0]
    return {"BLOCK_SIZE_M": 4, "BLOCK_SIZE_N": 128, "BLOCK_SIZE_K": 128, "GROUP_SIZE_M": 1}


def _dispatch_fused_moe_kernel(A, B, C, A_scale, B_scale, B_zp, topk_weights, sorted_token_ids, expert_ids,
                               num_tokens_post_padded, mul_routed_weight, top_k, config, compute_type, use_fp8_w8a8,
                               use_int8_w8a8, use_int8_w8a16, use_int4_w4a16, per_channel_quant, block_shape=None,
                               B_bias=None):
    """The fused_moe kernel's contract: routed slot s (of A.size(0) * top_k) reads A row s // top_k,
    is multiplied by its block's expert weight and, if asked, its router weight, into C row s."""
    assert use_fp8_w8a8 and not (use_int8_w8a8 or use_int8_w8a16 or use_int4_w4a16 or per_channel_quant)
    assert B_zp is None and B_bias is None and A.dtype == B.dtype == torch.float8_e4m3fn
    slots = A.shape[0] * top_k
    x = fp8_blocks.dequantize(A, A_scale, (1, block_shape[1]))
    c = C.view(slots, C.shape[-1])
    bm = config["BLOCK_SIZE_M"]
    if sorted_token_ids is None:  # one block per slot
        blocks = [(torch.tensor([s]), int(expert_ids[s])) for s in range(slots)]
    else:
        blocks = [(sorted_token_ids[b * bm:(b + 1) * bm].long(), int(expert_ids[b]))
                  for b in range(int(num_tokens_post_padded) // bm)]
    for rows, e in blocks:
        rows = rows[rows < slots]
        y = x[rows // top_k] @ fp8_blocks.dequantize(B[e], B_scale[e], tuple(block_shape)).T
        if mul_routed_weight:
            y = y * topk_weights.reshape(-1)[rows, None]
        c[rows] = y.to(C.dtype)


def _apply_moe_activation(activation, output, input):
    assert activation == "silu"
    n = output.shape[-1]
    output.copy_(F.silu(input[:, :n].float()) * input[:, n:].float())


def _moe_kernel_quantize_input(A, A_scale, quant_dtype, per_act_token_quant, block_shape=None):
    assert A_scale is None and quant_dtype == torch.float8_e4m3fn and not per_act_token_quant
    return fp8_blocks.quantize(A, (1, block_shape[1]))


FAKES = {
    ("flag_gems", "outplace_fused_experts"): _fused_experts,
    ("flag_gems", "w8a8_block_fp8_matmul"): _w8a8_block_fp8_matmul,
    ("flag_gems", "topk_softmax"): _topk_softmax,
    ("flag_gems", "moe_align_block_size_triton"): _moe_align_block_size_triton,
    ("flag_gems", "moe_sum"): _moe_sum,
    ("flag_gems", "flash_attn_varlen_func"): _flash_attn_varlen_func,
    ("flag_gems.fused.fused_moe", "try_get_optimal_moe_config"): _moe_config,
    ("flag_gems.fused.fused_moe", "moe_align_block_size"): _moe_align_block_size,
    ("flag_gems.fused.fused_moe", "dispatch_fused_moe_kernel"): _dispatch_fused_moe_kernel,
    ("flag_gems.fused.fused_moe", "apply_moe_activation"): _apply_moe_activation,
    ("flag_gems.fused.fused_moe", "MoEActivation"): types.SimpleNamespace(SILU="silu"),
    ("flag_gems.fused.fused_moe", "moe_kernel_quantize_input"): _moe_kernel_quantize_input,
    ("flag_gems.fused.fused_moe", "moe_sum"): _moe_sum,
}


@pytest.fixture
def stand_ins(monkeypatch):
    called = set()

    def get(self, module, attr=None):
        assert self is peers.FLAG_GEMS
        called.add((module, attr))
        return FAKES[(module, attr)]

    monkeypatch.setattr(peers.Library, "get", get)
    return called


def _shape(op, sid=None, **params):
    spec = get_spec(op)
    smoke = spec.smoke_shapes()
    base = smoke[0] if sid is None else next(s for s in smoke if s.id == sid)
    return base if not params else dataclasses.replace(base, id="test", params={**base.params, **params})


CASES = {
    "fused_moe": ("fused_moe", None, {}),
    "block_scaled_mm": ("block_scaled_mm", None, {}),
    "block_scaled_mm-group_n64": ("block_scaled_mm", None, dict(group_n=64)),   # block_size is [group_n, group_k]
    "moe_topk_gating_softmax": ("moe_topk_gating_softmax", None, {}),
    "moe_align_block_size": ("moe_align_block_size", None, {}),
    "moe_sum_reduce": ("moe_sum_reduce", None, {}),
    "unified_attention": ("unified_attention", "smoke_chunked", {}),
    "attention_forward": ("attention_forward", "smoke_varlen", {}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_adapter_maps_our_inputs_to_the_upstream_call(case, stand_ins):
    op, sid, params = CASES[case]
    res = check_impl(get_spec(op), _impl(op), _shape(op, sid, **params), CPU, seeds=(0,))
    assert res.ok, res.reason


ALIGN = ("flag_gems.fused.fused_moe", "moe_align_block_size")


@pytest.mark.parametrize("tokens,chunk,slices", [
    (2, 16 * 1024, [2]),     # 2 * 2 * 4 > 8 experts: the aligned layout
    (1, 16 * 1024, [1]),     # 1 * 2 * 4 <= 8 experts: one block per routed slot, no align step
    (12, 5, [5, 5, 2]),      # longer than a slice: 5, 5 and 2 tokens
])
def test_fp8_moe_follows_fused_experts_impl(tokens, chunk, slices, stand_ins, monkeypatch):
    from solbench.ops.fp8_blockscale_fused_moe import impls

    sizes = []

    def config(*args, M, **kw):
        sizes.append(M)
        return _moe_config(*args, M=M, **kw)

    monkeypatch.setitem(FAKES, ("flag_gems.fused.fused_moe", "try_get_optimal_moe_config"), config)
    monkeypatch.setattr(impls, "_FG_CHUNK", chunk)
    op = "fp8_blockscale_fused_moe"
    res = check_impl(get_spec(op), _impl(op), _shape(op, None, token_count=tokens), CPU, seeds=(0,))
    assert res.ok, res.reason
    assert sizes == slices
    assert (ALIGN in stand_ins) == (tokens > 1)
