"""Block-scaled fp8 GEMM in CUDA C++ (block_fp8.cu) for Hopper (sm_90a), compiled through NVRTC at
first use: the second backend of :func:`solbench.kernels.gemm.block_scaled_mm`, same contract.

``out[m, n] = sum_kb a_scales[m, kb] * b_scales[n // 128, kb] * (a[m, block kb] . b[n, block kb])``
with ``a [M, K]`` / ``b [N, K]`` float8_e4m3fn, 1 x 128 activation and 128 x 128 weight scale
blocks (fp32, any strides), ``out [M, N]`` fp32 or bf16. What the kernel takes (anything else is
a ValueError naming it, see :func:`unsupported_reason`): scale groups of 128 x 128; ``a`` and
``b`` rows 16-byte aligned (TMA); N even and ``out`` rows aligned to two elements. It runs on
sm_90 only (warpgroup MMAs and TMA), as :data:`ARCH`.

Why a second backend: Triton makes each K block's tensor-core product synchronous (its fp32
partial must be scaled before it joins the sum), so the rescale never overlaps the products;
the CUDA kernel keeps two partials a warpgroup and scales one while the next block's products
run (the .cu's header has the design).

Custom ops ``torch.ops.solbench.block_scaled_mm_cuda`` / ``block_scaled_mm_cuda.out`` with fake
implementations; the launch goes to torch's current stream (CUDA graphs capture it), tensor maps
are rebuilt per call from the operands (host work only, no allocation). Off CUDA the op computes
with torch.
"""
from __future__ import annotations

import ctypes
import threading
import time

import torch

from solbench.kernels.common import as_rows, check_disjoint, functional_op, kernel_op

WHAT = "block_scaled_mm_cuda"
#: The arch-specific target: wgmma and TMA exist on sm_90a only.
ARCH = "90a"
GROUP = (128, 128)
OUT_DTYPES = (torch.float32, torch.bfloat16)
_OUT_TAGS = {torch.float32: "fp32", torch.bfloat16: "bf16"}
#: Shared-memory stages of 32 KB (128 x 128 bytes of a and of b); loads run STAGES - 2 blocks ahead.
STAGES = 6
THREADS = 256
TILE = 128
SHARED_BYTES = STAGES * 2 * TILE * TILE + STAGES * 8 + 1024  # stages, their barriers, 1 KB alignment slack
#: Row tiles that share a column tile in the grouped order (as the Triton kernel's GROUP_M).
GROUP_M = 8


class _Params(ctypes.Structure):
    """The kernel's fp8gemm::Params, field for field: two 128-byte tensor maps, then the rest,
    padded to the struct's 64-byte alignment."""

    _fields_ = [("map_a", ctypes.c_uint64 * 16), ("map_b", ctypes.c_uint64 * 16),
                ("sa", ctypes.c_void_p), ("sb", ctypes.c_void_p), ("out", ctypes.c_void_p),
                ("ldo", ctypes.c_int64), ("sa_m", ctypes.c_int64), ("sa_k", ctypes.c_int64),
                ("sb_n", ctypes.c_int64), ("sb_k", ctypes.c_int64),
                ("M", ctypes.c_int32), ("N", ctypes.c_int32), ("K", ctypes.c_int32), ("group_m", ctypes.c_int32),
                ("_pad", ctypes.c_uint8 * 48)]


assert ctypes.sizeof(_Params) == 384


def kernel_name(out_dtype) -> str:
    return f"solbench::fp8gemm::block_fp8_gemm<{STAGES}, solbench::{_OUT_TAGS[out_dtype]}>"


def compile_kernels(output: str = "cubin", cache_dir=None):
    """Compile (or fetch from the disk cache) both output variants; no GPU needed."""
    from solbench.kernels.cuda import jit

    return jit.compile_source("block_fp8.cu", [kernel_name(d) for d in OUT_DTYPES], ARCH, (), output, cache_dir)


def unsupported_reason(a2, b, sa, sb, out2, group_n: int, group_k: int) -> str | None:
    """Why these operands cannot run on the CUDA kernel (None when they can). ``a2 [M, K]``,
    ``b [N, K]``, ``out2 [M, N]`` are the 2-D views; shapes and dtypes are validated before."""
    if (group_n, group_k) != GROUP:
        return f"scale groups must be {GROUP[0]} x {GROUP[1]} (got {group_n} x {group_k})"
    if out2.dtype not in OUT_DTYPES:
        return f"out must be fp32 or bf16 (got {out2.dtype})"
    for name, t in (("a", a2), ("b", b)):
        if t.data_ptr() % 16 or (t.shape[0] > 1 and t.stride(0) % 16):
            return f"{name}'s rows must be 16-byte aligned for TMA (pointer {t.data_ptr() % 16} mod 16, stride {t.stride(0)})"
    n = b.shape[0]
    if n % 2 or out2.data_ptr() % (2 * out2.element_size()) or (out2.shape[0] > 1 and out2.stride(0) % 2):
        return "N and out's row stride must be even, out aligned to two elements (pairs are stored together)"
    if max(a2.shape[0], n, a2.shape[1]) >= 2**31:
        return "M, N and K must each be below 2^31"
    return None


# ---- per-device state ---------------------------------------------------------------------------

_loaded: dict[int, tuple[dict, dict]] = {}  # device -> ({out dtype: CUfunction}, facts)
_lock = threading.Lock()


