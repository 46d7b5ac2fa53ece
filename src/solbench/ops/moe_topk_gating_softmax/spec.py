"""moe_topk_gating_softmax (vLLM ``topk_softmax`` custom op, csrc/moe/topk_softmax_kernels.cu, as
called by ``vllm._custom_ops.topk_softmax`` / ``fused_topk``).

``gating_output [T, E]`` fp32 router logits -> ``topk_weights [T, k]`` fp32 and ``topk_ids [T, k]``
int32: ``p = softmax(gating_output[t])`` in fp32 over the experts, the k largest probabilities
in descending order and their expert indices. No renormalization: the catalog's call has no
``renormalize`` argument and the op's default is False (vLLM renormalizes outside the kernel, or
inside only when asked). (The kernel's third output, ``token_expert_indices``, is not part of the
catalog operator.)

Ties (equal logits, common when the router GEMM runs in bf16) make the ids non-unique: the
kernel picks the lower index, any choice among equal values is accepted here. ids are checked by
invariants (a valid top-k set, descending order, weights that belong to their ids); weights are
compared with the reference numerically.
"""
from __future__ import annotations

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec


def gating_dims(shape: Shape) -> tuple[int, int, int]:
    t, e, k = int(shape["token_count"]), int(shape["num_experts"]), int(shape["top_k"])
    if t < 0 or not 1 <= k <= e:
        raise ValueError(f"{shape.key}: need token_count >= 0 and 1 <= top_k <= num_experts (got {t}, {e}, {k})")
    return t, e, k


class MoeTopkGatingSoftmax(OpSpec):
    name = "moe_topk_gating_softmax"
    dtype = "fp32"
    output_names = ("topk_weights", "topk_ids")
    structural = True

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        import torch

        t, e, k = gating_dims(shape)
        gen = rnd.generator(device, seed)
        # Router logits come out of a bf16 GEMM: values on the bf16 grid, widened to fp32. That
        # also puts exact ties near the k-th expert in a good share of rows.
        logits = rnd.randn((t, e), torch.bfloat16, device, gen, scale=2.0).to(torch.float32)
        return {"gating_output": logits, "top_k": k}

    def reference(self, gating_output, top_k):
        """p = softmax(gating_output, -1) in fp32; (topk_weights, topk_ids) = top-k of p, descending."""
        import torch

        p = torch.softmax(gating_output.to(torch.float32), dim=-1)
        w, ids = p.topk(int(top_k), dim=-1)
        return w, ids.to(torch.int32)

    def check_invariants(self, shape, inputs, got, ref) -> list[str]:
        import torch

        logits = inputs["gating_output"].to(torch.float32)
        t, e = logits.shape
        k = int(inputs["top_k"])
        ids, w = got["topk_ids"], got["topk_weights"]
        if tuple(ids.shape) != (t, k):
            return [f"topk_ids: shape {tuple(ids.shape)}, expected {(t, k)}"]
        if t == 0:
            return []
        ids = ids.to(torch.int64)
        if bool(((ids < 0) | (ids >= e)).any()):
            return [f"topk_ids: values outside [0, {e})"]
        errs = []
        srt = ids.sort(dim=-1).values
        if k > 1 and bool((srt[:, 1:] == srt[:, :-1]).any()):
            errs.append("topk_ids: an expert appears twice in a row")
        chosen = logits.gather(1, ids)
        # A valid top-k: no unchosen expert has a larger logit than a chosen one (ties are free).
        rest = logits.scatter(1, ids, float("-inf"))
        if k < e and bool((rest.max(dim=-1).values > chosen.min(dim=-1).values).any()):
            errs.append("topk_ids: an unselected expert has a larger gating logit than a selected one")
        if k > 1 and bool((chosen[:, 1:] > chosen[:, :-1]).any()):
            errs.append("topk_ids: not in descending order of probability")
        p = torch.softmax(logits, dim=-1).gather(1, ids)
        tol = self.tolerance(shape)
        if bool(((w.to(torch.float32) - p).abs() > tol.atol + tol.rtol * p.abs()).any()):
            errs.append("topk_weights: a weight is not the softmax probability of the expert id beside it")
        return errs

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        t, e, k = gating_dims(shape)
        dev = inputs["gating_output"].device
        return (torch.empty((t, k), dtype=torch.float32, device=dev),
                torch.empty((t, k), dtype=torch.int32, device=dev))

    def cost(self, shape: Shape) -> Cost:
        # Read: gating_output (T*E fp32). Write: topk_weights (T*k fp32) + topk_ids (T*k int32).
        # FLOPs (fp32): softmax = max, subtract, exp, sum, divide = 5 per logit; the top-k
        # selection is comparisons, not counted.
        t, e, k = gating_dims(shape)
        return Cost(flops={"fp32": 5.0 * t * e}, bytes_read=t * e * 4, bytes_written=t * k * 8)

    def tolerance(self, shape: Shape) -> Tolerance:
        # fp32 softmax: exp and the row sum in a different order differ by a few ulps.
        return Tolerance(atol=1e-6, rtol=1e-5, rms_rtol=1e-5)


register_spec(MoeTopkGatingSoftmax.from_catalog())
