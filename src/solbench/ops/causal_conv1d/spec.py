"""causal_conv1d (sglang ``causal_conv1d_fn``,
``python/sglang/srt/layers/attention/mamba/causal_conv1d_triton.py``, itself adapted from vLLM's
``vllm/model_executor/layers/mamba/ops/causal_conv1d.py``).

Depthwise causal convolution over the packed tokens of a varlen batch, with per-sequence conv
states from a pool (continuous batching). Inputs:

* ``x [dim, total_tokens]`` bf16, channel-last (a transposed view of a ``[tokens, dim]`` buffer,
  as upstream requires); sequences are concatenated along tokens;
* ``weight [dim, width]``, ``bias [dim]`` bf16;
* ``initial_state [state_count, dim, width - 1]`` bf16: the conv-state pool (oldest token first);
* ``query_start_loc [N + 1]`` int32, ``seq_lens_cpu`` (host list), ``cache_indices [N]`` int32,
  ``has_initial_state [N]`` bool, ``activation`` ("silu"/"swish"/True, or None).

For sequence n with tokens ``x_n[:, 0..L)``, let ``p = [s_n | x_n]`` where ``s_n`` is
``initial_state[cache_indices[n]]`` if ``has_initial_state[n]`` else zeros (``width - 1``
columns). Then ``out[:, t] = act(bias + sum_j weight[:, j] * p[:, t + j])`` and, in place,
``initial_state[cache_indices[n]] = p[:, -(width - 1):]`` (the last ``width - 1`` columns, so a
sequence shorter than the state shifts the old state left). Outputs: ``out`` (x's shape, dtype
and layout) and ``final_state``: the pool after that update.

The catalog records one sequence per call (``token_count`` tokens; 1-token calls are single-token
chunks run through the prefill kernel). Padding entries (``cache_indices == -1``) are skipped
upstream, leaving their output unwritten; they are not part of this operator's contract.

``causal_conv1d_atrex`` (a variant on the same shapes, not in the catalog score) is Atrex-Bench's
contract: one sequence, no index arrays, the state only read, the output alone.
"""
from __future__ import annotations

import dataclasses

from solbench.core import inputs as rnd
from solbench.core.spec import Cost, OpSpec, Shape, Tolerance, register_spec, tensor_bytes, torch_dtype

DEFAULT_POOL = 4  # the catalog does not record the pool size; only the lines used are costed


def is_silu(activation) -> bool:
    if activation is None or activation is False:
        return False
    if activation is True or activation in ("silu", "swish"):
        return True
    raise ValueError(f"causal_conv1d: activation must be None, True, 'silu' or 'swish', got {activation!r}")


