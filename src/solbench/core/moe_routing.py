"""MoE routing mechanics shared by the MoE operators (fused_moe, fp8_blockscale_fused_moe,
moe_align_block_size, moe_count_and_sort).

* :func:`random_routing`: seeded top-k routing, built on the device without Python loops.
* :func:`expected_experts_hit`: how many distinct experts that routing touches on average (the cost
  models read only the weights of experts that receive tokens).
* :func:`align_layout` / :func:`check_aligned`: vLLM's ``moe_align_block_size`` layout (expert
  segments padded to ``block_size``, sentinel = ``topk_ids.numel()``) and its invariant checker.
* :func:`grouped_moe`: a fixed-shape PyTorch MoE (sort routed rows by expert, two grouped GEMMs),
  the formulation the eager baselines share.
"""
from __future__ import annotations


def random_routing(num_tokens: int, num_experts: int, top_k: int, device, gen):
    """``(topk_weights fp32 [T, k], topk_ids int32 [T, k])``.

    Router logits are iid normal, so every token picks a uniformly random set of ``top_k``
    distinct experts (what :func:`expected_experts_hit` assumes). The weights are the softmax
    probabilities of the chosen experts renormalized to sum to 1 (Mixtral / Qwen-MoE style), in
    descending order, as vLLM's ``fused_topk(renormalize=True)`` hands them to the experts.
    """
    import torch

    if not 1 <= top_k <= num_experts:
        raise ValueError(f"top_k={top_k} must be in [1, num_experts={num_experts}]")
    logits = torch.randn((num_tokens, num_experts), generator=gen, device=device, dtype=torch.float32)
    w, ids = torch.softmax(logits, dim=-1).topk(top_k, dim=-1)
    w = w / w.sum(dim=-1, keepdim=True)
    return w.contiguous(), ids.to(torch.int32).contiguous()


def expected_experts_hit(num_tokens: int, num_experts: int, top_k: int) -> float:
    """Expected number of distinct experts that receive at least one token under
    :func:`random_routing`: each token's k-subset is uniform, so an expert is missed by one token
    with probability 1 - k/E and by all T tokens with (1 - k/E)^T.  E * (1 - (1 - k/E)^T), which
    is at most min(E, T*k)."""
    if num_tokens <= 0:
        return 0.0
    miss = (1.0 - top_k / num_experts) ** num_tokens
    return min(float(num_experts) * (1.0 - miss), float(num_tokens * top_k))


def expert_counts(flat_ids, num_experts: int):
    """Routed slots per expert, int64 [E]. A scatter-add rather than bincount: its output size is
    fixed by E, which torch.compile(fullgraph=True) needs."""
    import torch

    ids = flat_ids.reshape(-1).to(torch.int64)
    counts = torch.zeros(num_experts, dtype=torch.int64, device=ids.device)
    return counts.scatter_add_(0, ids, torch.ones_like(ids))


def routing_inputs(shape, device, seed: int, default_block_size: int = 128) -> dict:
    """Inputs of the routing-layout operators: ``topk_ids`` of :func:`random_routing` for the
    shape's token_count / num_experts / top_k, and the two integer parameters."""
    from solbench.core.inputs import generator

    t, e, k = int(shape["token_count"]), int(shape["num_experts"]), int(shape["top_k"])
    bs = int(shape.get("block_size") or default_block_size)
    if t < 0 or e < 1 or bs < 1 or not 1 <= k <= e:
        raise ValueError(f"{shape.key}: need token_count >= 0, 1 <= top_k <= num_experts, block_size >= 1 "
                         f"(got T={t} E={e} k={k} block_size={bs})")
    _, ids = random_routing(t, e, k, device, generator(device, seed))
    return {"topk_ids": ids, "num_experts": e, "block_size": bs}


