"""moe_align_block_size (vLLM ``moe_align_block_size``,
vllm/model_executor/layers/fused_moe/moe_align_block_size.py and csrc/moe/moe_align_sum_kernels.cu).

Input ``topk_ids [T, k]`` int32 (expert of each routed slot), ``num_experts`` E, ``block_size``.
The flat slot i = t*k + j belongs to expert ``topk_ids.flatten()[i]``. Outputs (int32):

* ``sorted_token_ids [min(T*k*block_size, T*k + E*(block_size-1))]`` (vLLM's capacity): each
  expert's slots in one segment, experts in ascending order, every segment padded to a multiple
  of block_size with the sentinel ``T*k`` (= topk_ids.numel());
* ``expert_ids [ceil(len / block_size)]``: the expert of each block;
* ``num_tokens_post_pad [1]``: sum over experts of count rounded up to block_size.

Outputs are valid up to ``num_tokens_post_pad`` (and its blocks): fused_moe never reads past it,
so nothing is required there and a kernel need not write it (vLLM's own kernel fills the tail;
that is work the contract does not ask for). Order inside a segment is not unique (vLLM uses
atomics): implementations are checked by invariants, with the used expert_ids and
num_tokens_post_pad compared exactly (they are unique).
"""
from __future__ import annotations

from solbench.core.moe_routing import (align_layout, check_aligned, expected_padded_slots, padded_capacity,
                                      routing_inputs)
from solbench.core.spec import Cost, OpSpec, Shape, register_spec


def routing_dims(shape: Shape, default_block_size: int = 128) -> tuple[int, int, int, int]:
    """(T, E, k, block_size)."""
    return (int(shape["token_count"]), int(shape["num_experts"]), int(shape["top_k"]),
            int(shape.get("block_size") or default_block_size))


def _exact(name: str, got, ref) -> list[str]:
    import torch

    if tuple(got.shape) != tuple(ref.shape):
        return [f"{name}: shape {tuple(got.shape)}, expected {tuple(ref.shape)}"]
    bad = got.to(torch.int64) != ref.to(torch.int64)
    if bool(bad.any()):
        i = int(bad.flatten().nonzero()[0])
        return [f"{name}: {int(bad.sum())} of {got.numel()} values differ (first at {i}: got "
                f"{int(got.flatten()[i])}, expected {int(ref.flatten()[i])})"]
    return []


class MoeAlignBlockSize(OpSpec):
    name = "moe_align_block_size"
    dtype = "int32"
    output_names = ("sorted_token_ids", "expert_ids", "num_tokens_post_pad")
    structural = True

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        return routing_inputs(shape, device, seed)

    def reference(self, topk_ids, num_experts, block_size):
        """Experts in ascending order; expert e's slots (flat index t*k+j, in increasing order) at
        offsets[e] + rank, offsets = exclusive cumsum of ceil(count_e / block_size) * block_size;
        sentinel T*k elsewhere; expert_ids[b] = owner of block b (0 past the end)."""
        import torch

        lay = align_layout(topk_ids, num_experts, block_size)
        i32 = torch.int32
        return (lay["sorted_ids"].to(i32), lay["block_experts"].to(i32), lay["offsets"][-1:].to(i32))

    def check_invariants(self, shape, inputs, got, ref) -> list[str]:
        ids, e, bs = inputs["topk_ids"], int(inputs["num_experts"]), int(inputs["block_size"])
        lay = align_layout(ids, e, bs)
        errs = _exact("num_tokens_post_pad", got["num_tokens_post_pad"], ref["num_tokens_post_pad"])
        g_exp, r_exp = got["expert_ids"], ref["expert_ids"]
        if tuple(g_exp.shape) != tuple(r_exp.shape):
            errs.append(f"expert_ids: shape {tuple(g_exp.shape)}, expected {tuple(r_exp.shape)}")
        else:
            used = int(lay["offsets"][-1]) // bs
            errs += _exact("expert_ids (used blocks)", g_exp[:used], r_exp[:used])
        errs += check_aligned(ids, got["sorted_token_ids"], lay["offsets"], bs, e)
        return errs

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        t, e, k, bs = routing_dims(shape)
        cap = padded_capacity(t * k, e, bs)
        dev = inputs["topk_ids"].device
        return (torch.empty(cap, dtype=torch.int32, device=dev),
                torch.empty(-(-cap // bs), dtype=torch.int32, device=dev),
                torch.empty(1, dtype=torch.int32, device=dev))

    def cost(self, shape: Shape) -> Cost:
        # Read: topk_ids (T*k int32). Write: the used layout only (nothing past
        # num_tokens_post_pad is required): sum_e ceil(count_e/bs)*bs ids (tokens and segment
        # padding; expected value under the seeded uniform routing), that total / bs expert ids,
        # and num_tokens_post_pad. No arithmetic worth counting (counting, prefix sums and
        # scatters are indexing).
        t, e, k, bs = routing_dims(shape)
        used = expected_padded_slots(t, e, k, bs)
        return Cost(flops={}, bytes_read=t * k * 4, bytes_written=(used + used / bs + 1) * 4)


register_spec(MoeAlignBlockSize.from_catalog())
