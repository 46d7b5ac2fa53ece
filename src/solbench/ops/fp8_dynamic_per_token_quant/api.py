"""Public API: ``dynamic_per_token_quant_fp8(x, out=None)`` -> ``(q, scale)``.

aiter's ``dynamic_per_token_scaled_quant`` (what rtp-llm calls before its fp8 GEMMs): per token
(row of the last dimension) ``scale = max(max|x|, 1e-10) / 448`` and
``q = fp8_e4m3fn(clamp(x / scale, -448, 448))``; ``x ~= q * scale``. One pass over HBM.

Registered as the ``torch.library`` custom ops ``torch.ops.solbench.dynamic_per_token_quant_fp8``
(functional) and ``.out`` (mutating ``q`` and ``scale``) with fake implementations, so
``torch.compile`` traces through them and CUDA graphs capture them; off CUDA they compute with
torch.
"""
from __future__ import annotations

import torch

from solbench.core.fp8 import fp8_dtype, quantize_per_token
from solbench.kernels.common import as_rows, check_disjoint, check_out, functional_op, kernel_op
from solbench.kernels.rowwise import rows_of

_WHAT = "dynamic_per_token_quant_fp8"
#: aiter's floor of a row's max-abs: an all-zero row gets a finite, positive scale.
MIN_AMAX = 1e-10


def _eager(x, q, scale, min_amax) -> None:
    check_disjoint(_WHAT, (("q", q), ("scale", scale)), (("x", x),))
    qq, ss = quantize_per_token(as_rows(x, _WHAT).float(), min_amax)
    as_rows(q, _WHAT, "q").copy_(qq)
    as_rows(scale, _WHAT, "scale").copy_(ss)


@kernel_op("solbench::dynamic_per_token_quant_fp8.out", mutates_args=("q", "scale"), eager=_eager)
def _per_token_quant_op(x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor, min_amax: float) -> None:
    from solbench.ops.fp8_dynamic_per_token_quant.triton import launch_per_token_quant

    check_disjoint(_WHAT, (("q", q), ("scale", scale)), (("x", x),))
    launch_per_token_quant(as_rows(x, _WHAT), as_rows(q, _WHAT, "q"), as_rows(scale, _WHAT, "scale"), min_amax)


@_per_token_quant_op.register_fake
def _per_token_quant_fake(x, q, scale, min_amax) -> None:
    return None


functional_op("solbench::dynamic_per_token_quant_fp8", _per_token_quant_op,
              lambda x, min_amax: quant_outputs(x, None, _WHAT))


def quant_outputs(x: torch.Tensor, out, what: str):
    """``(q, scale)`` for a per-token quantization of ``x``: validated ``out`` (a pair) or new
    tensors. ``q`` is fp8 e4m3fn shaped like ``x``; ``scale`` fp32 ``x.shape[:-1] + (1,)``;
    either may have a row stride."""
    q_shape, s_shape = tuple(x.shape), (*x.shape[:-1], 1)
    if out is None:
        return (torch.empty(q_shape, dtype=fp8_dtype(), device=x.device),
                torch.empty(s_shape, dtype=torch.float32, device=x.device))
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise ValueError(f"{what}: out must be a pair (q, scale)")
    q, scale = out
    for name, t, shape, dtype in (("q", q, q_shape, fp8_dtype()), ("scale", scale, s_shape, torch.float32)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{what}: out {name} must be a torch.Tensor, got {type(t).__name__}")
        check_out(t, shape, dtype, x.device, what, f"out {name}")
        as_rows(t, what, f"out {name}")
    return q, scale


def dynamic_per_token_quant_fp8(x: torch.Tensor, out=None, *, min_amax: float = MIN_AMAX):
    """Quantize each row of ``x[..., n]`` to fp8 e4m3fn with its own scale.

    ``scale = max(max|x_row|, min_amax) / 448``; ``q = fp8(clamp(x / scale, -448, 448))``
    (round to nearest even). ``x``: bf16, fp16 or fp32, any leading dims, rows may be strided
    (the last dim must be contiguous), 0 rows allowed. ``out``: optional pair ``(q, scale)``.
    Returns ``(q, scale)`` with ``scale`` shaped ``x.shape[:-1] + (1,)``.
    """
    rows_of(x, _WHAT)
    if not (min_amax >= 0.0):
        raise ValueError(f"{_WHAT}: min_amax must be >= 0, got {min_amax}")
    q, scale = quant_outputs(x, out, _WHAT)
    _per_token_quant_op(x, q, scale, float(min_amax))
    return q, scale
