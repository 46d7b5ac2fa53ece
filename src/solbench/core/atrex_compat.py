"""SOL with Atrex-Bench's conventions: ``solbench roofline --compat atrex``.

Atrex-Bench (alibaba/atrex-bench, ``scripts/roofline.py``) publishes one SOL per shape and SKU:

* Q = every input tensor of its reference's call signature, whole, plus every output tensor,
  whole (a KV or state pool counts entirely, an in-place update counts as a full clone);
* W = the FLOPs its traced reference executes, all priced at the peak of the operator's
  metadata dtype (one path: ``bf16`` -> the bf16 tensor cores even for softmax or a norm,
  ``fp32`` -> the fp32 CUDA cores, an integer dtype -> no compute leg);
* SOL = max(W / P[dtype], Q / B), with their active-row overrides: fused_moe and
  fp8_blockscale_fused_moe read the expected occupied experts of random routing,
  chunk_gated_delta_rule_state only the batch's state rows.

This module reproduces those numbers from our catalog shapes. Where Atrex's contract is the one
our spec measures, the counts come from the spec's own ``cost``; where the contracts differ, the
counting follows Atrex's reference signature from the shape parameters alone, so it does not move
when our native contract does. docs/ROOFLINE.md says, operator by operator, which terms differ
and which count is the lower bound. Native mode (core/roofline.py) stays the default.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

from solbench.core.hardware import Hardware
from solbench.core.spec import DTYPE_BYTES, OpSpec, Shape

# Atrex publishes SOLs for these two of our SKUs; their XPU-B is the part we call H20
# (148 TFLOP/s bf16, 4.0 TB/s).
ATREX_SKU_NAMES = {"H20": "XPU-B", "XPU-A": "XPU-A"}

# The peak each metadata dtype is priced at (Atrex's DTYPE_PATHS): fp32 means CUDA cores.
_DTYPE_PATH = {"bf16": "bf16_tc", "fp16": "fp16_tc", "fp8_e4m3": "fp8_e4m3_tc", "fp8_e5m2": "fp8_e5m2_tc",
               "fp32": "fp32"}


@dataclass(frozen=True)
class AtrexCost:
    w_flops: float
    w_dtype: str | None     # metadata dtype the FLOPs are priced at; None: no compute leg
    q_read: float
    q_write: float
    rule: str               # "native" (our cost has Atrex's contract) or "atrex" (own counting)

    @property
    def q_total(self) -> float:
        return float(self.q_read + self.q_write)


def atrex_sol_us(cost: AtrexCost, hw: Hardware) -> float:
    memory_s = cost.q_total / hw.bandwidth
    compute_s = 0.0
    if cost.w_dtype is not None and cost.w_flops:
        compute_s = cost.w_flops / hw.peak(_DTYPE_PATH[cost.w_dtype])
    return max(compute_s, memory_s) * 1e6


def _b(dtype: str) -> int:
    return DTYPE_BYTES[dtype]


def _i(shape: Shape, *names: str, default=None) -> int:
    for n in names:
        if shape.get(n) is not None:
            return int(shape[n])
    if default is None:
        raise KeyError(f"{shape.key}: none of {names} in the shape parameters")
    return int(default)


# ---- per-operator counting where Atrex's contract differs from ours ------------------------------
# Each returns (W, Q_read, Q_write) for Atrex's reference signature.

def _causal_conv1d(shape: Shape):
    # One sequence, no index arrays, no state write-back: x [T, D], weight [D, W], bias [D],
    # initial_state [D, W-1] in; out [T, D]. W: 2 per tap and ~4 for SiLU per output.
    t, d, w = _i(shape, "token_count"), _i(shape, "dim"), _i(shape, "width")
    read = (t * d + d * w + d + d * (w - 1)) * 2
    return t * d * (2 * w + 4), read, t * d * 2


def _chunk_delta_rule_output(shape: Shape):
    # Same tensors as ours; Atrex's reference multiplies whole L x L chunk blocks (no causal
    # saving) and applies the gates elementwise (~8 per block element).
    b, t = _i(shape, "batch_size", default=1), _i(shape, "token_count")
    hv, k, v, L = _i(shape, "num_v_heads"), _i(shape, "key_dim"), _i(shape, "value_dim"), _i(shape, "chunk_size")
    hq = _i(shape, "num_q_heads")
    nt = math.ceil(t / L)
    w = b * nt * hv * (2 * L * k * v + 2 * L * L * k + 2 * L * L * v + 8 * L * L)
    read = b * (2 * t * hq * k * 2 + t * hv * v * 2 + nt * hv * k * v * 2 + t * hv * 4)
    return w, read, b * t * hv * v * 2


def _fused_qk_rmsnorm(shape: Shape):
    # The whole packed qkv [T, (H + 2 KV) D] in and out (v passes through), two weights [D].
    t, h, kv, d = _i(shape, "num_tokens"), _i(shape, "head_num"), _i(shape, "kv_head_num"), _i(shape, "size_per_head")
    e = _b("fp16" if shape.get("dtype") == "fp16" else "bf16")
    qkv = t * (h + 2 * kv) * d * e
    return t * (h + kv) * (3 * d + 1), qkv + 2 * d * e, qkv


def _fused_qkv_rope(shape: Shape):
    # qkv [T, (H + 2 KV) D] and int32 positions in (no bias: Qwen3 heads; cos/sin are computed
    # from the positions); q, k, v out. W: ~3 per rotated element, 3 per frequency.
    t, h, kv, d = _i(shape, "total_tokens"), _i(shape, "num_heads"), _i(shape, "num_kv_heads"), _i(shape, "head_dim")
    rot = _i(shape, "rope_dim", default=d)
    e = _b("fp16" if shape.get("dtype") == "fp16" else "bf16")
    qkv = t * (h + 2 * kv) * d * e
    return t * (h + kv) * 3 * rot + t * 3 * (rot // 2), qkv + t * 4, qkv


def _gated_delta_rule_update(shape: Shape):
    # The whole fp32 state pool [N, HV, K, V] in, and out as a clone; q, k [B, T, H, K],
    # v [B, T, HV, V], a, b [B, T, HV] bf16; A_log fp32 and dt_bias bf16 [HV]; B int32 indices.
    b, t = _i(shape, "batch_size", default=1), _i(shape, "token_count")
    h, hv, k, v = _i(shape, "num_q_heads"), _i(shape, "num_v_heads"), _i(shape, "key_dim"), _i(shape, "value_dim")
    pool = _i(shape, "state_count") * hv * k * v * 4
    read = b * t * (2 * h * k + hv * v + 2 * hv) * 2 + hv * 4 + hv * 2 + pool + b * 4
    return b * t * hv * (7 * k * v + 3 * k + 2), read, b * t * hv * v * 2 + pool


def _linear_sigmoid_mul(shape: Shape):
    # Atrex's reference: out = sigmoid(x W^T + bias) * post_mul, weight [O, H], bias [O],
    # post_mul and out [T, O]: a bf16 tensor-core GEMM that reads the weight. W: the addmm
    # (2 H + 1 per output); its trace counts nothing for the sigmoid and the product.
    t, hid, o = _i(shape, "token_count"), _i(shape, "hidden_size"), _i(shape, "out_features")
    read = (t * hid + o * hid + o + t * o) * 2
    return 2 * t * hid * o + t * o, read, t * o * 2


def _mla_decode_attention(shape: Shape):
    # Same tensors as ours; Atrex's traced count adds D_qk per score and per query to the two
    # matmuls (its reference's scaling and split nope/rope products).
    h, r, p = _i(shape, "nhead"), _i(shape, "kv_lora_rank"), _i(shape, "qk_rope_head_dim")
    b, c = _i(shape, "batch_size"), _i(shape, "ctx_len")
    dqk = r + p
    w = 2 * b * h * c * (dqk + r) + b * h * (c + 1) * dqk
    read = b * h * dqk * 2 + b * c * dqk * 2 + b * 4
    return w, read, b * h * r * 2


def expected_blocks(tokens: int, top_k: int, experts: int, block_size: int) -> float:
    """Expected sum over experts of ceil(count_e / block_size) under uniform top-k routing: each
    expert is picked by a token with probability k/E, so count_e ~ Binomial(T, k/E)."""
    n, p = int(tokens), min(1.0, top_k / experts)
    if n <= 0 or p <= 0:
        return 0.0
    if p >= 1.0:
        return experts * math.ceil(n / block_size)
    lq, l1q = math.log(p), math.log1p(-p)
    total = 0.0
    for c in range(1, n + 1):
        logpmf = math.lgamma(n + 1) - math.lgamma(c + 1) - math.lgamma(n - c + 1) + c * lq + (n - c) * l1q
        if logpmf > -40:
            total += math.exp(logpmf) * math.ceil(c / block_size)
    return experts * total


def _moe_align_block_size(shape: Shape):
    # topk_ids [T, k] int32 in; Atrex's reference returns the used layout: sum_e ceil(c_e/bs)*bs
    # sorted ids, one expert id per block, num_tokens_post_pad. Its counts come from one random
    # routing; we take the expectation.
    t, k, e, bs = _i(shape, "token_count"), _i(shape, "top_k"), _i(shape, "num_experts"), _i(shape, "block_size")
    blocks = expected_blocks(t, k, e, bs)
    return 0, t * k * 4, (blocks * bs + blocks + 1) * 4


def _moe_count_and_sort(shape: Shape):
    # topk_ids [T, k] in; stably sorted ids [T k], counts [E], unpadded cumsum [E + 1] out.
    t, k, e = _i(shape, "token_count"), _i(shape, "top_k"), _i(shape, "num_experts")
    return 0, t * k * 4, (t * k + 2 * e + 1) * 4


def _mrope(shape: Shape):
    # q [T, H D], k [T, KV D] bf16 in and out; cos and sin [3, T, rot/2] fp32 (all three
    # position axes, before the section select). W: ~3 per rotated element.
    t, h, kv = _i(shape, "token_count"), _i(shape, "num_query_heads"), _i(shape, "num_kv_heads")
    d = _i(shape, "head_size")
    rot = _i(shape, "rotary_dim", default=d)
    qk = t * (h + kv) * d * 2
    return 3 * t * (h + kv) * rot, qk + 2 * 3 * t * (rot // 2) * 4, qk


def _paged_attention_decode(shape: Shape):
    # The whole K and V pools (Atrex's generator: ceil(ctx/bs) blocks per sequence plus 16
    # spare), query, block tables [B, ceil(ctx/bs)] and seq_lens in; out [B, H, D]. W: the two
    # matmuls over every context token, plus a B x D term its trace counts.
    b, c = _i(shape, "num_seqs"), _i(shape, "ctx_len")
    h, kv = _i(shape, "num_query_heads"), _i(shape, "num_kv_heads")
    d, bs = _i(shape, "head_size"), _i(shape, "block_size")
    e = _b("fp16" if shape.get("dtype") == "fp16" else "bf16")
    per_seq = math.ceil(c / bs)
    pool = (b * per_seq + 16) * bs * kv * d * e
    read = b * h * d * e + 2 * pool + b * per_seq * 4 + b * 4
    return 4 * b * h * c * d + b * d, read, b * h * d * e


def _reshape_and_cache(shape: Shape):
    # key, value [N, H, D] and int64 slot_mapping in; the whole K and V caches (ceil(N/bs)
    # blocks in Atrex's generator) in and, as outputs, out.
    n, h, d = (int(x) for x in shape["shape"])
    bs = _i(shape, "block_size")
    cache = math.ceil(n / bs) * bs * h * d * 2
    return 0, 2 * n * h * d * 2 + n * 8 + 2 * cache, 2 * cache


def _unified_attention(shape: Shape):
    # q [Tq, H, D], the whole K and V caches (Atrex's generator holds exactly the batch's
    # sum(L_k) tokens), cu_seqlens_q, seqused_k and block_table [S, max blocks] in;
    # out [Tq, H, D] in the query's dtype (bf16).
    lk = [int(x) for x in shape["seq_lens"]]
    lq = [int(x) for x in shape.get("query_lens") or lk]
    h, kv = _i(shape, "num_query_heads"), _i(shape, "num_kv_heads")
    d, bs = _i(shape, "head_size"), _i(shape, "block_size")
    nblk = [math.ceil(x / bs) for x in lk]
    # Causal, bottom-right aligned: query i of L_q sees L_k - L_q + i + 1 keys.
    pairs = sum(a * (m - a) + a * (a + 1) // 2 for a, m in zip(lq, lk))
    read = sum(lq) * h * d * 2 + 2 * sum(lk) * kv * d * 2 + (len(lk) + 1) * 4 + len(lk) * 4 \
        + len(lk) * max(nblk, default=0) * 4
    return 4 * pairs * h * d, read, sum(lq) * h * d * 2


_OWN: Mapping[str, Callable[[Shape], tuple]] = {
    "causal_conv1d": _causal_conv1d,
    "chunk_delta_rule_output": _chunk_delta_rule_output,
    "fused_qk_rmsnorm": _fused_qk_rmsnorm,
    "fused_qkv_rope": _fused_qkv_rope,
    "gated_delta_rule_update": _gated_delta_rule_update,
    "linear_sigmoid_mul": _linear_sigmoid_mul,
    "mla_decode_attention": _mla_decode_attention,
    "moe_align_block_size": _moe_align_block_size,
    "moe_count_and_sort": _moe_count_and_sort,
    "mrope": _mrope,
    "paged_attention_decode": _paged_attention_decode,
    "reshape_and_cache": _reshape_and_cache,
    "unified_attention": _unified_attention,
}

_INTEGER = {"int8", "int16", "int32", "int64", "uint8", "bool"}


def metadata_dtype(spec: OpSpec) -> str:
    return str(spec.entry.get("dtype") or spec.dtype)


def atrex_cost(spec: OpSpec, shape: Shape) -> AtrexCost:
    """Atrex's W and Q for one of our catalog shapes (the shape ids are Atrex's)."""
    dtype = metadata_dtype(spec)
    w_dtype = None if dtype in _INTEGER else dtype
    own = _OWN.get(spec.name)
    if own is not None:
        w, qr, qw = own(shape)
        return AtrexCost(float(w), w_dtype, float(qr), float(qw), "atrex")
    # Same contract: our cost's tensors, and all of its FLOPs on the metadata dtype's one path.
    c = spec.cost(shape)
    return AtrexCost(c.total_flops, w_dtype, float(c.bytes_read), float(c.bytes_written), "native")


# Operators whose published deployed time measured Atrex's contract where ours differs: it is
# compared with the Atrex-mode SOL only (linear_sigmoid_mul: the 4096-wide gate GEMM, not the
# production one-scalar gate).
DEPLOYED_ATREX_CONTRACT = frozenset({"linear_sigmoid_mul"})


def atrex_sol_for(op: str, shape_id, sku: str) -> float | None:
    """Atrex-mode SOL (µs) of catalog shape ``op``/``shape_id`` on datasheet SKU ``sku``; None when
    the shape is not a catalog shape (smoke shapes, suites from profiles)."""
    from solbench.core.hardware import get_sku
    from solbench.core.spec import get_spec

    spec = get_spec(op)
    if not spec.catalog:
        return None
    shape = next((s for s in spec.shapes if str(s.id) == str(shape_id)), None)
    if shape is None:
        return None
    return atrex_sol_us(atrex_cost(spec, shape), get_sku(sku))