class CausalConv1d(OpSpec):
    name = "causal_conv1d"
    dtype = "bf16"
    output_names = ("out", "final_state")

    @staticmethod
    def seq_lens(shape: Shape) -> list[int]:
        lens = [int(n) for n in shape.get("seq_lens", [shape["token_count"]])]
        if not lens or min(lens) < 1:
            raise ValueError(f"causal_conv1d shape {shape.id}: sequence lengths must be positive, got {lens}")
        return lens

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        import torch

        lens = self.seq_lens(shape)
        n, dim, width = len(lens), int(shape["dim"]), int(shape["width"])
        pool = max(int(shape.get("state_count", DEFAULT_POOL)), n)
        gen = rnd.generator(device, seed)
        dt = torch_dtype(self.dtype)
        x = rnd.randn((sum(lens), dim), dt, device, gen).t()                 # channel-last [dim, T]
        # Every sequence continues from a state unless the shape says otherwise (a smoke shape mixes both).
        has = shape.get("has_initial_state")
        has_t = (torch.ones(n, dtype=torch.bool, device=device) if has is None
                 else torch.tensor([bool(h) for h in has], dtype=torch.bool, device=device))
        return {
            "x": x,
            "weight": rnd.randn((dim, width), dt, device, gen, scale=width ** -0.5),
            "bias": rnd.randn((dim,), dt, device, gen, scale=0.1),
            "initial_state": rnd.randn((pool, dim, width - 1), dt, device, gen),
            "query_start_loc": torch.tensor([0] + lens, device=device).cumsum(0).to(torch.int32),
            "seq_lens_cpu": lens,
            "cache_indices": torch.randperm(pool, generator=gen, device=device)[:n].to(torch.int32),
            "has_initial_state": has_t,
            "activation": shape.get("activation", "silu"),
        }

    def reference(self, x, weight, bias, initial_state, query_start_loc, seq_lens_cpu, cache_indices,
                  has_initial_state, activation):
        """out[:, t] = act(bias + sum_j weight[:, j] * p_n[:, pos(t) + j]) with p_n = [state_n | x_n]
        (state_n zeros without an initial state); the pool line of n becomes p_n's last width - 1
        columns. fp32 math over all tokens at once (a gather per tap), one cast at the end."""
        import torch

        dim, T = x.shape
        width = weight.shape[1]
        sl = width - 1
        starts = query_start_loc.long()
        n = starts.numel() - 1
        idx = cache_indices.long()
        if bool((idx < 0).any()):
            raise ValueError("causal_conv1d reference: padding entries (cache_indices < 0) have no defined output")
        dev = x.device
        tok = torch.arange(T, device=dev)
        seq = torch.bucketize(tok, starts[1:], right=True)                  # sequence of each token
        # Extended token-major buffer: each sequence's width-1 state columns, then its tokens.
        ext_pos = tok + (seq + 1) * sl
        init = initial_state[idx].float() * has_initial_state[:, None, None].float()   # [N, dim, sl]
        ext = torch.empty((T + n * sl, dim), dtype=torch.float32, device=dev)
        ext[ext_pos] = x.t().float()
        state_pos = (starts[:-1] + torch.arange(n, device=dev) * sl)[:, None] + torch.arange(sl, device=dev)
        ext[state_pos.reshape(-1)] = init.permute(0, 2, 1).reshape(-1, dim)
        acc = bias.float().expand(T, dim).clone()
        w = weight.float()
        for j in range(width):
            acc += ext[ext_pos - sl + j] * w[:, j]
        if is_silu(activation):
            acc = acc * torch.sigmoid(acc)
        out = torch.empty_like(x)
        out.copy_(acc.t())
        ends = starts[1:] + (torch.arange(n, device=dev) + 1) * sl         # end of each extended sequence
        last = ext[(ends[:, None] - sl + torch.arange(sl, device=dev)).reshape(-1)].view(n, sl, dim)
        pool = initial_state.clone()
        pool[idx] = last.permute(0, 2, 1).to(pool.dtype)
        return out, pool

    def cost(self, shape: Shape) -> Cost:
        # Read: x [dim, T], weight [dim, width], bias [dim] bf16; the N pool lines used [dim, width-1]
        # bf16; query_start_loc (int32, N+1), cache_indices (int32, N), has_initial_state (bool, N).
        # Write: out [dim, T] bf16 and the N updated pool lines.
        # FLOPs (fp32): per output element width multiply-adds (2 each, the bias as the first
        # add) and SiLU (exp, add, divide, multiply: 4).
        lens = self.seq_lens(shape)
        n, dim, width = len(lens), int(shape["dim"]), int(shape["width"])
        T = sum(lens)
        lines = tensor_bytes((n, dim, width - 1), "bf16")
        read = (tensor_bytes((dim, T), "bf16") + tensor_bytes((dim, width), "bf16") + tensor_bytes((dim,), "bf16")
                + lines + tensor_bytes((n + 1,), "int32") + tensor_bytes((n,), "int32") + tensor_bytes((n,), "bool"))
        act = 4 if is_silu(shape.get("activation", "silu")) else 0
        return Cost(flops={"fp32": T * dim * (2 * width + act)}, bytes_read=read,
                    bytes_written=tensor_bytes((dim, T), "bf16") + lines)

    def tolerance(self, shape: Shape) -> Tolerance:
        # fp32 accumulation upstream, one bf16 rounding of the output (the pool lines are copies).
        return Tolerance(atol=1e-2, rtol=1.6e-2, rms_rtol=8e-3)

    def smoke_shapes(self) -> list[Shape]:
        # The smallest catalog shape (one token continuing a state), and a reduced varlen batch of
        # the same structure: sequences shorter and longer than the state, with and without one.
        base = min(self.shapes, key=lambda s: self.cost(s).total_bytes)
        varlen = dataclasses.replace(base, id="smoke_varlen", smoke=True, params={
            **base.params, "token_count": 15, "dim": 96, "seq_lens": [2, 9, 1, 3],
            "has_initial_state": [True, False, True, False], "state_count": 6})
        return [base, varlen]


