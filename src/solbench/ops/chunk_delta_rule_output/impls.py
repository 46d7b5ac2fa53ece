"""chunk_delta_rule_output implementations: ours_triton; baselines: the chunked formulation in
eager bf16 PyTorch (and its torch.compile); the fla-core peer."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.linear_attn import expand_heads, to_chunks
from solbench.core.spec import Impl, add_impl
from solbench.ops.chunk_delta_rule_output.spec import effective_chunk, spec


def eager(q, k, v, h, g, scale, chunk_size):
    """bf16 einsums over [B, NT, C] chunk views, gates in fp32 applied to the score block, which
    is cast to bf16 for A @ v (as the Triton kernel does)."""
    import torch

    B, T, H, V = v.shape
    bt = effective_chunk(T, chunk_size)
    qc = to_chunks(expand_heads(q, H), bt)
    kc = to_chunks(expand_heads(k, H), bt)
    vc = to_chunks(v, bt)
    gc = to_chunks(g, bt)
    inter = torch.einsum("bnchk,bnhkv->bnchv", qc, h).float() * torch.exp(gc)[..., None]
    gt = gc.permute(0, 1, 3, 2)
    dg = gt[..., :, None] - gt[..., None, :]
    mask = torch.ones(bt, bt, dtype=torch.bool, device=v.device).tril()
    a = torch.einsum("bnihk,bnjhk->bnhij", qc, kc).float() * torch.exp(dg).masked_fill(~mask, 0.0)
    intra = torch.einsum("bnhij,bnjhv->bnihv", a.to(v.dtype), vc).float()
    return ((inter + intra) * scale).to(v.dtype).reshape(B, -1, H, V)[:, :T]


register_torch_baselines(spec.name, eager, "chunk views, bf16 einsums, fp32 gates, masked score block")


def ours(q, k, v, h, g, scale, chunk_size, out=None):
    from solbench.kernels.linear_attention import chunk_delta_rule_output

    return chunk_delta_rule_output(q, k, v, h, g, scale, chunk_size=chunk_size, out=out)


# fla-core peer (optional; written from fla's public chunk_fwd_o, checked against fla-core 0.6.0's
# signature, not run here). Newer fla kernels read g in base 2 (exp2): g is converted for the
# installed module (a use_exp2 switch, where a version has one, is turned off instead).
FLA_MODULE = "fla.ops.common.chunk_o"


def fla(q, k, v, h, g, scale, chunk_size):
    import inspect
    import math

    from solbench.peers import FLA, fla_uses_exp2

    fn, _ = FLA.load(FLA_MODULE, "chunk_fwd_o")
    if "use_exp2" in inspect.signature(fn).parameters:
        return fn(q=q, k=k, v=v, h=h, g=g, scale=scale, chunk_size=chunk_size, use_exp2=False)
    g_in = g * (1.0 / math.log(2.0)) if fla_uses_exp2(FLA_MODULE) else g
    return fn(q=q, k=k, v=v, h=h, g=g_in, scale=scale, chunk_size=chunk_size)


def fla_support():
    from solbench.peers import FLA

    return FLA.support(FLA_MODULE, "chunk_fwd_o")


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support, takes_out=True,
              description="solbench Triton chunk outputs: one program per (chunk, value block), q h and the "
                          "causal score block on bf16 tensor cores"))
add_impl(Impl(spec.name, "fla", fla, available=fla_support, baseline=True,
              description="fla-core chunk_fwd_o"))
