"""The CUDA block-fp8 GEMM (kernels/cuda/block_fp8.cu) without a GPU: it compiles through NVRTC for
sm_90a with the design's SASS (tensor-map loads, asynchronous warpgroup MMAs that overlap the
previous block's rescale, no spills), the host's parameter struct matches the kernel's, the
backend's limits are ValueErrors that say why, and off CUDA the ops compute the reference. The
GPU side (every catalog shape, tails, strides, graphs) is tests/ops/test_block_fp8_cuda_gpu.py."""
from collections import Counter

import pytest
import torch

from solbench.core import fp8_blocks
from solbench.kernels.cuda import block_fp8 as cfp8
from solbench.kernels.cuda import jit
from solbench.kernels.gemm import block_scaled_mm

NO_NVRTC = jit.nvrtc_unavailable_reason()
needs_nvrtc = pytest.mark.skipif(NO_NVRTC is not None, reason=f"no NVRTC here: {NO_NVRTC}")


@needs_nvrtc
def test_compiles_for_sm90a_with_async_mmas_tma_and_no_spills(tmp_path):
    from solbench import sass

    compiled = cfp8.compile_kernels("cubin", tmp_path)
    assert compiled.code[:4] == b"\x7fELF" and len(compiled.lowered) == 4  # fp32 / bf16 out, plain / WS
    for name, sym in compiled.lowered.items():  # name expression -> mangled symbol
        ws = name.endswith("true>")
        instructions, res = sass.disassemble(compiled.code, sym)
        ops = Counter(map(sass.opcode, instructions))
        assert res["local"] == 0 and res["stack"] == 0, res  # no spills
        assert res["reg"] <= 255
        assert ops["QGMMA.64x128x32.F32.E4M3.E4M3"] >= 8  # fp8 warpgroup MMAs, 4 a block
        assert ops["UTMALDG.2D"] >= 2  # operands through tensor maps
        waits = Counter(i for i in instructions if i.startswith("WARPGROUP.DEPBAR"))
        # The rescale of block i-1 runs while block i's products are in flight: the loop waits with
        # one group outstanding; only the last block of a CTA drains to zero.
        assert waits["WARPGROUP.DEPBAR.LE gsb0, 0x1"] >= 3, waits
        assert waits["WARPGROUP.DEPBAR.LE gsb0, 0x0"] <= 2, waits
        # WS: the producer warpgroup gives its registers to the consumers, which meet at no CTA barrier
        # after the setup (one BAR.SYNC)
        assert sum(n for op, n in ops.items() if op.startswith("USETMAXREG")) == (2 if ws else 0), ops
        if ws:
            assert ops["BAR.SYNC.DEFER_BLOCKING"] + ops["BAR.SYNC"] == 1, ops
            # setmaxnreg moves registers within the CTA's launch allocation: the consumers' 240
            # and the producer's 24 (sm90.cuh) must fit in 384 threads at the compiled count, or
            # the consumers' increase waits forever
            assert res["reg"] * 384 >= 256 * 240 + 128 * 24, res


def test_params_struct_matches_the_kernel():
    # the kernel's struct, field for field (block_fp8.cu asserts its size)
    P = cfp8._Params
    assert torch.Size([P.map_b.offset, P.sa.offset, P.ldo.offset, P.M.offset, P.group_m.offset]) == \
        torch.Size([128, 256, 280, 320, 332])
    assert cfp8.SHARED_BYTES <= 227 * 1024


