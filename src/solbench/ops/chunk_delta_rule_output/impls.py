"""chunk_delta_rule_output baselines: the chunked formulation in eager bf16 PyTorch (and its
torch.compile)."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.core.linear_attn import expand_heads, to_chunks
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