# ---- vLLM moe_align_block_size layout ----------------------------------------------------------
def padded_capacity(numel: int, num_experts: int, block_size: int) -> int:
    """Length of vLLM's ``sorted_token_ids`` buffer: every expert pads at most block_size - 1
    slots, and no layout holds more than one block per slot (vLLM's cap; the kernel library's
    ``aligned_capacity`` is the same formula)."""
    return min(numel * block_size, numel + num_experts * (block_size - 1))


def expected_padded_slots(num_tokens: int, num_experts: int, top_k: int, block_size: int) -> float:
    """Expected ``num_tokens_post_pad`` = sum over experts of ceil(count_e / bs) * bs under
    :func:`random_routing`: each expert's count is Binomial(T, k/E) (a token picks it with
    probability k/E, independently of the other tokens), and
    E[ceil(c / bs)] = sum_{j >= 0} P(c > j * bs)."""
    import math

    t, e, k, bs = int(num_tokens), int(num_experts), int(top_k), int(block_size)
    if t <= 0:
        return 0.0
    p = k / e
    if p >= 1.0:
        return float(e * -(-t // bs) * bs)
    lq, lp = math.log1p(-p), math.log(p)
    # pmf of Binomial(t, p) in log space (t is at most a few 10^5 in the catalog).
    pmf = [math.exp(math.lgamma(t + 1) - math.lgamma(c + 1) - math.lgamma(t - c + 1) + c * lp + (t - c) * lq)
           for c in range(t + 1)]
    blocks = sum(pc * -(-c // bs) for c, pc in enumerate(pmf))
    return e * bs * blocks


def align_layout(topk_ids, num_experts: int, block_size: int) -> dict:
    """The unique parts of vLLM's aligned layout, computed with fixed-shape tensor ops.

    ``counts[e]`` routed slots per expert; ``offsets[e]`` = exclusive prefix sum of counts rounded
    up to ``block_size`` (``offsets[E]`` = num_tokens_post_pad); ``block_experts[b]`` = the expert
    owning block b (experts in ascending order, minimal padding; blocks past the end are 0, as
    vLLM fills them); ``sorted_ids`` puts flat slot i = token*top_k + j of expert e at
    offsets[e] + (its rank among expert e's slots, in slot order); every other entry is the
    sentinel ``topk_ids.numel()``.
    """
    import torch

    flat = topk_ids.reshape(-1).to(torch.int64)
    n = flat.numel()
    dev = flat.device
    cap = padded_capacity(n, num_experts, block_size)
    counts = expert_counts(flat, num_experts)
    padded = (counts + block_size - 1) // block_size * block_size
    offsets = torch.zeros(num_experts + 1, dtype=torch.int64, device=dev)
    offsets[1:] = torch.cumsum(padded, 0)
    starts = torch.zeros(num_experts + 1, dtype=torch.int64, device=dev)
    starts[1:] = torch.cumsum(counts, 0)
    order = torch.sort(flat, stable=True).indices
    rank = torch.arange(n, device=dev) - starts[flat[order]]
    sorted_ids = torch.full((cap,), n, dtype=torch.int64, device=dev)
    sorted_ids[offsets[flat[order]] + rank] = order
    nblocks = -(-cap // block_size)
    block_start = torch.arange(nblocks, device=dev) * block_size
    owner = torch.searchsorted(offsets[1:], block_start, right=True)
    block_experts = torch.where(block_start < offsets[num_experts], owner, torch.zeros_like(owner))
    return {"counts": counts, "offsets": offsets, "sorted_ids": sorted_ids, "block_experts": block_experts}


def check_aligned(topk_ids, sorted_ids, offsets, block_size: int, num_experts: int,
                  name: str = "sorted_token_ids") -> list[str]:
    """Invariants of an aligned ``sorted_ids`` given the (unique) expert segment ``offsets``.

    The buffer has :func:`padded_capacity` entries, but only the first ``offsets[E]``
    (num_tokens_post_pad) mean anything: consumers never read past it, so the tail is free.
    There, every flat slot i of ``topk_ids`` appears exactly once, inside the segment
    [offsets[e], offsets[e+1]) of its expert e = topk_ids[i], and every other entry (segment
    padding) is the sentinel numel. Order inside a segment is free (vLLM fills it with atomics)."""
    import torch

    flat = topk_ids.reshape(-1).to(torch.int64)
    n = flat.numel()
    cap = padded_capacity(n, num_experts, block_size)
    full = sorted_ids.reshape(-1).to(torch.int64)
    if full.numel() != cap:
        return [f"{name}: length {full.numel()}, expected {cap} "
                f"(min(numel*block_size, numel + num_experts*(block_size-1)))"]
    total = int(offsets[-1])
    s = full[:total]
    bad = (s < 0) | (s > n)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        return [f"{name}: {int(bad.sum())} entries before num_tokens_post_pad={total} outside [0, {n}] "
                f"(first at {i}: {int(s[i])})"]
    errs = []
    pos = torch.arange(total, device=s.device)
    real = s != n
    hits = torch.bincount(s[real], minlength=n)[:n]
    if int(real.sum()) != n or bool((hits != 1).any()):
        missing = int((hits == 0).sum())
        dup = int((hits > 1).sum())
        errs.append(f"{name}: every routed slot must appear exactly once before num_tokens_post_pad "
                    f"({missing} missing, {dup} repeated)")
        return errs
    seg = torch.searchsorted(offsets[1:].to(torch.int64), pos[real], right=True)
    wrong = seg != flat[s[real]]
    if bool(wrong.any()):
        p = int(pos[real][wrong][0])
        errs.append(f"{name}: {int(wrong.sum())} slots sit outside their expert's segment "
                    f"(first at position {p}: slot {int(s[p])} of expert {int(flat[s[p]])}, segment of expert "
                    f"{int(seg[wrong][0])})")
    return errs


# ---- fixed-shape grouped MoE (the eager baselines) ----------------------------------------------
def grouped_gemm_support():
    """torch._grouped_mm (PyTorch >= 2.8) runs the per-expert GEMMs of a sorted batch."""
    import torch

    from solbench.core.spec import Support

    if not hasattr(torch, "_grouped_mm"):
        return Support.no(f"torch {torch.__version__} has no torch._grouped_mm")
    return Support.yes()


def grouped_moe(x, w1, w2, topk_weights, topk_ids, out_dtype):
    """MoE expert FFN with the weights in their own dtype (bf16): sort the T*k routed rows by
    expert, ``h = grouped_mm(x_sorted, w1^T)``, ``silu(gate) * up``, ``y = grouped_mm(h, w2^T)``,
    scale by the router weight and scatter-add back to tokens. Every shape is fixed by (T, k), so
    torch.compile(fullgraph=True) captures it."""
    import torch
    import torch.nn.functional as F

    t, k = topk_ids.shape
    e, two_i, _ = w1.shape
    flat = topk_ids.reshape(-1).to(torch.int64)
    order = torch.argsort(flat, stable=True)
    offs = torch.cumsum(expert_counts(flat, e), 0).to(torch.int32)
    tok = order // k
    xs = x[tok]
    h = torch._grouped_mm(xs, w1.transpose(-2, -1), offs=offs)
    a = F.silu(h[:, : two_i // 2]) * h[:, two_i // 2:]
    y = torch._grouped_mm(a, w2.transpose(-2, -1), offs=offs)
    y = y.to(torch.float32) * topk_weights.reshape(-1)[order, None]
    out = torch.zeros((t, w2.shape[1]), dtype=torch.float32, device=x.device)
    out.index_add_(0, tok, y)
    return out.to(out_dtype)


def reference_moe(x, topk_weights, topk_ids, num_experts: int, expert_weights, out_dtype):
    """fp32 reference MoE: out[t] = sum_j topk_weights[t, j] * W2_e (silu(g) * u), with
    [g | u] = W1_e x[t] and e = topk_ids[t, j]. ``expert_weights(e)`` returns fp32 (W1_e [2I, H],
    W2_e [H, I]) so that callers can dequantize one expert at a time (memory stays at one
    expert's weights). ``x`` must already be fp32 [T, H]."""
    import torch
    import torch.nn.functional as F

    t, k = topk_ids.shape
    flat = topk_ids.reshape(-1).to(torch.int64)
    order = torch.argsort(flat, stable=True)
    counts = expert_counts(flat, num_experts).tolist()
    wflat = topk_weights.reshape(-1).to(torch.float32)
    out = None
    start = 0
    for e, c in enumerate(counts):
        if c == 0:
            continue
        rows = order[start:start + c]
        start += c
        tok = rows // k
        w1e, w2e = expert_weights(e)
        h = x[tok] @ w1e.T
        i = h.shape[1] // 2
        y = (F.silu(h[:, :i]) * h[:, i:]) @ w2e.T
        if out is None:
            out = torch.zeros((t, y.shape[1]), dtype=torch.float32, device=x.device)
        out.index_add_(0, tok, y * wflat[rows, None])
    if out is None:
        _, w2e = expert_weights(0)
        out = torch.zeros((t, w2e.shape[0]), dtype=torch.float32, device=x.device)
    return out.to(out_dtype)


def moe_ffn_cost(num_tokens: int, hidden: int, inter: int, num_experts: int, top_k: int) -> tuple[float, float]:
    """(GEMM FLOPs, expected experts hit) of a gated MoE FFN over the routed rows only:
    2*R*H*2I (gate/up) + 2*R*I*H (down) with R = T*k routed rows."""
    r = num_tokens * top_k
    flops = 2.0 * r * hidden * (2 * inter) + 2.0 * r * inter * hidden
    return flops, expected_experts_hit(num_tokens, num_experts, top_k)


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


__all__ = ["random_routing", "expert_counts", "routing_inputs", "expected_experts_hit", "padded_capacity",
           "expected_padded_slots", "align_layout", "check_aligned",
           "grouped_gemm_support", "grouped_moe", "reference_moe", "moe_ffn_cost", "ceil_div"]


# ---- what the fused-MoE operator specs share --------------------------------------------------------

def moe_dims(shape) -> tuple[int, int, int, int, int]:
    """(T, H, I, E, k) of a MoE shape (token_count, hidden_size, intermediate_size, num_experts,
    top_k), validated."""
    t, h, i = int(shape["token_count"]), int(shape["hidden_size"]), int(shape["intermediate_size"])
    e, k = int(shape["num_experts"]), int(shape["top_k"])
    if t < 0 or min(h, i, e, k) < 1 or k > e:
        raise ValueError(f"{shape.key}: need token_count >= 0, positive sizes and top_k <= num_experts "
                         f"(got T={t} H={h} I={i} E={e} k={k})")
    return t, h, i, e, k


class MoeOutputs:
    """Mixin for fused-MoE specs: one output ``out`` shaped like ``hidden_states`` in the spec's
    ``out_dtype``, and smoke shapes of the same structure as the catalog's at small sizes (the
    smallest catalog shape still holds every expert's weights, too heavy for a CPU check)."""

    output_names = ("out",)

    def make_outputs(self, shape, inputs: dict):
        import torch

        from solbench.core.spec import torch_dtype

        x = inputs["hidden_states"]
        return (torch.empty(x.shape, dtype=torch_dtype(self.out_dtype), device=x.device),)

    def small_shapes(self, dims: list[dict]) -> list:
        from dataclasses import replace

        base = min(self.shapes, key=lambda s: int(s["token_count"]))
        return [replace(base, id=f"smoke{j}", params=d, smoke=True) for j, d in enumerate(dims)]