def _operands(m, n, k, seed=0, device="cpu"):
    g = torch.Generator(device=device).manual_seed(seed)
    if m == 0:  # 0 tokens
        a, sa = torch.empty(0, k, dtype=torch.float8_e4m3fn, device=device), torch.empty(0, -(-k // 128), device=device)
    else:
        a, sa = fp8_blocks.random_blocks((m, k), (1, 128), device, g)
    b, sb = fp8_blocks.random_blocks((n, k), (128, 128), device, g, scale=k ** -0.5)
    return a, b, sa, sb


def _reference(a, b, sa, sb):
    return fp8_blocks.dequantize(a, sa, (1, 128)) @ fp8_blocks.dequantize(b, sb, (128, 128)).T


def test_unsupported_calls_say_why():
    a, b, sa, sb = _operands(64, 256, 512)
    out = torch.empty(64, 256)
    assert cfp8.unsupported_reason(a, b, sa, sb, out, 128, 128) is None
    assert "128 x 128" in cfp8.unsupported_reason(a, b, sa, sb, out, 128, 64)
    assert "fp32 or bf16" in cfp8.unsupported_reason(a, b, sa, sb, out.half(), 128, 128)
    wide = torch.empty(64, 520, dtype=torch.float8_e4m3fn)
    assert "16-byte aligned" in cfp8.unsupported_reason(wide[:, 4:516], b, sa, sb, out, 128, 128)
    odd = torch.empty(64, 255)
    b_odd = b[:255]
    assert "even" in cfp8.unsupported_reason(a, b_odd, sa, sb[:2], odd, 128, 128)


def test_public_backend_validates_and_names_the_reason():
    a, b, sa, sb = _operands(8, 256, 256)
    with pytest.raises(ValueError, match="backend must be one of"):
        block_scaled_mm(a, b, sa, sb, (128, 128), backend="cutlass")
    from solbench.kernels.gemm.block_fp8 import BlockFp8Options

    with pytest.raises(ValueError, match="takes none"):
        block_scaled_mm(a, b, sa, sb, (128, 128), backend="cuda", options=BlockFp8Options())
    g = torch.Generator().manual_seed(1)
    b64, sb64 = fp8_blocks.random_blocks((256, 256), (128, 64), "cpu", g)
    _, sa64 = fp8_blocks.random_blocks((8, 256), (1, 64), "cpu", g)
    with pytest.raises(ValueError, match="cuda backend cannot run this call: scale groups"):
        block_scaled_mm(a, b64, sa64, sb64, (128, 64), backend="cuda")
    # auto falls back to Triton where the CUDA kernel cannot run (here: 128 x 64 groups, no GPU)
    torch.testing.assert_close(block_scaled_mm(a, b64, sa64, sb64, (128, 64), backend="auto"),
                               block_scaled_mm(a, b64, sa64, sb64, (128, 64)))


@pytest.mark.parametrize("m,n,k,out_dtype", [(5, 256, 384, torch.float32), (130, 384, 256, torch.bfloat16),
                                             (0, 256, 256, torch.float32)])
def test_off_cuda_the_op_computes_the_reference(m, n, k, out_dtype):
    a, b, sa, sb = _operands(m, n, k)
    got = block_scaled_mm(a, b, sa, sb, (128, 128), out_dtype=out_dtype, backend="cuda")
    assert got.shape == (m, n) and got.dtype == out_dtype
    if m:
        ref = _reference(a, b, sa, sb)
        assert float((got.float() - ref).norm() / ref.norm()) < (1e-5 if out_dtype == torch.float32 else 1e-2)
    # the functional custom op, as torch.compile traces it
    got2 = torch.ops.solbench.block_scaled_mm_cuda(a, b, sa, sb)
    assert got2.shape == (m, n) and got2.dtype == torch.float32


def test_import_compiles_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(jit, "compile_source", lambda *a, **k: calls.append(a))
    a, b, sa, sb = _operands(4, 256, 256)
    block_scaled_mm(a, b, sa, sb, (128, 128), backend="cuda")  # CPU: the torch formulation
    assert calls == []


@pytest.mark.skipif(NO_NVRTC is not None, reason="no cuda-bindings here")
def test_tensor_map_arguments_are_the_types_the_binding_takes():
    # The binding rejects plain ints in its array arguments (TypeError before any driver call);
    # without a driver the call then fails to load libcuda, with a GPU it encodes or says why.
    from cuda.bindings import driver as drv

    for dtype, dims, strides, box in (("UINT8", [2048, 4096], [2048], [128, 128]),
                                      ("BFLOAT16", [128, 32, 6294], [256, 8192], [64, 8, 16])):
        args = jit.tensor_map_args(drv, 1 << 20, dtype, dims, strides, box)
        try:
            drv.cuTensorMapEncodeTiled(*args)
        except TypeError as e:
            pytest.fail(f"the binding refused the arguments: {e}")
        except Exception:  # noqa: BLE001 -- no driver library on a CPU machine
            pass
