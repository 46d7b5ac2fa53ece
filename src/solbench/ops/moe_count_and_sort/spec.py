"""moe_count_and_sort (vLLM ``count_and_sort_expert_tokens_kernel``, the second stage of
``moe_align_block_size`` in csrc/moe/moe_align_sum_kernels.cu).

Input ``topk_ids [T, k]`` int32, ``num_experts`` E, ``block_size`` (128 where the catalog shape
does not record one: the block size of every other shape of this operator). Outputs (int32):

* ``expert_token_counts [E]``: routed slots per expert;
* ``cumsum [E + 1]``: the segment offsets the sort scatters into, the exclusive prefix sum of
  the counts rounded up to block_size (``cumsum[E]`` = num_tokens_post_pad). vLLM's kernel
  advances these offsets with atomics while it scatters; the output is the offsets it starts
  from;
* ``sorted_token_ids [T*k + E*(block_size-1)]``: flat slot i = t*k + j at a position inside its
  expert's segment [cumsum[e], cumsum[e+1]); every other entry is the sentinel T*k.

Counts and cumsum are unique and compared exactly; the order inside a segment is not (atomics),
so sorted_token_ids is checked by invariants.
"""
from __future__ import annotations

from solbench.core.moe_routing import align_layout, check_aligned, padded_capacity, routing_inputs
from solbench.core.spec import Cost, OpSpec, Shape, register_spec
from solbench.ops.moe_align_block_size.spec import _exact, routing_dims


class MoeCountAndSort(OpSpec):
    name = "moe_count_and_sort"
    dtype = "int32"
    output_names = ("sorted_token_ids", "expert_token_counts", "cumsum")
    structural = True

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        return routing_inputs(shape, device, seed)

    def reference(self, topk_ids, num_experts, block_size):
        """counts[e] = #{i : ids[i] = e}; cumsum = [0, cumsum(ceil(counts / bs) * bs)]; slot i at
        cumsum[e] + (its rank among expert e's slots), sentinel T*k elsewhere."""
        import torch

        lay = align_layout(topk_ids, num_experts, block_size)
        i32 = torch.int32
        return lay["sorted_ids"].to(i32), lay["counts"].to(i32), lay["offsets"].to(i32)

    def check_invariants(self, shape, inputs, got, ref) -> list[str]:
        ids, e, bs = inputs["topk_ids"], int(inputs["num_experts"]), int(inputs["block_size"])
        errs = _exact("expert_token_counts", got["expert_token_counts"], ref["expert_token_counts"])
        errs += _exact("cumsum", got["cumsum"], ref["cumsum"])
        return errs + check_aligned(ids, got["sorted_token_ids"], ref["cumsum"], bs, e)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        t, e, k, bs = routing_dims(shape)
        dev = inputs["topk_ids"].device
        return (torch.empty(padded_capacity(t * k, e, bs), dtype=torch.int32, device=dev),
                torch.empty(e, dtype=torch.int32, device=dev),
                torch.empty(e + 1, dtype=torch.int32, device=dev))

    def cost(self, shape: Shape) -> Cost:
        # Read: topk_ids (T*k int32). Write: the sorted_token_ids buffer (T*k + E*(bs-1) int32,
        # tokens and sentinels), expert_token_counts (E int32), cumsum (E+1 int32). No FLOPs.
        t, e, k, bs = routing_dims(shape)
        return Cost(flops={}, bytes_read=t * k * 4,
                    bytes_written=(padded_capacity(t * k, e, bs) + e + e + 1) * 4)


register_spec(MoeCountAndSort.from_catalog())
