"""The JIT CUDA backend on a machine without a GPU: the sources compile through NVRTC for every
dtype and activation, the disk cache keys on every input, hits on a second compile and survives
concurrent compiles; the wrappers validate, return at once on 0 tokens, and compute with torch off
CUDA. The compile tests need NVRTC (``pip install 'solbench[cuda]'``) and are skipped without it."""
import ctypes
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from solbench.kernels.common import OPS
from solbench.kernels.cuda import glu as cglu
from solbench.kernels.cuda import jit
from solbench.kernels.activation import get_activation, reference_glu

NO_NVRTC = jit.nvrtc_unavailable_reason()
needs_nvrtc = pytest.mark.skipif(NO_NVRTC is not None, reason=f"no NVRTC here: {NO_NVRTC}")
DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def _variant(dtype=torch.bfloat16, act=0, interleaved=False, has_limit=False, arch=90, pdl=True, fast_math=True):
    return cglu.Variant(dtype, act, interleaved, has_limit, arch, pdl, fast_math)


# ---- compile (NVRTC, no GPU) ---------------------------------------------------------------------

@needs_nvrtc
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_sources_compile_to_sm90_cubin_for_every_activation(dtype, tmp_path):
    for act in cglu.ACTIVATIONS.values():
        compiled = cglu.compile_variant(_variant(dtype, act), "cubin", tmp_path)
        assert compiled.cache == "miss" and compiled.code[:4] == b"\x7fELF"
        assert set(compiled.lowered) == set(_variant(dtype, act).names)
        assert all(sym.startswith("_ZN8solbench10glu_kernel") for sym in compiled.lowered.values())
    # swiglu: interleaved, clamped, no PDL, exact math
    swiglu = cglu.compile_variant(_variant(dtype, 0, True, True, pdl=False, fast_math=False), "cubin", tmp_path)
    assert swiglu.code[:4] == b"\x7fELF"


@needs_nvrtc
def test_ptx_has_16_byte_accesses_pdl_and_fast_math_as_asked(tmp_path):
    def ptx(variant):
        compiled = cglu.compile_variant(variant, "ptx", tmp_path)
        return compiled.code.decode(errors="replace")

    on = ptx(_variant(torch.bfloat16, 0, pdl=True, fast_math=True))
    assert "ld.global.nc.v4.u32" in on and "st.global.v4.u32" in on  # 16-byte loads and stores
    assert "griddepcontrol.wait" in on and "griddepcontrol.launch_dependents" in on
    assert "rcp.approx.ftz" in on and "rcp.rn" not in on  # fast math: sigmoid's reciprocal approximated
    off = ptx(_variant(torch.bfloat16, 0, pdl=False, fast_math=False, arch=80))
    assert "griddepcontrol" not in off
    assert "rcp.rn.f32" in off and "rcp.approx" not in off
    assert "ld.global.nc.v4.u32" in ptx(_variant(torch.float32, 2, True, True))  # interleaved, fp32


@needs_nvrtc
def test_a_compile_error_carries_nvrtc_log(tmp_path, monkeypatch):
    with pytest.raises(jit.CompileError, match="glu_kernel|error"):
        jit.compile_source("glu.cu", ["solbench::glu_kernel<solbench::bf16, 0, false, false, 3, true>"], 90,
                           (), "ptx", tmp_path)
    with pytest.raises(jit.JitUnavailable, match="cannot compile for sm_1"):
        jit.compile_source("glu.cu", _variant().names, 1, (), "ptx", tmp_path)


@needs_nvrtc
def test_compile_timing_command(capsys):
    import json

    from solbench.kernels.cuda.__main__ import main

    main(["--arch", "90", "--dtype", "fp16"])
    recs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["variant"] for r in recs] == ["silu", "gelu", "gelu_tanh", "swiglu"]
    assert all(r["compile_miss_s"] > 0 and r["disk_hit_s"] < r["compile_miss_s"] and r["kernels"] == 4 for r in recs)