class CausalConv1dAtrex(CausalConv1d):
    """The Atrex-Bench contract of the same shapes (``data/causal_conv1d`` of alibaba/atrex-bench):
    one sequence ``x [dim, token_count]`` (row-major: tokens contiguous per channel), ``weight
    [dim, width]``, ``bias [dim]``, ``initial_state [1, dim, width - 1]`` that is only read; the
    output alone, ``out[:, t] = act(bias + sum_j weight[:, j] * [state | x][:, t + j])``. No index
    arrays and no state write-back, so it moves one pool line less than the serving contract."""

    name = "causal_conv1d_atrex"
    catalog = False
    output_names = ("out",)

    def make_inputs(self, shape: Shape, device, seed: int) -> dict:
        T, dim, width = int(shape["token_count"]), int(shape["dim"]), int(shape["width"])
        gen = rnd.generator(device, seed)
        dt = torch_dtype(self.dtype)
        return {
            "x": rnd.randn((dim, T), dt, device, gen),
            "weight": rnd.randn((dim, width), dt, device, gen, scale=width ** -0.5),
            "bias": rnd.randn((dim,), dt, device, gen, scale=0.1),
            "initial_state": rnd.randn((1, dim, width - 1), dt, device, gen),
            "activation": shape.get("activation", "silu"),
        }

    def reference(self, x, weight, bias, initial_state, activation):
        """fp32 taps over ``p = [state | x]``, one cast at the end."""
        import torch

        width = weight.shape[1]
        p = torch.cat([initial_state[0].float(), x.float()], dim=1)
        T = x.shape[1]
        acc = bias.float()[:, None].expand(-1, T).clone()
        for j in range(width):
            acc += weight[:, j:j + 1].float() * p[:, j:j + T]
        if is_silu(activation):
            acc = acc * torch.sigmoid(acc)
        return acc.to(x.dtype)

    def make_outputs(self, shape: Shape, inputs: dict):
        import torch

        return (torch.empty_like(inputs["x"]),)

    def cost(self, shape: Shape) -> Cost:
        # Read: x [dim, T], weight [dim, width], bias [dim], the state [dim, width - 1] (bf16).
        # Write: out [dim, T] bf16. FLOPs as the serving contract.
        T, dim, width = int(shape["token_count"]), int(shape["dim"]), int(shape["width"])
        read = (tensor_bytes((dim, T), "bf16") + tensor_bytes((dim, width), "bf16") + tensor_bytes((dim,), "bf16")
                + tensor_bytes((dim, width - 1), "bf16"))
        act = 4 if is_silu(shape.get("activation", "silu")) else 0
        return Cost(flops={"fp32": T * dim * (2 * width + act)}, bytes_read=read,
                    bytes_written=tensor_bytes((dim, T), "bf16"))

    def smoke_shapes(self) -> list[Shape]:
        # The one-token decode shape and a reduced prefill (a partial token block, odd dim).
        base = min(self.shapes, key=lambda s: self.cost(s).total_bytes)
        return [base, dataclasses.replace(base, id="smoke_prefill", smoke=True,
                                          params={**base.params, "token_count": 70, "dim": 80})]


spec = register_spec(CausalConv1d.from_catalog())
atrex_spec = register_spec(CausalConv1dAtrex(
    {**spec.entry, "name": CausalConv1dAtrex.name, "importance": 0.0},
    [dataclasses.replace(s, op=CausalConv1dAtrex.name) for s in spec.shapes]))
