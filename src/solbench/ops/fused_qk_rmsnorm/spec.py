"""fused_qk_rmsnorm: rtp-llm ``fusedQkRmsNorm`` (rtp_llm/cpp/kernels/rocm/fused_qk_rmsnorm.cu and
the CUDA twin, bound as ``FusedQKRMSNorm``): per-head RMSNorm of q and k inside the packed qkv
activation, in place, before RoPE (Qwen3-style QK norm).

``hidden_states`` is ``[tokens, (head_num + 2 * kv_head_num) * size_per_head]`` laid out as
``[q heads | k heads | v heads]``. Each q head ``h`` and each k head is normalized over its
``size_per_head`` channels and scaled by the shared per-channel ``q_weight`` / ``k_weight``
(``[size_per_head]`` each)::

    head <- head / sqrt(mean(head^2) + eps) * weight

v heads are untouched. fp32 math, one rounding (upstream computes ``val * rstd * gamma`` in fp32
and casts once). The catalog records no eps; rtp-llm passes the model's ``layernorm_eps``, 1e-6
for the Qwen3 family these shapes come from, used unless a shape gives ``eps``. The output
``out`` is the whole updated ``hidden_states``.
"""
from __future__ import annotations

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, torch_dtype

FLOPS_PER_ELEM = 4  # square+accumulate, scale, weight
FLOPS_PER_ROW = 4


class FusedQkRmsNormOp(OpSpec):
    name = "fused_qk_rmsnorm"
    dtype = "fp16"
    output_names = ("out",)

    def dims(self, shape: Shape) -> tuple[int, int, int, int]:
        return (int(shape["num_tokens"]), int(shape["head_num"]), int(shape["kv_head_num"]),
                int(shape["size_per_head"]))

    def data_dtype(self, shape: Shape) -> str:
        return str(shape.get("dtype", self.dtype))

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        gen = rnd.generator(device, seed)
        t, h, kv, d = self.dims(shape)
        dt = torch_dtype(self.data_dtype(shape))
        # Per-head scales differ, so a kernel that shares statistics across heads fails.
        heads = h + 2 * kv
        x = rnd.randn((t, heads, d), dt, device, gen) * rnd.uniform((t, heads, 1), dt, device, gen, 0.25, 4.0)
        return {"hidden_states": x.reshape(t, heads * d),
                "q_weight": rnd.randn((d,), dt, device, gen, scale=0.25, shift=1.0),
                "k_weight": rnd.randn((d,), dt, device, gen, scale=0.25, shift=1.0),
                "head_num": h, "kv_head_num": kv, "size_per_head": d, "eps": float(shape.get("eps", 1e-6))}

    def reference(self, hidden_states, q_weight, k_weight, head_num, kv_head_num, size_per_head, eps):
        """q/k heads: head / sqrt(mean(head^2) + eps) * {q,k}_weight (fp32, one rounding);
        v heads copied unchanged. Returns the whole [tokens, (H + 2 KV) * D] tensor."""
        import torch

        t = hidden_states.shape[0]
        h, kv, d = head_num, kv_head_num, size_per_head
        x = hidden_states.reshape(t, h + 2 * kv, d)
        qk = x[:, : h + kv].float()
        w = torch.cat([q_weight.float().expand(h, d), k_weight.float().expand(kv, d)])
        y = qk * torch.rsqrt(qk.square().mean(dim=-1, keepdim=True) + eps) * w
        out = x.clone()
        out[:, : h + kv] = y.to(x.dtype)
        return out.reshape(hidden_states.shape)

    def cost(self, shape: Shape) -> Cost:
        # In place, as upstream: Read the q and k heads [T, (H + KV) * D] and both weights [D];
        # Write the q and k heads back. v is neither read nor written.
        # FLOPs (fp32): 4 per normalized element + 4 per head.
        t, h, kv, d = self.dims(shape)
        b = 2  # fp16 / bf16
        qk = t * (h + kv) * d
        return Cost(flops={"fp32": FLOPS_PER_ELEM * qk + FLOPS_PER_ROW * t * (h + kv)},
                    bytes_read=(qk + 2 * d) * b, bytes_written=qk * b)

    def tolerance(self, shape: Shape) -> Tolerance:
        # fp16: one rounding is 2^-11 relative; eager baselines round twice.
        return Tolerance(atol=1e-3, rtol=2e-3, rms_rtol=1e-3)


register_spec(FusedQkRmsNormOp.from_catalog())
