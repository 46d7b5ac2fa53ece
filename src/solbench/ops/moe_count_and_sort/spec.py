"""moe_count_and_sort (vLLM ``count_and_sort_expert_tokens_kernel``, the second stage of
``moe_align_block_size`` in csrc/moe/moe_align_sum_kernels.cu), in the compact contract that
Atrex-Bench's reference defines.

Input ``topk_ids [T, k]`` int32 and ``num_experts`` E (the catalog's ``block_size`` does not
enter the compact contract). Outputs (int32):

* ``sorted_token_ids [T*k]``: the flat slots i = t*k + j stably sorted by expert (expert e's
  slots in increasing order, experts in ascending order);
* ``expert_token_counts [E]``: routed slots per expert;
* ``cumsum [E + 1]``: the exclusive prefix sum of the counts (unpadded), ``cumsum[E] = T*k``.

Every output is unique, so all three are compared exactly. vLLM's in-place variant scatters into
a sentinel-prefilled, block-padded buffer with atomics; that layout is moe_align_block_size's.
"""
from __future__ import annotations

from solbench.core.moe_routing import expert_counts, routing_inputs
from solbench.core.spec import Cost, OpSpec, Shape, register_spec
from solbench.ops.moe_align_block_size.spec import routing_dims


class MoeCountAndSort(OpSpec):
    name = "moe_count_and_sort"
    dtype = "int32"
    output_names = ("sorted_token_ids", "expert_token_counts", "cumsum")

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        x = routing_inputs(shape, device, seed)
        del x["block_size"]
        return x

    def reference(self, topk_ids, num_experts):
        """counts[e] = #{i : ids[i] = e}; cumsum = [0, cumsum(counts)]; sorted_token_ids = the flat
        slot indices in stable order of their expert."""
        import torch

        flat = topk_ids.reshape(-1).to(torch.int64)
        counts = expert_counts(flat, int(num_experts))
        cumsum = torch.zeros(int(num_experts) + 1, dtype=torch.int64, device=flat.device)
        cumsum[1:] = torch.cumsum(counts, 0)
        i32 = torch.int32
        return torch.sort(flat, stable=True).indices.to(i32), counts.to(i32), cumsum.to(i32)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        t, e, k, _ = routing_dims(shape)
        dev = inputs["topk_ids"].device
        return (torch.empty(t * k, dtype=torch.int32, device=dev),
                torch.empty(e, dtype=torch.int32, device=dev),
                torch.empty(e + 1, dtype=torch.int32, device=dev))

    def cost(self, shape: Shape) -> Cost:
        # Read: topk_ids (T*k int32). Write: sorted_token_ids (T*k int32), expert_token_counts
        # (E int32), cumsum (E+1 int32). No FLOPs (counting and scattering are indexing).
        t, e, k, _ = routing_dims(shape)
        return Cost(flops={}, bytes_read=t * k * 4, bytes_written=(t * k + 2 * e + 1) * 4)


register_spec(MoeCountAndSort.from_catalog())
