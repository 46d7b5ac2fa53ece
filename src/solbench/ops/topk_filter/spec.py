"""topk_filter (FlashInfer ``TopKMaskLogitsKernel``, include/flashinfer/sampling.cuh, reached from
vLLM's sampler through ``flashinfer.sampling.top_k_mask_logits``).

``logits [rows, vocab]`` fp32 and ``top_k`` -> ``out`` of the same shape:
``out[r, v] = logits[r, v] if logits[r, v] >= kth(r) else -inf`` where ``kth(r)`` is the k-th
largest value of row r. The kernel searches a pivot with count(x > pivot) >= k whose next larger
value has count < k and keeps ``x > pivot``: exactly the values >= the k-th largest, so ties
with the k-th value are all kept (a row may keep more than k entries) and the output is unique.
``top_k >= vocab`` keeps the row unchanged.

Catalog shapes without ``top_k`` use 50 (the value the catalog records for its vocab-size rows,
and a common sampling default).
"""
from __future__ import annotations

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec

DEFAULT_TOP_K = 50


def filter_dims(shape: Shape) -> tuple[int, int, int]:
    rows, vocab = int(shape["seq_len"]), int(shape["hidden_size"])
    k = int(shape.get("top_k") or DEFAULT_TOP_K)
    if rows < 0 or vocab < 1 or k < 1:
        raise ValueError(f"{shape.key}: need seq_len >= 0, hidden_size >= 1, top_k >= 1 (got {rows}, {vocab}, {k})")
    return rows, vocab, k


class TopkFilter(OpSpec):
    name = "topk_filter"
    dtype = "fp32"
    output_names = ("out",)
    structural = True  # which entries survive is judged by check_invariants (ties included)

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        import torch

        rows, vocab, k = filter_dims(shape)
        gen = rnd.generator(device, seed)
        # Logits of a bf16 lm_head, widened to fp32: on the bf16 grid, so the k-th value is
        # often tied (the case the pivot search must get right).
        logits = rnd.randn((rows, vocab), torch.bfloat16, device, gen, scale=3.0).to(torch.float32)
        return {"logits": logits, "top_k": k}

    def reference(self, logits, top_k):
        """out = where(logits >= kth largest of the row, logits, -inf); unchanged if top_k >= vocab."""
        import torch

        x = logits.to(torch.float32)
        k = int(top_k)
        if k >= x.shape[-1] or x.numel() == 0:
            return x.clone()
        kth = x.topk(k, dim=-1).values[..., -1:]
        return torch.where(x >= kth, x, torch.full_like(x, float("-inf")))

    def check_invariants(self, shape, inputs, got, ref) -> list[str]:
        import torch

        g, r = got["out"], ref["out"]
        if tuple(g.shape) != tuple(r.shape):
            return [f"out: shape {tuple(g.shape)}, expected {tuple(r.shape)}"]
        # The numeric comparison ignores positions where the reference is -inf; here the kept
        # set must be exactly the reference's (every tie with the k-th value kept, nothing else).
        g_masked = torch.isneginf(g)
        r_masked = torch.isneginf(r)
        errs = []
        if bool((g_masked & ~r_masked).any()):
            errs.append(f"out: {int((g_masked & ~r_masked).sum())} entries >= the k-th value were masked")
        if bool((~g_masked & r_masked).any()):
            errs.append(f"out: {int((~g_masked & r_masked).sum())} entries below the k-th value were kept")
        return errs

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        return (torch.empty_like(inputs["logits"]),)

    def cost(self, shape: Shape) -> Cost:
        # Read: logits (rows*vocab fp32) once. Write: out (rows*vocab fp32). The pivot search and
        # the mask are comparisons and selects: no FLOPs are counted.
        rows, vocab, k = filter_dims(shape)
        return Cost(flops={}, bytes_read=rows * vocab * 4, bytes_written=rows * vocab * 4)

    def tolerance(self, shape: Shape) -> Tolerance:
        # Kept values are copies: they must be bit-exact.
        return Tolerance(atol=0.0, rtol=0.0, rms_rtol=0.0)


register_spec(TopkFilter.from_catalog())
