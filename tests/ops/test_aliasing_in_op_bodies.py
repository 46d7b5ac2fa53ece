"""Aliasing is checked inside every solbench custom op's body, not only in the Python wrapper:
the body is what runs under torch.compile (which traces the wrapper with fake tensors) and
inside CUDA-graph capture, so an output that overlaps an input is an error there too, never a
silently wrong result. Each case calls the registered op directly with one overlapping pair."""
import pytest
import torch

from solbench.kernels.fp8_format import fp8_dtype

import solbench  # noqa: E402,F401  (registers every custom op)

ops = torch.ops.solbench
BF16 = torch.bfloat16


def _x(*shape):
    return torch.randn(*shape, dtype=BF16)


def fp8_over(x):
    """An fp8 tensor shaped like ``x`` that lives inside ``x``'s own bytes (row stride 2n)."""
    return x.view(torch.uint8)[:, :x.shape[-1]].view(fp8_dtype())


def _cases():
    x, w = _x(4, 64), _x(64)
    res = _x(4, 64)
    q8 = torch.empty(4, 64, dtype=fp8_dtype())
    scale = torch.empty(4, 1)
    qkv = _x(2, 4 * 16)
    return {
        # name: (call, the overlapping pair the error names)
        "glu": (lambda: ops.glu.out(x, x[:, :32], 0, 1.0, 0.0, False, 0.0, False), "out overlaps x"),
        "rms_norm": (lambda: ops.rms_norm.out(x, w, x, 1e-6), "out overlaps x"),
        "rms_norm weight": (lambda: ops.rms_norm.out(x, res[0], res, 1e-6), "out overlaps weight"),
        "layer_norm": (lambda: ops.layer_norm.out(x, w, w, w.expand(4, 64), 1e-6), "out overlaps weight"),
        "l2_norm": (lambda: ops.l2_norm.out(x, x, 1e-6), "out overlaps x"),
        "gated_rms_norm": (lambda: ops.gated_rms_norm.out(x, res, w, None, res, 1e-6, True, 64), "out overlaps z"),
        "fused_add_rms_norm": (lambda: ops.fused_add_rms_norm.out(x, res, w, res, _x(4, 64), 1e-6),
                               "out overlaps residual"),
        "fused_add_rms_norm in place": (lambda: ops.fused_add_rms_norm_(x, x, w, 1e-6),
                                        "x overlaps residual"),
        "fused_qk_rmsnorm": (lambda: ops.fused_qk_rmsnorm.out(qkv, _x(16), _x(16), qkv, 2, 1, 16, 1e-6),
                             "out overlaps qkv"),
        "fused_qk_rmsnorm in place": (lambda: ops.fused_qk_rmsnorm_(qkv, qkv[0, :16], _x(16), 2, 1, 16, 1e-6),
                                      "qkv overlaps q_weight"),
        "fp8 per-token quant": (lambda: ops.dynamic_per_token_quant_fp8.out(x, fp8_over(x), scale, 1e-10), "q overlaps x"),
        "rmsnorm quant": (lambda: ops.rms_norm_quant.out(x, w, q8, q8.view(-1)[:16].view(torch.float32).view(4, 1), 1e-6),
                          "q overlaps scale"),
        "add rmsnorm quant": (lambda: ops.fused_add_rms_norm_quant.out(x, res, w, q8, scale, x, 1e-6),
                              "residual_out overlaps x"),
        "per-token-group quant": (lambda: ops.per_token_group_quant_fp8.out(x, fp8_over(x), torch.empty(4, 2), 32,
                                                                         1e-10, False), "q overlaps x"),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_custom_op_body_rejects_overlapping_tensors(name):
    call, message = CASES[name]
    with pytest.raises(ValueError, match=message):
        call()