def test_cache_key_changes_with_each_input():
    base = dict(src_hash="a" * 64, arch=90, names=["n<bf16>"], options=["--use_fast_math"], output="cubin",
                compiler=(13, 0))
    changed = [dict(src_hash="b" * 64), dict(arch=100), dict(names=["n<fp16>"]), dict(options=[]),
               dict(output="ptx"), dict(compiler=(12, 9))]
    keys = {jit.cache_key(**base)} | {jit.cache_key(**{**base, **c}) for c in changed}
    assert len(keys) == 1 + len(changed)
    assert jit.cache_key(**base) == jit.cache_key(**base)
    # What reaches the key from a variant: dtype and activation (names), PDL (names), fast math (options).
    variants = [_variant(), _variant(torch.float16), _variant(act=1), _variant(pdl=False), _variant(interleaved=True),
                _variant(has_limit=True)]
    assert len({tuple(v.names) for v in variants}) == len(variants)
    assert _variant(fast_math=True).options != _variant(fast_math=False).options
    assert jit.source_hash("glu.cu") == jit.source_hash("glu.cu") and len(jit.source_hash("glu.cu")) == 64


@needs_nvrtc
def test_second_compile_hits_the_disk_cache_and_a_damaged_entry_is_rebuilt(tmp_path):
    v = _variant(torch.float16, 1)
    first = cglu.compile_variant(v, "cubin", tmp_path)
    second = cglu.compile_variant(v, "cubin", tmp_path)
    assert (first.cache, second.cache) == ("miss", "disk")
    assert second.code == first.code and second.lowered == first.lowered and second.key == first.key
    entries = list(tmp_path.iterdir())
    assert [p.name for p in entries] == [f"{first.key}.cubin"]
    meta, code = jit.read_entry(entries[0])
    assert code == first.code and meta["nvrtc"] == list(jit.nvrtc_version()) and meta["names"] == v.names
    blob = bytearray(entries[0].read_bytes())
    blob[-1] ^= 0xFF  # a torn or corrupted file fails its checksum
    entries[0].write_bytes(bytes(blob))
    assert jit.read_entry(entries[0]) is None
    third = cglu.compile_variant(v, "cubin", tmp_path)
    assert third.cache == "miss" and third.code == first.code


