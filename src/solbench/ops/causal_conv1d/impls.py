"""causal_conv1d baselines: per-sequence F.conv1d (groups=dim) on [state | x] and F.silu (eager,
and its torch.compile)."""
from __future__ import annotations

from solbench.core.baselines import register_torch_baselines
from solbench.ops.causal_conv1d.spec import is_silu, spec


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
