"""The kernel library as a PyTorch user meets it: every public kernel is a ``torch.ops.solbench``
op after ``import solbench``, passes ``torch.library.opcheck``, compiles with fullgraph, and on
CPU tensors (no TRITON_INTERPRET) computes the reference's values with torch."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import solbench
from solbench.core.check import compare_outputs
from solbench.kernels.fp8_format import fp8_dtype
from solbench.core.spec import all_specs, impls_for
from solbench.kernels.common import OPS

BF16 = torch.bfloat16


@pytest.fixture
def eager_cpu(monkeypatch):
    """CPU tensors take the torch formulation (the library's default without the interpreter)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def _r(*shape, dtype=BF16):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=torch.float32).to(dtype)


def _samples():
    """Arguments for one call of every registered op (qualified name -> args)."""
    x, w, b, res, z = _r(4, 64), _r(64), _r(64) * 0.1, _r(4, 64), _r(4, 64)
    qkv, qw, kw = _r(3, 64), _r(16), _r(16)  # 2 q heads, 1 kv head of 16

    def e(*s, dtype=BF16):
        return torch.empty(*s, dtype=dtype)

    q8, s1, s2 = e(4, 64, dtype=fp8_dtype()), e(4, 1, dtype=torch.float32), e(4, 2, dtype=torch.float32)
    glu = (0, 1.0, 0.0, False, 0.0, False)
    out = {
        "glu.out": (x, e(4, 32), *glu), "glu": (x, *glu),
        "rms_norm.out": (x, w, e(4, 64), 1e-6), "rms_norm": (x, w, 1e-6),
        "fused_add_rms_norm.out": (x, res, w, e(4, 64), e(4, 64), 1e-6),
        "fused_add_rms_norm_": (x.clone(), res.clone(), w, 1e-6), "fused_add_rms_norm": (x, res, w, 1e-6),
        "fused_qk_rmsnorm.out": (qkv, qw, kw, e(3, 64), 2, 1, 16, 1e-6),
        "fused_qk_rmsnorm_": (qkv.clone(), qw, kw, 2, 1, 16, 1e-6), "fused_qk_rmsnorm": (qkv, qw, kw, 2, 1, 16, 1e-6),
        "gated_rms_norm.out": (x, z, w, b, e(4, 64), 1e-6, True, 32), "gated_rms_norm": (x, z, w, None, 1e-6, False, 64),
        "l2_norm.out": (x, e(4, 64), 1e-6), "l2_norm": (x, 1e-6),
        "layer_norm.out": (x, w, b, e(4, 64), 1e-5), "layer_norm": (x, None, None, 1e-5),
        "dynamic_per_token_quant_fp8.out": (x, q8, s1, 1e-10), "dynamic_per_token_quant_fp8": (x, 1e-10),
        "rms_norm_quant.out": (x, w, q8, s1, 1e-6), "rms_norm_quant": (x, w, 1e-6),
        "fused_add_rms_norm_quant.out": (x, res, w, q8, s1, e(4, 64), 1e-6),
        "fused_add_rms_norm_quant": (x, res, w, 1e-6),
        "per_token_group_quant_fp8.out": (x, q8, s2, 32, 1e-10, False),
        "per_token_group_quant_fp8": (x, 32, 1e-10, True),
    }
    for name in ("silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul"):
        out[name + ".out"], out[name] = (x, e(4, 32)), (x,)
    i32 = lambda *v: torch.tensor(v, dtype=torch.int32)  # noqa: E731
    q, kc, vc = _r(5, 4, 16), _r(4, 16, 2, 16), _r(4, 16, 2, 16)
    unified = (q, kc, vc, i32(0, 2, 5), i32(3, 5), i32(2, 0, 3, 1).view(2, 2))
    out["unified_attention.out"], out["unified_attention"] = (*unified, e(5, 4, 16), 3, 0.25, True), \
        (*unified, 3, 0.25, True)
    varlen = (q, _r(8, 2, 16), _r(8, 2, 16), i32(0, 2, 5), i32(0, 3, 8))
    out["varlen_attention.out"], out["varlen_attention"] = (*varlen, e(5, 4, 16), 3, 0.25, False), \
        (*varlen, 3, 0.25, False)
    decode = (_r(2, 4, 16), _r(4, 2, 2, 16, 8), _r(4, 2, 16, 16), i32(3, 1).view(2, 1), i32(5, 16))
    out["paged_attention_decode.out"], out["paged_attention_decode"] = (*decode, e(2, 4, 16), 0.25), (*decode, 0.25)
    mla = (_r(2, 4, 48), _r(10, 1, 1, 48), i32(0, 3, 7), i32(9, 2, 5, 0, 7, 1, 4))
    out["mla_decode.out"], out["mla_decode"] = (*mla, e(2, 4, 32), 32, 0.2), (*mla, 32, 0.2)
    # Gated DeltaNet (pool slot -1: padding) and the causal conv (channel-last x; a padding sequence
    # leaves its outputs unwritten, so out starts zeroed for opcheck's comparisons).
    f32, flags = torch.float32, torch.tensor([True, False, True])
    gdr = (_r(2, 2, 1, 8), _r(2, 2, 1, 8), _r(2, 2, 2, 8), _r(2, 2, 2), _r(2, 2, 2), _r(2, dtype=f32), _r(2),
           _r(3, 2, 8, 8, dtype=f32), i32(2, -1))
    out["gated_delta_rule_update_"] = (*gdr, e(2, 2, 2, 8), 0.35, 1.0, 20.0, True, 8, 1, False)
    kwug = (_r(1, 20, 1, 16), _r(1, 20, 2, 16), _r(1, 20, 2, 8), -_r(1, 20, 2, dtype=f32).abs(),
            _r(2, 2, 16, 8, dtype=f32), i32(1))
    out["chunk_gated_delta_rule_state.out"] = (*kwug, e(1, 2, 2, 16, 8), e(1, 20, 2, 8), e(1, 2, 16, 8, dtype=f32),
                                               16, 16, 4, 2)
    out["chunk_gated_delta_rule_state"] = (*kwug, 16, 16, 4, 2)
    qkvhg = (_r(1, 20, 1, 16), _r(1, 20, 1, 16), _r(1, 20, 2, 8), _r(1, 2, 2, 16, 8), -_r(1, 20, 2, dtype=f32).abs())
    out["chunk_delta_rule_output.out"] = (*qkvhg, e(1, 20, 2, 8), 0.25, 16, 16, 4, 2)
    out["chunk_delta_rule_output"] = (*qkvhg, 0.25, 16, 16, 4, 2)
    cx, cw, cb = _r(6, 8).t(), _r(8, 4), _r(8)
    out["causal_conv1d_"] = (cx, cw, cb, _r(3, 8, 3), i32(0, 2, 5, 6), i32(2, 0, -1), flags,
                             torch.zeros(8, 6, dtype=BF16), 3, True, 4, 8, 1)
    out["causal_conv1d_single.out"] = (cx, cw, cb, _r(8, 3), e(8, 6), True, 4, 8, 1)
    out["causal_conv1d_single"] = (_r(8, 5), cw, None, None, False, 4, 8, 1)
    fp8 = (e(4, 128, dtype=fp8_dtype()), e(64, 128, dtype=fp8_dtype()), torch.rand(4, 1) + 0.5, torch.rand(1, 1) + 0.5)
    out["block_scaled_mm.out"], out["block_scaled_mm"] = (*fp8, e(4, 64, dtype=torch.float32), 128, 128, []), \
        (*fp8, 128, 128, [])
    out["block_scaled_mm_cuda.out"], out["block_scaled_mm_cuda"] = (*fp8, e(4, 64, dtype=torch.float32)), fp8
    key, value, slots = _r(3, 2, 8), _r(3, 2, 8), torch.tensor([1, -1, 6])
    out["reshape_and_cache_"] = (key, value, _r(2, 4, 2, 8), _r(2, 4, 2, 8), slots)
    logits = _r(4, 64, dtype=torch.float32)
    out["top_k_mask_logits.out"], out["top_k_mask_logits"] = (logits, e(4, 64, dtype=torch.float32), 5), (logits, 5)
    pos = i32(3, 0, 9)
    out["fused_qkv_rope.out"] = (qkv, None, pos, e(1, 2, 3, 16), e(1, 1, 3, 16), e(1, 1, 3, 16), 2, 1, 16, 16,
                                 1e4, True)
    out["fused_qkv_rope"] = (qkv, _r(64), pos, 2, 1, 16, 8, 1e4, False)
    mq, mk, cs = _r(3, 32), _r(3, 16), (_r(3, 3, 8, dtype=torch.float32), _r(3, 3, 8, dtype=torch.float32) * 0.5)
    out["mrope_"] = (mq.clone(), mk.clone(), *cs, 2, 3, 3, 16, 16, False, True)
    out["mrope.out"] = (mq, mk, *cs, e(3, 32), e(3, 16), 2, 3, 3, 16, 16, False, True)
    out["mrope"] = (mq, mk, *cs, 4, 2, 2, 16, 16, True, False)
    out["linear_sigmoid_mul.out"] = (x, _r(1, 64), _r(1), res, e(4, 64))
    out["linear_sigmoid_mul"] = (x, _r(8, 64), None, _r(4, 8))
    swiglu = (0, 1.702, 7.0, True, 1.0, True)
    out["glu_cuda.out"], out["glu_cuda"] = (x, e(4, 32), *swiglu), (x, *swiglu)
    ids = i32(3, 0, 0, 5, 7, 3).view(3, 2)
    out["topk_gating_softmax.out"] = (logits, e(4, 3, dtype=torch.float32), e(4, 3, dtype=torch.int32), 3, True)
    out["topk_gating_softmax"] = (logits, 2, False)
    out["moe_align_block_size.out"] = (ids, 8, 4, e(24, dtype=torch.int32), e(6, dtype=torch.int32),
                                       e(1, dtype=torch.int32))
    out["moe_align_block_size"] = (ids, 8, 4)
    out["moe_count_and_sort.out"] = (ids, 8, e(6, dtype=torch.int32), e(8, dtype=torch.int32), e(9, dtype=torch.int32))
    out["moe_count_and_sort"] = (ids, 8)
    out["moe_sum_reduce.out"] = (_r(3, 2, 64), e(3, 64, dtype=torch.float32), 2.5)
    out["moe_sum_reduce"] = (_r(3, 2, 64), 1.0)
    moe = (_r(3, 64), _r(8, 96, 64) * 0.1, _r(8, 64, 48) * 0.1, torch.rand(3, 2), ids)
    tiles = [1, 16, 128, 1, 8, 3, 1, 16, 128, 1, 4, 3]
    out["fused_moe.out"], out["fused_moe"] = (*moe, e(3, 64, dtype=torch.float32), tiles, True, "sum"), \
        (*moe, tiles, True, "sum")
    f8, b = fp8_dtype(), 128
    moe8 = (_r(3, 2 * b, dtype=f8), _r(8, 2 * b, 2 * b, dtype=f8), _r(8, 2 * b, b, dtype=f8), torch.rand(3, 2), ids,
            torch.rand(3, 2) + 0.5, torch.rand(8, 2, 2) + 0.5, torch.rand(8, 2, 1) + 0.5)
    out["fp8_block_fused_moe.out"], out["fp8_block_fused_moe"] = (*moe8, e(3, 2 * b), tiles, True, "sum"), \
        (*moe8, tiles, True, "sum")
    return {"solbench::" + k: v for k, v in out.items()}


SAMPLES = _samples()


def test_every_kernel_module_is_accounted_for():
    assert set(KERNEL_FAMILY_OPS) == {m for m in solbench.KERNEL_MODULES if m.startswith("solbench.kernels.")}


def test_every_registered_op_has_an_opcheck_sample():
    # A new kernel family adds its ops' arguments to _samples(), so CI opchecks them too.
    assert sorted({n for n in OPS if n.startswith("solbench::")} - set(SAMPLES)) == []


def test_an_op_without_a_torch_formulation_says_so_off_cuda(eager_cpu):
    from solbench.kernels.common import kernel_op

    @kernel_op("solbench_test::no_eager.out", mutates_args=("out",))
    def op(x: torch.Tensor, out: torch.Tensor) -> None:
        raise AssertionError("the Triton body must not run on CPU tensors without the interpreter")

    with pytest.raises(RuntimeError, match="no_eager.out: tensors on cpu are supported only on CUDA"):
        op(torch.ones(2), torch.empty(2))


# opcheck's schema and AOT tests compare outputs, which torch cannot do for fp8 on CPU.
FP8_OPS = ("quant", "block_scaled_mm", "fp8_block_fused_moe")  # block_scaled_mm_cuda too


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _to(args, device):
    return tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_opcheck(name, device, eager_cpu):
    op = OPS[name].overload
    utils = ("test_faketensor",) if device == "cpu" and any(k in name for k in FP8_OPS) else \
        ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
    torch.library.opcheck(op, _to(SAMPLES[name], device), test_utils=utils)


def test_import_registers_every_op_without_decorating_triton_kernels():
    code = textwrap.dedent("""
        import sys, torch, solbench
        for name in ("rms_norm", "silu_and_mul", "fused_add_rms_norm_", "layer_norm", "per_token_group_quant_fp8",
                     "reshape_and_cache_", "top_k_mask_logits", "fused_qkv_rope", "mrope_", "linear_sigmoid_mul",
                     "topk_gating_softmax", "moe_align_block_size", "moe_sum_reduce", "fused_moe"):
            getattr(torch.ops.solbench, name)
        assert hasattr(torch.ops.solbench.rms_norm, "out") and hasattr(torch.ops.solbench.silu_and_mul, "out")
        assert "triton" not in sys.modules, "import solbench must not decorate Triton kernels"
        x = torch.randn(3, 64, dtype=torch.bfloat16)
        w = torch.randn(64, dtype=torch.bfloat16)
        ref = (x.float() * torch.rsqrt(x.float().square().mean(-1, keepdim=True) + 1e-6) * w.float()).to(x.dtype)
        assert torch.equal(solbench.rms_norm(x, w), ref)
        g, u = x.float().chunk(2, -1)
        assert torch.equal(solbench.silu_and_mul(x), (g * torch.sigmoid(g) * u).to(x.dtype))
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


# The library's operators, by the KERNEL_MODULES module whose function their ours_triton implementation
# calls.
KERNEL_FAMILY_OPS = {"solbench.kernels.rownorm": ("rms_norm", "fused_add_rms_norm", "fused_qk_rmsnorm", "gated_rms_norm",
                                                 "l2_norm", "layer_norm"),
                     "solbench.kernels.glu": ("silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul"),
                     "solbench.kernels.fp8_quant": ("fp8_dynamic_per_token_quant", "fused_rmsnorm_quant",
                                                   "per_token_group_quant_fp8"),
                     "solbench.kernels.attention": ("unified_attention", "attention_forward", "paged_attention_decode"),
                     "solbench.kernels.linear_attention.recurrent": ("gated_delta_rule_update",),
                     "solbench.kernels.linear_attention.chunk": ("chunk_gated_delta_rule_state",
                                                                 "chunk_delta_rule_output"),
                     "solbench.kernels.conv": ("causal_conv1d", "causal_conv1d_atrex"),
                     "solbench.kernels.mla": ("mla_decode_attention",),
                     "solbench.kernels.gemm.block_fp8": ("block_scaled_mm",),
                     # ours_cuda, not ours_triton: its CPU path is checked in tests/test_jit_cuda.py
                     "solbench.kernels.cuda.glu": (),
                     # ours_cuda too: its CPU path is checked in tests/ops/test_block_fp8_cuda.py
                     "solbench.kernels.cuda.block_fp8": (),
                     "solbench.kernels.kv_cache": ("reshape_and_cache",),
                     "solbench.kernels.topk": ("topk_filter",),
                     "solbench.kernels.rope": ("fused_qkv_rope", "mrope"),
                     "solbench.kernels.gate": ("linear_sigmoid_mul", "linear_sigmoid_mul_atrex"),
                     "solbench.kernels.moe.routing": ("moe_topk_gating_softmax", "moe_align_block_size",
                                                      "moe_count_and_sort", "moe_sum_reduce"),
                     "solbench.kernels.moe.fused": ("fused_moe", "fp8_blockscale_fused_moe")}
# Families whose torch formulation is the reference's math in the reference's order (equal bit for bit);
# the others compute it in another order and are compared within the operator's tolerance.
EXACT_MODULES = ("solbench.kernels.rownorm", "solbench.kernels.glu", "solbench.kernels.fp8_quant")
TOLERANCE_OPS = {op for m, ops in KERNEL_FAMILY_OPS.items() if m not in EXACT_MODULES for op in ops}
LIBRARY_OPS = sorted({op for ops in KERNEL_FAMILY_OPS.values() for op in ops})


@pytest.mark.parametrize("op", LIBRARY_OPS)
def test_cpu_tensors_get_the_references_values(op, eager_cpu):
    specs = {s.name: s for s in all_specs(include_variants=True)}
    spec = specs[op]
    impl = impls_for(op)["ours_triton"]
    shape = spec.smoke_shapes()[0]
    inputs = spec.make_inputs(shape, torch.device("cpu"), 3)
    ref = spec.reference(**inputs)
    got = impl.fn(**inputs)  # after the reference: some forms work in place
    got = got if isinstance(got, (tuple, list)) else (got,)
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype and g.shape == r.shape
        if spec.structural:
            continue  # outputs whose order is not unique: judged by the spec's invariants below
        if op in TOLERANCE_OPS:
            tol = spec.tolerance(shape)
            torch.testing.assert_close(g.float(), r.float(), atol=tol.atol, rtol=tol.rtol)
            continue
        assert torch.equal(g.view(torch.uint8) if g.dtype == fp8_dtype() else g,
                           r.view(torch.uint8) if r.dtype == fp8_dtype() else r), op
    if spec.structural:
        errs, _ = compare_outputs(spec, shape, inputs, dict(zip(spec.output_names, got)),
                                  dict(zip(spec.output_names, ref)), "cpu")
        assert errs == [], errs


@pytest.mark.parametrize("device", DEVICES)
def test_torch_compile_fullgraph_through_the_library(device, eager_cpu):
    import torch._dynamo

    torch._dynamo.reset()
    x, res, w = _to((_r(4, 64), _r(4, 64), _r(64)), device)

    def block(x, res, w):
        h, r = solbench.fused_add_rms_norm(x, res, w, 1e-6)
        y = solbench.silu_and_mul(solbench.rms_norm(h, w) * 2)
        q, s = solbench.dynamic_per_token_quant_fp8(y)
        return y, r, q.float() * s, torch.ops.solbench.layer_norm(h, w, None, 1e-5)

    compiled = torch.compile(block, fullgraph=True)
    for g, e in zip(compiled(x, res, w), block(x, res, w)):
        torch.testing.assert_close(g, e, atol=0, rtol=0)


def test_in_place_forms_update_their_inputs(eager_cpu):
    x, res, w = _r(4, 64), _r(4, 64), _r(64)
    out, res_out = solbench.fused_add_rms_norm(x, res, w, 1e-6)
    xi, ri = x.clone(), res.clone()
    torch.ops.solbench.fused_add_rms_norm_(xi, ri, w, 1e-6)
    assert torch.equal(xi, out) and torch.equal(ri, res_out)