@needs_nvrtc
def test_concurrent_compiles_leave_one_valid_entry(tmp_path):
    cache, ready = tmp_path / "cache", tmp_path / "ready"
    ready.mkdir()
    n = 2
    # A barrier: each process imports, says so with a file, and compiles once all have.
    code = textwrap.dedent(f"""
        import os, sys, time, torch
        from solbench.kernels.cuda import glu as cglu
        v = cglu.Variant(torch.bfloat16, 2, True, True, 90, True, True)
        open(os.path.join({str(ready)!r}, sys.argv[1]), "w").close()
        while len(os.listdir({str(ready)!r})) < {n}:
            time.sleep(0.005)
        c = cglu.compile_variant(v, "cubin", {str(cache)!r})
        print(c.key, c.cache)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(n)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    keys = {out.split()[0] for out, _ in outs}
    assert len(keys) == 1
    files = sorted(p.name for p in cache.iterdir())
    assert files == [f"{keys.pop()}.cubin"]  # no temporary file left behind
    meta, blob = jit.read_entry(cache / files[0])
    assert blob[:4] == b"\x7fELF" and len(meta["lowered"]) == len(cglu.vec_widths(torch.bfloat16))


def test_without_nvrtc_the_error_says_what_to_install(monkeypatch):
    jit._nvrtc.cache_clear()
    monkeypatch.setitem(sys.modules, "cuda.bindings.nvrtc", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    try:
        reason = jit.nvrtc_unavailable_reason()
        assert reason and "cuda-bindings" in reason and "solbench[cuda]" in reason
        with pytest.raises(jit.JitUnavailable, match="pip install"):
            jit.compile_source("glu.cu", _variant().names, 90)
    finally:
        jit._nvrtc.cache_clear()


# ---- policies --------------------------------------------------------------------------------------

def test_fast_math_policy_by_platform_with_an_environment_override(monkeypatch):
    monkeypatch.delenv("SOLBENCH_CUDA_FAST_MATH", raising=False)
    assert cglu.fast_math_policy(80) and cglu.fast_math_policy(90)
    assert not cglu.fast_math_policy(100) and not cglu.fast_math_policy(120)
    assert not cglu.fast_math_policy(90, rocm=True)
    monkeypatch.setenv("SOLBENCH_CUDA_FAST_MATH", "0")
    assert not cglu.fast_math_policy(90)
    monkeypatch.setenv("SOLBENCH_CUDA_FAST_MATH", "1")
    assert cglu.fast_math_policy(100)
    monkeypatch.setenv("SOLBENCH_CUDA_FAST_MATH", "maybe")
    with pytest.raises(ValueError, match="SOLBENCH_CUDA_FAST_MATH='maybe': expected auto, 1 or 0"):
        cglu.fast_math_policy(90)


def test_pdl_policy(monkeypatch):
    monkeypatch.delenv("SOLBENCH_CUDA_PDL", raising=False)
    assert cglu.pdl_policy(90) and cglu.pdl_policy(100) and not cglu.pdl_policy(80)
    monkeypatch.setenv("SOLBENCH_CUDA_PDL", "0")
    assert not cglu.pdl_policy(90)
    monkeypatch.setenv("SOLBENCH_CUDA_PDL", "1")
    with pytest.raises(ValueError, match="needs sm_90"):
        cglu.pdl_policy(86)


def test_vector_width_follows_alignment():
    x = torch.empty(4, 2 * 64, dtype=torch.bfloat16)
    out = torch.empty(4, 64, dtype=torch.bfloat16)
    assert cglu._widest_vec(x, out, 64) == 8                                   # 16 bytes
    assert cglu._widest_vec(torch.empty(4, 2 * 12, dtype=torch.bfloat16), torch.empty(4, 12, dtype=torch.bfloat16),
                            12) == 4                                           # d = 12: 8 bytes
    assert cglu._widest_vec(torch.empty(4, 130, dtype=torch.bfloat16)[:, 1:129], out, 64) == 1  # odd offset: scalar
    assert cglu._widest_vec(torch.empty(4, 2 * 64, dtype=torch.float32), torch.empty(4, 64), 64) == 4
    assert cglu.vec_widths(torch.float32) == (4, 2, 1) and cglu.vec_widths(torch.float16) == (8, 4, 2, 1)


def test_params_struct_has_the_kernels_layout():
    # glu.cuh's GluParams: two pointers, four int64, three floats (60 bytes, padded to 64 as in C).
    p = cglu._Params
    assert (p.x.offset, p.out.offset, p.rows.offset, p.out_stride.offset, p.alpha.offset, p.up_shift.offset,
            ctypes.sizeof(p)) == (0, 8, 16, 40, 48, 56, 64)


# ---- the wrappers --------------------------------------------------------------------------------

def test_validation_names_what_is_supported():
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    with pytest.raises(TypeError, match="supported: bfloat16, float16, float32"):
        cglu.glu(x.to(torch.float64))
    with pytest.raises(ValueError, match="must be even"):
        cglu.glu(torch.randn(4, 63, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="unknown activation 'tanh'; supported: silu, gelu, gelu_tanh, relu"):
        cglu.glu(x, "tanh")
    with pytest.raises(ValueError, match="alpha applies to silu only"):
        cglu.glu(x, "gelu", alpha=1.702)
    with pytest.raises(ValueError, match="limit must be a positive finite number"):
        cglu.glu(x, "silu", limit=-1.0)
    with pytest.raises(ValueError, match=r"out has shape \(4, 16\), expected \(4, 32\)"):
        cglu.glu(x, out=torch.empty(4, 16, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="out has dtype"):
        cglu.glu(x, out=torch.empty(4, 32))
    with pytest.raises(ValueError, match="contiguous in its last dimension"):
        cglu.glu(torch.randn(64, 4, dtype=torch.bfloat16).t())
    with pytest.raises(ValueError, match="out overlaps x"):
        cglu.glu(x, out=x[:, :32])


def test_zero_tokens_return_at_once_without_compiling(monkeypatch):
    def no_compile(*a, **k):
        raise AssertionError("0 tokens must not compile or launch")

    monkeypatch.setattr(cglu, "compile_variant", no_compile)
    monkeypatch.setattr(cglu, "_kernels", no_compile)
    for shape in ((0, 64), (2, 0, 64), (3, 0)):
        x = torch.empty(shape, dtype=torch.bfloat16)
        y = cglu.silu_and_mul(x)
        assert y.shape == (*shape[:-1], shape[-1] // 2)
        out = torch.empty(y.shape, dtype=torch.bfloat16)
        assert cglu.glu(x, "gelu", out=out) is out
    cglu.launch_glu(torch.empty(0, 64, dtype=torch.bfloat16), torch.empty(0, 32, dtype=torch.bfloat16), 0, 1.0, None,
                    0.0, False)


@pytest.mark.parametrize("interpret", ["0", "1"])
@pytest.mark.parametrize("name,layout", [("silu", "halves"), ("gelu", "halves"), ("gelu_tanh", "halves"),
                                         ("swiglu", "interleaved"), ("relu", "halves")])
def test_off_cuda_computes_the_reference(name, layout, interpret, monkeypatch):
    # TRITON_INTERPRET=1 sends CPU tensors into the op's body, which has no CUDA to compile for.
    monkeypatch.setenv("TRITON_INTERPRET", interpret)
    spec = get_activation(name, layout=layout)
    big = torch.randn(2, 3, 80, dtype=torch.float32) * 3
    x = big[..., :64].to(torch.bfloat16) if layout == "halves" else big[..., :64]  # a row stride for fp32
    out = torch.full((2, 3, 32), float("nan"), dtype=x.dtype)
    assert cglu.glu(x, spec, out=out) is out
    torch.testing.assert_close(out, reference_glu(x, spec), rtol=0, atol=0)


def test_functional_ops_and_opcheck():
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    args = (0, 1.702, 7.0, True, 1.0, True)
    y = torch.ops.solbench.glu_cuda(x, *args)
    torch.testing.assert_close(y, reference_glu(x, get_activation("swiglu", layout="interleaved")), rtol=0, atol=0)
    utils = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
    torch.library.opcheck(OPS["solbench::glu_cuda.out"].overload, (x, torch.empty(4, 32, dtype=torch.bfloat16), *args),
                          test_utils=utils)
    torch.library.opcheck(OPS["solbench::glu_cuda"].overload, (x, *args), test_utils=utils)


def test_import_solbench_neither_imports_the_bindings_nor_compiles():
    code = textwrap.dedent("""
        import sys, torch, solbench
        import solbench.ops.silu_and_mul.impls
        from solbench.core.spec import impls_for
        for op in ("silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul", "swiglu_oai"):
            impl = impls_for(op)["ours_cuda"]
            assert impl.takes_out and impl.prepare is not None
        support = impls_for("silu_and_mul")["ours_cuda"].available()
        assert torch.cuda.is_available() or (not support and "NVIDIA GPU" in support.reason)
        # (torch itself may import cuda.bindings' driver and runtime modules; NVRTC is ours alone.)
        assert "cuda.bindings.nvrtc" not in sys.modules, "NVRTC imported at import"
        # glu registers torch.ops.solbench.glu_cuda at import (KERNEL_MODULES); the compiler stays out.
        assert "solbench.kernels.cuda.jit" not in sys.modules
        assert hasattr(torch.ops.solbench, "glu_cuda")
    """)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("rows,d,dtype,offset", [(1, 768, torch.bfloat16, 0), (37, 12, torch.float16, 0),
                                                  (5, 1000, torch.float32, 0), (300, 64, torch.bfloat16, 1),
                                                  (3, 4096, torch.bfloat16, 0)])
def test_launch_geometry_covers_every_output_once(rows, d, dtype, offset, monkeypatch):
    # The launch arithmetic, with the driver replaced by a recorder: the grid of (TX, TY) blocks,
    # each thread owning VEC outputs of one row (glu.cuh), must cover every output exactly once.
    import numpy as np

    calls = []

    class Recorder:
        def launch(self, fn, grid, block, stream, params, device, pdl):
            calls.append((fn, grid, block, params, pdl))

    from solbench.kernels.cuda import jit as jit_mod

    monkeypatch.setattr(cglu, "_kernels", lambda x, *a: ({v: f"vec{v}" for v in cglu.vec_widths(x.dtype)},
                                                      cglu._Device(0, 90, True, True), _variant(x.dtype)))
    monkeypatch.setattr(jit_mod, "launcher", lambda: Recorder())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: type("S", (), {"cuda_stream": 7})())
    big = torch.empty(rows, 2 * d + offset + 8, dtype=dtype)
    x2d = big[:, offset:offset + 2 * d]
    out2d = torch.empty(rows, d, dtype=dtype)
    cglu.launch_glu(x2d, out2d, 0, 1.0, None, 0.0, False)
    (fn, grid, block, params, pdl), = calls
    vec = int(fn[3:])
    assert vec == cglu._widest_vec(x2d, out2d, d) and (vec == 1) == (offset % 2 == 1)
    assert block[0] * block[1] == cglu.THREADS and block[2] == 1 and grid[2] == 1
    assert (params.x, params.out, params.rows, params.d) == (x2d.data_ptr(), out2d.data_ptr(), rows, d)
    assert (params.x_stride, params.out_stride) == (x2d.stride(0), d)
    bx, by, tx, ty = np.meshgrid(np.arange(grid[0]), np.arange(grid[1]), np.arange(block[0]), np.arange(block[1]),
                                 indexing="ij")
    row, col = (bx * block[1] + ty).ravel(), ((by * block[0] + tx) * vec).ravel()
    live = (row < rows) & (col < d)
    hits = np.zeros((rows, d), dtype=np.int64)
    for i in range(vec):
        np.add.at(hits, (row[live], col[live] + i), 1)
    assert (hits == 1).all()


@needs_nvrtc
def test_load_and_launch_through_a_recording_driver(tmp_path, monkeypatch):
    # The driver calls with cuda-bindings' real structures and a recorder in place of libcuda: the
    # module is loaded in the device's primary context, pushed only when another one is current
    # (and popped again), and a PDL launch carries the programmatic-serialization attribute.
    import ctypes as C

    from cuda.bindings import driver as real

    calls = []
    ok = real.CUresult.CUDA_SUCCESS

    class Driver:
        CUresult, CUstream = real.CUresult, real.CUstream
        CUlaunchConfig, CUlaunchAttribute, CUlaunchAttributeID = (real.CUlaunchConfig, real.CUlaunchAttribute,
                                                                  real.CUlaunchAttributeID)
        current = 0

        def cuDeviceGet(self, i):
            return ok, i

        def cuDevicePrimaryCtxRetain(self, dev):
            return ok, real.CUcontext(0x1000 + dev)

        def cuCtxGetCurrent(self):
            return ok, real.CUcontext(self.current)

        def cuCtxPushCurrent(self, ctx):
            calls.append(("push", int(ctx)))
            return (ok,)

        def cuCtxPopCurrent(self):
            calls.append(("pop",))
            return ok, None

        def cuModuleLoadData(self, code):
            calls.append(("load", bytes(code[:4])))
            return ok, "module"

        def cuModuleGetFunction(self, module, sym):
            return ok, sym.decode()

        def cuLaunchKernelEx(self, cfg, fn, params, extra):
            argv = C.cast(params, C.POINTER(C.c_void_p))
            sent = C.cast(argv[0], C.POINTER(cglu._Params)).contents
            calls.append(("launch", fn, (cfg.gridDimX, cfg.gridDimY, cfg.blockDimX, cfg.blockDimY),
                          int(cfg.hStream), cfg.numAttrs, [a.id for a in cfg.attrs][:cfg.numAttrs],
                          sent.rows, sent.d, sent.alpha))
            return (ok,)

    drv = Driver()
    monkeypatch.setattr(jit, "_driver", lambda: drv)
    monkeypatch.setattr(jit, "_contexts", {})
    jit.launcher.cache_clear()
    try:
        compiled = cglu.compile_variant(_variant(), "cubin", tmp_path)
        loaded = jit.load(compiled, 1)           # nothing current on this thread: push, then pop
        assert calls[:3] == [("push", 0x1001), ("load", b"\x7fELF"), ("pop",)]
        assert loaded.functions == compiled.lowered
        calls.clear()
        drv.current = 0x1001                     # torch's context already current: no push
        params = cglu._Params(16, 32, 5, 768, 1536, 768, 1.702, 0.0, 0.0)
        fn = loaded.functions[_variant().names[0]]
        jit.launcher().launch(fn, (3, 1, 1), (128, 2, 1), 99, params, 1, pdl=True)
        jit.launcher().launch(fn, (3, 1, 1), (128, 2, 1), 99, params, 1, pdl=False)
        pdl_id = real.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
        assert calls == [("launch", fn, (3, 1, 128, 2), 99, 1, [pdl_id], 5, 768, pytest.approx(1.702)),
                         ("launch", fn, (3, 1, 128, 2), 99, 0, [], 5, 768, pytest.approx(1.702))]
    finally:
        jit.launcher.cache_clear()
