"""Block-scaled fp8 GEMM in CUDA C++ (block_fp8.cu) for Hopper (sm_90a), compiled through NVRTC at
first use: the second backend of :func:`solbench.kernels.gemm.block_scaled_mm`, same contract.

``out[m, n] = sum_kb a_scales[m, kb] * b_scales[n // 128, kb] * (a[m, block kb] . b[n, block kb])``
with ``a [M, K]`` / ``b [N, K]`` float8_e4m3fn, 1 x 128 activation and 128 x 128 weight scale
blocks (fp32, any strides), ``out [M, N]`` fp32 or bf16. What the kernel takes (anything else is
a ValueError naming it, see :func:`unsupported_reason`): scale groups of 128 x 128; ``a`` and
``b`` rows 16-byte aligned (TMA); N even and ``out`` rows aligned to two elements. It runs on
sm_90 only (warpgroup MMAs and TMA; the sources compile for sm_90a).

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
from dataclasses import dataclass

import torch

from solbench.kernels.cuda import lazy_kernels
from solbench.kernels.common import (as_rows, check_disjoint, device_index, env_replaced, functional_op, kernel_op,
                                     sm_count_of)

WHAT = "block_scaled_mm_cuda"
GROUP = (128, 128)
OUT_DTYPES = (torch.float32, torch.bfloat16)
_OUT_TAGS = {torch.float32: "fp32", torch.bfloat16: "bf16"}
#: Shared-memory stages of 32 KB (128 x 128 bytes of a and of b); loads run STAGES - 2 blocks ahead.
STAGES = 6
THREADS = 256     # two warpgroups
WS_THREADS = 384  # and, warp-specialized, a producer warpgroup
TILE = 128
# stages, their full and (WS) empty barriers, 1 KB alignment slack
SHARED_BYTES = STAGES * 2 * TILE * TILE + 2 * STAGES * 8 + 1024
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


@dataclass(frozen=True)
class CudaGemmOptions:
    """Compile-time variants. ``ws``: warp-specialized (a producer warpgroup and empty barriers,
    so the two consumer warpgroups never meet at a CTA barrier); off until a GPU A/B
    (``SOLBENCH_BLOCK_FP8_CUDA=ws=1``)."""

    ws: bool = False

    def __post_init__(self):
        if self.ws not in (0, 1):
            raise ValueError(f"{WHAT}: ws is 0 or 1 (got {self.ws!r})")


OPTIONS_ENV = "SOLBENCH_BLOCK_FP8_CUDA"


def kernel_name(out_dtype, ws: bool = False) -> str:
    return f"solbench::fp8gemm::block_fp8_gemm<{STAGES}, solbench::{_OUT_TAGS[out_dtype]}, {'true' if ws else 'false'}>"


_kernel_set = lazy_kernels(WHAT, "block_fp8.cu", {(d, ws): kernel_name(d, ws) for d in OUT_DTYPES for ws in (False, True)},
                           SHARED_BYTES)


def compile_kernels(output: str = "cubin", cache_dir=None):
    """Compile (or fetch from the disk cache) both output variants, plain and warp-specialized;
    no GPU needed."""
    return _kernel_set().compile(output, cache_dir)


def prepare(device=None) -> dict:
    """Compile and load the kernels (first use) and say how (``jit_cache`` miss / disk / memory)."""
    return _kernel_set().prepare(device)


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


def _tensor_map(into, t: torch.Tensor) -> None:
    """A 2-D TMA descriptor of the fp8 matrix ``t [rows, K]``, into the params field ``into``:
    boxes of 128 rows x 128 bytes."""
    from solbench.kernels.cuda import jit

    rows, k = t.shape
    stride = t.stride(0) if rows > 1 else max(16, -(-k // 16) * 16)  # one row: any aligned stride
    jit.tensor_map(into, t.data_ptr(), "UINT8", [k, rows], [stride], [TILE, TILE], WHAT)


def launch(a2, b, sa, sb, out2) -> None:
    """Launch on 2-D views (validated, :func:`unsupported_reason` None) on torch's current stream."""
    from solbench.kernels.cuda import jit
    from solbench.kernels.gemm.block_fp8 import settled_without_a_kernel

    if settled_without_a_kernel(a2, b, out2):
        return
    m, k = a2.shape
    n = b.shape[0]
    device = device_index(a2.device)
    fns, _ = _kernel_set().get(device)
    params = _Params()
    _tensor_map(params.map_a, a2)
    _tensor_map(params.map_b, b)
    params.sa, params.sb, params.out = sa.data_ptr(), sb.data_ptr(), out2.data_ptr()
    params.ldo = out2.stride(0)
    params.sa_m, params.sa_k = sa.stride(0), sa.stride(1)
    params.sb_n, params.sb_k = sb.stride(0), sb.stride(1)
    params.M, params.N, params.K, params.group_m = m, n, k, GROUP_M
    tiles = -(-m // TILE) * -(-n // TILE)
    stream = torch.cuda.current_stream(a2.device).cuda_stream
    ws = bool(env_replaced(OPTIONS_ENV, CudaGemmOptions()).ws)
    jit.launcher().launch(fns[(out2.dtype, ws)], (min(tiles, sm_count_of(device)), 1, 1),
                          (WS_THREADS if ws else THREADS, 1, 1), stream, params, device, False, SHARED_BYTES)


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
