"""Shared set-up for the gated-delta-rule operator tests: one random problem, run both token by
token (the definition) and through the chunked pipeline (WY factors -> chunk states -> chunk
outputs), in fp32 so the two must agree to rounding."""
import torch

from solbench.core.linear_attn import chunk_local_cumsum, l2norm, random_log_decay, recurrent_gated_delta_rule


def gdn_problem(B=2, T=150, Hg=1, H=2, K=16, V=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = l2norm(torch.randn(B, T, Hg, K, generator=gen))
    k = l2norm(torch.randn(B, T, Hg, K, generator=gen))
    v = torch.randn(B, T, H, V, generator=gen)
    beta = torch.sigmoid(torch.randn(B, T, H, generator=gen))
    g_tok = random_log_decay((B, T, H), "cpu", gen)
    pool = torch.randn(B + 3, H, K, V, generator=gen)
    idx = torch.randperm(B + 3, generator=gen)[:B].to(torch.int32)
    return dict(q=q, k=k, v=v, beta=beta, g_tok=g_tok, pool=pool, idx=idx, scale=K ** -0.5)


def recurrent(p):
    """(outputs [B, T, H, V], final states [B, H, K, V]) of the token-by-token rule."""
    S = p["pool"][p["idx"].long()].clone()
    o = recurrent_gated_delta_rule(p["q"], p["k"], p["v"], p["g_tok"], p["beta"], S, p["scale"])
    return o, S


def chunk_g(p, chunk):
    return chunk_local_cumsum(p["g_tok"], chunk)
