"""block_scaled_mm: hand-counted cost, the reference against vLLM's per-K-block accumulation, row
chunking, and the torch_native refusal off CUDA."""
from dataclasses import replace

import torch

from solbench.core.spec import get_spec, impls_for
from solbench.ops.block_scaled_mm import spec as spec_mod

spec = get_spec("block_scaled_mm")
CPU = torch.device("cpu")


def test_cost_by_hand_shape_0():
    # m=349 n=2048 k=2048, 128x128 blocks: 16 K-groups, 16 N-groups.
    c = spec.cost(next(s for s in spec.shapes if s.id == 0))
    assert c.flops["fp8_e4m3_tc"] == 2 * 349 * 2048 * 2048 == 2_927_624_192
    assert c.flops["fp32"] == 2 * 349 * 2048 * 16
    assert c.bytes_read == 349 * 2048 + 2048 * 2048 + 4 * (349 * 16 + 16 * 16) == 4_932_416
    assert c.bytes_written == 349 * 2048 * 4 == 2_859_008


def _kblock_loop(a, b, sa, sb, gn=128, gk=128):
    """vLLM's kernel order: per K-block fp8 dot products, rescaled by a_scale[m, kb] * b_scale[n//gn, kb]."""
    m, k = a.shape
    n = b.shape[0]
    out = torch.zeros(m, n, dtype=torch.float64)
    col_scale = sb.double().repeat_interleave(gn, 0)[:n]          # [n, K/gk]
    for kb in range(k // gk):
        part = a[:, kb * gk:(kb + 1) * gk].double() @ b[:, kb * gk:(kb + 1) * gk].double().T
        out += part * sa[:, kb].double()[:, None] * col_scale[:, kb][None, :]
    return out


def test_reference_matches_kblock_loop():
    sh = replace(spec.shapes[0], params=dict(m=7, n=384, k=256, group_n=128, group_k=128))
    x = spec.make_inputs(sh, CPU, 4)
    assert x["a_scales"].shape == (7, 2) and x["b_scales"].shape == (3, 2)
    out = spec.reference(**x)
    assert out.dtype == torch.float32 and out.shape == (7, 384)
    torch.testing.assert_close(out.double(), _kblock_loop(x["a"], x["b"], x["a_scales"], x["b_scales"]),
                               rtol=1e-5, atol=1e-5)


def test_reference_row_chunks(monkeypatch):
    sh = spec.smoke_shapes()[1]
    x = spec.make_inputs(sh, CPU, 0)
    whole = spec.reference(**x)
    monkeypatch.setattr(spec_mod, "_REF_ROWS_ELEMS", 384 * 5)   # 5-row chunks, the last partial
    torch.testing.assert_close(spec.reference(**x), whole)


def test_native_refuses_with_reason_on_cpu():
    if torch.cuda.is_available():
        return
    s = impls_for("block_scaled_mm")["torch_native"].available()
    assert not s.ok and "CUDA" in s.reason
