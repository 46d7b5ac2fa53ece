"""causal_conv1d implementations: ours_triton; baselines: per-sequence F.conv1d (groups=dim) on
[state | x] and F.silu (eager, and its torch.compile). The same for the Atrex-compatible variant
causal_conv1d_atrex (one sequence, output only)."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines, triton_support
from solbench.core.spec import Impl, add_impl
from solbench.ops.causal_conv1d.spec import atrex_spec, is_silu, spec


def eager(x, weight, bias, initial_state, query_start_loc, seq_lens_cpu, cache_indices, has_initial_state,
          activation):
    """What a user writes: one depthwise conv per sequence over its state and tokens, the pool line
    overwritten with the last width - 1 columns. Host lengths, so no device sync."""
    import torch
    import torch.nn.functional as F

    dim, width = weight.shape
    out = torch.empty_like(x)
    start = 0
    for n, length in enumerate(seq_lens_cpu):
        line = cache_indices[n:n + 1].long()
        state = initial_state.index_select(0, line)[0] * has_initial_state[n].to(x.dtype)
        xin = torch.cat([state, x[:, start:start + length]], dim=1)          # [dim, width - 1 + L]
        y = F.conv1d(xin[None], weight[:, None, :], bias, groups=dim)[0]
        out[:, start:start + length] = F.silu(y) if is_silu(activation) else y
        initial_state.index_copy_(0, line, xin[None, :, xin.shape[1] - (width - 1):])
        start += length
    return out, initial_state


register_torch_baselines(spec.name, eager, "per-sequence F.conv1d(groups=dim) on [state | x] + F.silu, bf16")


def ours(x, weight, bias, initial_state, query_start_loc, seq_lens_cpu, cache_indices, has_initial_state, activation):
    from solbench.kernels.conv import causal_conv1d

    return causal_conv1d(x, weight, bias, initial_state, query_start_loc, cache_indices, has_initial_state,
                         activation=activation, seq_lens=seq_lens_cpu)


add_impl(Impl(spec.name, "ours_triton", ours, available=triton_support,
              description="solbench Triton conv: token x channel tiles, first block of each sequence writes its "
                          "pool line after reading it"))


# ---- causal_conv1d_atrex: one sequence, output only ------------------------------------------------
def eager_atrex(x, weight, bias, initial_state, activation):
    """Atrex's formulation: F.conv1d(groups=dim) over [state | x] in bf16, then SiLU."""
    import torch
    import torch.nn.functional as F

    seq = torch.cat([initial_state[0], x], dim=1)[None]
    y = F.conv1d(seq, weight[:, None, :], bias, groups=weight.shape[0])[0]
    return F.silu(y) if is_silu(activation) else y


def ours_atrex(x, weight, bias, initial_state, activation, out=None):
    from solbench.kernels.conv import causal_conv1d_single

    return causal_conv1d_single(x, weight, bias, initial_state, activation=activation, out=out)


add_impl(Impl(atrex_spec.name, "ours_triton", ours_atrex, available=triton_support, takes_out=True,
              description="solbench Triton conv, single-sequence form (state read only)"))
register_torch_baselines(atrex_spec.name, eager_atrex, "F.conv1d(groups=dim) on [state | x] + F.silu, bf16")