def _kernels(device: int) -> tuple[dict, dict]:
    hit = _loaded.get(device)
    if hit is not None:
        return hit
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) != (9, 0):
        raise RuntimeError(f"{WHAT}: the kernel is built for sm_90a (H100 / H200), this GPU is sm_{major}{minor}")
    with _lock:
        if device not in _loaded:
            from solbench.kernels.cuda import jit

            t0 = time.perf_counter()
            compiled = compile_kernels()
            loaded = jit.load(compiled, device)
            fns = {d: loaded.functions[kernel_name(d)] for d in OUT_DTYPES}
            for fn in fns.values():
                jit.allow_shared(fn, SHARED_BYTES, device)
            facts = {"jit_cache": compiled.cache, "jit_compile_s": round(compiled.seconds, 4),
                     "jit_first_use_s": round(time.perf_counter() - t0, 4), "arch": f"sm_{ARCH}",
                     "nvrtc": ".".join(map(str, jit.nvrtc_version()))}
            _loaded[device] = (fns, facts)
    return _loaded[device]


def prepare(device=None) -> dict:
    """Compile and load the kernels (first use) and say how (``jit_cache`` miss / disk / memory)."""
    index = torch.device(device if device is not None else "cuda").index
    index = torch.cuda.current_device() if index is None else index
    before = index in _loaded
    t0 = time.perf_counter()
    facts = dict(_kernels(index)[1])
    if before:
        facts.update(jit_cache="memory", jit_first_use_s=round(time.perf_counter() - t0, 6))
    return facts


def _tensor_map(t: torch.Tensor):
    """A 2-D TMA descriptor of the fp8 matrix ``t [rows, K]``: boxes of 128 rows x 128 bytes,
    128-byte swizzle (the layout the kernel's wgmma descriptors read), zeros out of range."""
    from solbench.kernels.cuda import jit

    drv = jit._driver()
    rows, k = t.shape
    err, tmap = drv.cuTensorMapEncodeTiled(
        drv.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, t.data_ptr(), [k, rows],
        [t.stride(0) if rows > 1 else max(16, -(-k // 16) * 16)], [TILE, TILE], [1, 1],
        drv.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE, drv.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B,
        drv.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
        drv.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
    if err != drv.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"{WHAT}: cuTensorMapEncodeTiled failed ({err.name}) for a [{rows}, {k}] operand, "
                           f"row stride {t.stride(0)}")
    return tmap


def launch(a2, b, sa, sb, out2) -> None:
    """Launch on 2-D views (validated, :func:`unsupported_reason` None) on torch's current stream."""
    from solbench.kernels.cuda import jit

    m, k = a2.shape
    n = b.shape[0]
    if m == 0 or n == 0:
        return
    if k == 0:
        out2.zero_()
        return
    device = a2.device.index if a2.device.index is not None else torch.cuda.current_device()
    fns, _ = _kernels(device)
    params = _Params()
    for field, t in (("map_a", a2), ("map_b", b)):
        ctypes.memmove(ctypes.addressof(getattr(params, field)), _tensor_map(t).getPtr(), 128)
    params.sa, params.sb, params.out = sa.data_ptr(), sb.data_ptr(), out2.data_ptr()
    params.ldo = out2.stride(0)
    params.sa_m, params.sa_k = sa.stride(0), sa.stride(1)
    params.sb_n, params.sb_k = sb.stride(0), sb.stride(1)
    params.M, params.N, params.K, params.group_m = m, n, k, GROUP_M
    tiles = -(-m // TILE) * -(-n // TILE)
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    stream = torch.cuda.current_stream(a2.device).cuda_stream
    jit.launcher().launch(fns[out2.dtype], (min(tiles, sms), 1, 1), (THREADS, 1, 1), stream, params, device,
                          False, SHARED_BYTES)


# ---- custom ops ---------------------------------------------------------------------------------

def _eager(a, b, a_scales, b_scales, out) -> None:
    from solbench.kernels.gemm.block_fp8 import _eager as torch_block_scaled_mm

    torch_block_scaled_mm(a, b, a_scales, b_scales, out, GROUP[0], GROUP[1], [])


@kernel_op("solbench::block_scaled_mm_cuda.out", mutates_args=("out",), eager=_eager)
def _block_scaled_mm_cuda_op(a: torch.Tensor, b: torch.Tensor, a_scales: torch.Tensor, b_scales: torch.Tensor,
                             out: torch.Tensor) -> None:
    if not a.is_cuda:  # the CPU under TRITON_INTERPRET=1 reaches here: no CUDA to compile for
        return _eager(a, b, a_scales, b_scales, out)
    check_disjoint(WHAT, (("out", out),), (("a", a), ("b", b), ("a_scales", a_scales), ("b_scales", b_scales)))
    launch(as_rows(a, WHAT, "a"), b, a_scales.reshape(-1, a_scales.shape[-1]), b_scales, as_rows(out, WHAT, "out"))


@_block_scaled_mm_cuda_op.register_fake
def _block_scaled_mm_cuda_fake(a, b, a_scales, b_scales, out) -> None:
    return None


functional_op("solbench::block_scaled_mm_cuda", _block_scaled_mm_cuda_op,
              lambda a, b, sa, sb: (a.new_empty((*a.shape[:-1], b.shape[0]), dtype=torch.float32),))
