"""The GLU family in CUDA C++ (glu.cuh), compiled through NVRTC at first use.

``out[..., d] = act(gate) * (up + up_shift)`` over ``x[..., 2d]``, optionally clamped by
``limit``; ``[gate | up]`` halves or interleaved ``[g0, u0, g1, u1, ...]``; bf16, fp16, fp32;
fp32 math, one rounding. The same contract as ``solbench.glu`` (the Triton kernel): this is a
second, independent implementation, with programmatic dependent launch on sm_90+.

Custom ops ``torch.ops.solbench.glu_cuda`` / ``glu_cuda.out`` (fake implementations, so
``torch.compile`` traces them; the launch goes to torch's current stream, so CUDA graphs capture
it). Off CUDA they compute with torch. Public functions: :func:`glu`, :func:`silu_and_mul`,
:func:`gelu_and_mul`, :func:`gelu_tanh_and_mul`, :func:`prepare`.

Policies (environment variables, read when a kernel is first needed for a device):

* ``SOLBENCH_CUDA_FAST_MATH`` = ``auto`` (default) | ``1`` | ``0``: ``--use_fast_math``. Auto: on
  for sm_80 and sm_90 (approximate exp and reciprocal, well inside a 16-bit output's rounding),
  off on sm_100+ and ROCm, as SGLang's JIT activation decides.
* ``SOLBENCH_CUDA_PDL`` = ``auto`` (default) | ``1`` | ``0``: programmatic dependent launch. Auto: on
  for sm_90+, where the hardware has it.
"""
from __future__ import annotations

import ctypes
import math
import os
import threading
import time
from dataclasses import dataclass

import torch

from solbench.kernels.common import (as_rows, check_disjoint, check_dtype, check_out, device_index, functional_op,
                                     kernel_op)

#: Activation ids, as in the kernel's GluAct (and the Triton kernel's ACT_MODES).
ACTIVATIONS = {"silu": 0, "gelu": 1, "gelu_tanh": 2, "relu": 3}
SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
_TAGS = {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}
#: Oldest architecture the sources support (bf16 conversion instructions).
MIN_ARCH = 80
#: Threads per block: 8 warps, each thread moving 16 bytes of output per launch slot.
THREADS = 256


class _Params(ctypes.Structure):
    """The kernel's GluParams, field for field (glu.cuh)."""

    _fields_ = [("x", ctypes.c_void_p), ("out", ctypes.c_void_p), ("rows", ctypes.c_int64),
                ("d", ctypes.c_int64), ("x_stride", ctypes.c_int64), ("out_stride", ctypes.c_int64),
                ("alpha", ctypes.c_float), ("limit", ctypes.c_float), ("up_shift", ctypes.c_float)]


# ---- policies ---------------------------------------------------------------------------------

def _tristate(env: str) -> bool | None:
    value = (os.environ.get(env) or "auto").strip().lower()
    if value == "auto":
        return None
    if value in ("1", "on", "true"):
        return True
    if value in ("0", "off", "false"):
        return False
    raise ValueError(f"{env}={value!r}: expected auto, 1 or 0")


def fast_math_policy(arch: int, rocm: bool = False) -> bool:
    """``--use_fast_math`` for ``sm_<arch>``: ``SOLBENCH_CUDA_FAST_MATH`` if set, else on for
    sm_80 to sm_9x and off on sm_100+ and ROCm (where SGLang measured exact expf to matter)."""
    forced = _tristate("SOLBENCH_CUDA_FAST_MATH")
    if forced is not None:
        return forced
    return not rocm and 80 <= arch < 100


def pdl_policy(arch: int) -> bool:
    """Programmatic dependent launch for ``sm_<arch>``: ``SOLBENCH_CUDA_PDL`` if set, else on
    for sm_90+. Forcing it on an older GPU is an error."""
    forced = _tristate("SOLBENCH_CUDA_PDL")
    if forced and arch < 90:
        raise ValueError(f"SOLBENCH_CUDA_PDL=1: programmatic dependent launch needs sm_90+, this GPU is sm_{arch}")
    return arch >= 90 if forced is None else forced


def vec_widths(dtype) -> tuple[int, ...]:
    """Elements per load / store the kernels are compiled for, widest (16 bytes) first."""
    widths, v = [], 16 // dtype.itemsize
    while v >= 1:
        widths.append(v)
        v //= 2
    return tuple(widths)


def kernel_name(dtype, act: int, interleaved: bool, has_limit: bool, vec: int, pdl: bool) -> str:
    """The NVRTC name expression of one instantiation of glu.cuh's kernel template."""
    b = lambda v: "true" if v else "false"  # noqa: E731
    return f"solbench::glu_kernel<solbench::{_TAGS[dtype]}, {act}, {b(interleaved)}, {b(has_limit)}, {vec}, {b(pdl)}>"


@dataclass(frozen=True)
class Variant:
    """Everything that selects compiled code: one program per variant holds all its vector widths."""

    dtype: torch.dtype
    act: int
    interleaved: bool
    has_limit: bool
    arch: int
    pdl: bool
    fast_math: bool

    @property
    def names(self) -> list[str]:
        return [kernel_name(self.dtype, self.act, self.interleaved, self.has_limit, v, self.pdl)
                for v in vec_widths(self.dtype)]

    @property
    def options(self) -> list[str]:
        return ["--use_fast_math"] if self.fast_math else []


def compile_variant(variant: Variant, output: str = "cubin", cache_dir=None):
    """Compile (or fetch from the disk cache) one variant's kernels; no GPU needed."""
    from solbench.kernels.cuda import jit

    return jit.compile_source("glu.cu", variant.names, variant.arch, variant.options, output, cache_dir)


# ---- per-device state ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Device:
    index: int
    arch: int
    pdl: bool
    fast_math: bool


_devices: dict[int, _Device] = {}
_loaded: dict[tuple, tuple] = {}   # (device, Variant) -> ({vec: CUfunction}, facts)
_fast: dict[tuple, tuple] = {}     # by a plain tuple, what each launch looks up -> (functions, device, variant)
_lock = threading.Lock()


def _device(index: int) -> _Device:
    dev = _devices.get(index)
    if dev is None:
        if torch.version.hip:
            raise RuntimeError("glu_cuda: the JIT CUDA backend runs on NVIDIA GPUs only (this torch is ROCm)")
        major, minor = torch.cuda.get_device_capability(index)
        arch = 10 * major + minor
        if arch < MIN_ARCH:
            raise RuntimeError(f"glu_cuda: sm_{arch} is not supported; the kernels need sm_{MIN_ARCH}+")
        dev = _devices[index] = _Device(index, arch, pdl_policy(arch), fast_math_policy(arch))
    return dev


def _kernels(x: torch.Tensor, act: int, interleaved: bool, has_limit: bool, pdl: bool | None = None):
    """``({vec: CUfunction}, device, variant)`` for a launch on ``x``'s device: compiled (or read
    from the disk cache) and loaded at the first call."""
    index = device_index(x.device)
    fast_key = (index, x.dtype, act, interleaved, has_limit, pdl)
    hit = _fast.get(fast_key)
    if hit is not None:
        return hit
    dev = _device(index)
    if pdl and dev.arch < 90:
        raise ValueError(f"glu_cuda: programmatic dependent launch needs sm_90+, this GPU is sm_{dev.arch}")
    variant = Variant(x.dtype, act, interleaved, has_limit, dev.arch, dev.pdl if pdl is None else pdl, dev.fast_math)
    key = (dev.index, variant)
    with _lock:
        if key not in _loaded:
            from solbench.kernels.cuda import jit

            t0 = time.perf_counter()
            compiled = compile_variant(variant)
            loaded = jit.load(compiled, dev.index)
            fns = {v: loaded.functions[n] for v, n in zip(vec_widths(x.dtype), variant.names)}
            facts = {"jit_cache": compiled.cache, "jit_compile_s": round(compiled.seconds, 4),
                     "jit_load_s": round(loaded.load_s, 4), "jit_first_use_s": round(time.perf_counter() - t0, 4),
                     "arch": f"sm_{dev.arch}", "fast_math": variant.fast_math, "pdl": variant.pdl,
                     "nvrtc": ".".join(map(str, jit.nvrtc_version()))}
            _loaded[key] = (fns, facts)
        hit = _fast[fast_key] = (_loaded[key][0], dev, variant)
    return hit


def reset() -> None:
    """Forget the devices' policies and the loaded kernels (the disk cache stays): the next call
    reads ``SOLBENCH_CUDA_FAST_MATH`` / ``SOLBENCH_CUDA_PDL`` again."""
    with _lock:
        _devices.clear()
        _loaded.clear()
        _fast.clear()


def prepare(dtype, activation="silu", interleaved: bool = False, has_limit: bool = False, device=None) -> dict:
    """Compile and load the kernels a call would use (first use), and say how: ``jit_cache``
    (``miss``: compiled now; ``disk``: read from the disk cache; ``memory``: already loaded in
    this process), the seconds taken, the arch, and the fast-math and PDL choices."""
    probe = torch.empty(0, dtype=dtype, device=torch.device(device if device is not None else "cuda"))
    act = ACTIVATIONS[activation] if isinstance(activation, str) else int(activation)
    loaded_before = len(_loaded)
    t0 = time.perf_counter()
    _, dev, variant = _kernels(probe, act, interleaved, has_limit)
    facts = dict(_loaded[(dev.index, variant)][1])
    if len(_loaded) == loaded_before:
        facts.update(jit_cache="memory", jit_first_use_s=round(time.perf_counter() - t0, 6))
    return facts


# ---- launch -------------------------------------------------------------------------------------

def _widest_vec(x2d: torch.Tensor, out2d: torch.Tensor, d: int) -> int:
    """The widest compiled width whose loads and stores are all aligned: it must divide d and both
    row strides, and the base pointers must be aligned to its bytes."""
    size = x2d.element_size()
    for vec in vec_widths(x2d.dtype):
        nbytes = vec * size
        if (d % vec == 0 and x2d.stride(0) % vec == 0 and out2d.stride(0) % vec == 0
                and x2d.data_ptr() % nbytes == 0 and out2d.data_ptr() % nbytes == 0):
            return vec
    return 1


def launch_glu(x2d: torch.Tensor, out2d: torch.Tensor, act: int, alpha: float, limit: float | None,
               up_shift: float, interleaved: bool, pdl: bool | None = None) -> None:
    """Launch on rows views ``x2d [rows, 2d]`` / ``out2d [rows, d]`` (last dims contiguous) on
    torch's current stream. ``pdl`` None: the device's policy."""
    from solbench.kernels.cuda import jit

    rows, d = out2d.shape
    if rows == 0 or d == 0:
        return
    fns, dev, variant = _kernels(x2d, act, interleaved, limit is not None, pdl)
    vec = _widest_vec(x2d, out2d, d)
    nvec = -(-d // vec)
    tx = min(THREADS, 1 << (nvec - 1).bit_length())
    ty = max(1, THREADS // tx)
    grid = (-(-rows // ty), -(-nvec // tx), 1)
    if grid[1] > 65535:
        raise ValueError(f"glu_cuda: rows of {d} outputs are too wide (at most {65535 * THREADS * vec})")
    params = _Params(x2d.data_ptr(), out2d.data_ptr(), rows, d, x2d.stride(0), out2d.stride(0), float(alpha),
                     float(limit) if limit is not None else 0.0, float(up_shift))
    stream = torch.cuda.current_stream(x2d.device).cuda_stream
    jit.launcher().launch(fns[vec], grid, (tx, ty, 1), stream, params, dev.index, variant.pdl)


# ---- custom ops ---------------------------------------------------------------------------------

def _torch_glu(x, act: int, alpha: float, limit: float | None, up_shift: float, interleaved: bool):
    """The torch formulation (fp32 math, one rounding): what runs off CUDA."""
    xf = x.float()
    if interleaved:
        g, u = xf[..., 0::2], xf[..., 1::2]
    else:
        half = x.shape[-1] // 2
        g, u = xf[..., :half], xf[..., half:]
    if limit is not None:
        g, u = g.clamp(max=limit), u.clamp(-limit, limit)
    if act == 0:
        a = g * torch.sigmoid(alpha * g)
    elif act == 1:
        a = 0.5 * g * (1.0 + torch.erf(g * (1.0 / math.sqrt(2.0))))
    elif act == 2:
        a = 0.5 * g * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (g + 0.044715 * g * g * g)))
    else:
        a = g.clamp_min(0.0)
    return (a * (u + up_shift)).to(x.dtype)


def _glu_eager(x, out, act, alpha, limit, has_limit, up_shift, interleaved) -> None:
    check_disjoint("glu_cuda", (("out", out),), (("x", x),))
    out.copy_(_torch_glu(x, act, alpha, limit if has_limit else None, up_shift, interleaved))


@kernel_op("solbench::glu_cuda.out", mutates_args=("out",), eager=_glu_eager)
def _glu_cuda_op(x: torch.Tensor, out: torch.Tensor, act: int, alpha: float, limit: float, has_limit: bool,
                 up_shift: float, interleaved: bool) -> None:
    if not x.is_cuda:  # the CPU under TRITON_INTERPRET=1 reaches here: there is no CUDA to compile for
        return _glu_eager(x, out, act, alpha, limit, has_limit, up_shift, interleaved)
    check_disjoint("glu_cuda", (("out", out),), (("x", x),))
    launch_glu(as_rows(x, "glu_cuda"), as_rows(out, "glu_cuda", "out"), act, alpha,
               limit if has_limit else None, up_shift, interleaved)


@_glu_cuda_op.register_fake
def _glu_cuda_fake(x, out, act, alpha, limit, has_limit, up_shift, interleaved) -> None:
    return None


def _out_shape(x):
    return (*x.shape[:-1], x.shape[-1] // 2)


functional_op("solbench::glu_cuda", _glu_cuda_op, lambda x, *_: (x.new_empty(_out_shape(x)),))


# ---- public functions ---------------------------------------------------------------------------

def _activation_args(activation, alpha, limit, up_shift, interleaved):
    """``(act id, alpha, limit, up_shift, interleaved)`` from a kind name and keywords, or from an
    activation spec (``solbench.ActivationSpec``: read through its attributes)."""
    if not isinstance(activation, str):
        spec = activation
        kind = getattr(spec, "kind", None)
        if kind not in ACTIVATIONS:
            raise TypeError(f"glu_cuda: activation must be one of {sorted(ACTIVATIONS)} or an ActivationSpec, "
                            f"got {activation!r}")
        return (ACTIVATIONS[kind], float(spec.effective_alpha), spec.limit, float(spec.up_shift),
                spec.layout == "interleaved")
    if activation not in ACTIVATIONS:
        raise ValueError(f"glu_cuda: unknown activation {activation!r}; supported: {', '.join(ACTIVATIONS)}")
    if alpha is not None and activation != "silu":
        raise ValueError(f"glu_cuda: alpha applies to silu only, not to {activation!r}")
    if limit is not None and not (limit > 0 and math.isfinite(limit)):
        raise ValueError(f"glu_cuda: limit must be a positive finite number, got {limit!r}")
    return ACTIVATIONS[activation], 1.0 if alpha is None else float(alpha), limit, float(up_shift), bool(interleaved)


def glu(x: torch.Tensor, activation="silu", *, alpha: float | None = None, limit: float | None = None,
        up_shift: float = 0.0, interleaved: bool = False, out: torch.Tensor | None = None) -> torch.Tensor:
    """``act(gate) * (up + up_shift)`` over the last dim of ``x`` (``[..., 2d]`` -> ``[..., d]``).

    ``activation``: ``"silu"``, ``"gelu"``, ``"gelu_tanh"`` or ``"relu"`` with the keywords, or an
    ``ActivationSpec`` (then the keywords are ignored). ``x`` may have any leading dims and a row
    stride (last dim contiguous); bf16, fp16, fp32. 0 rows return at once. Returns ``out``.
    """
    act, alpha_, limit_, shift, inter = _activation_args(activation, alpha, limit, up_shift, interleaved)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"glu_cuda: x must be a torch.Tensor, got {type(x).__name__}")
    check_dtype(x, SUPPORTED_DTYPES, "glu_cuda")
    if x.dim() == 0 or x.shape[-1] % 2:
        raise ValueError(f"glu_cuda: the last dimension of x must be even ([..., 2*d] holding gate and up), "
                         f"got shape {tuple(x.shape)}")
    shape = _out_shape(x)
    if out is None:
        out = torch.empty(shape, dtype=x.dtype, device=x.device)
    else:
        check_out(out, shape, x.dtype, x.device, "glu_cuda")
    as_rows(x, "glu_cuda")
    as_rows(out, "glu_cuda", "out")
    if out.numel() == 0:
        return out
    _glu_cuda_op(x, out, act, alpha_, float(limit_) if limit_ is not None else 0.0, limit_ is not None, shift, inter)
    return out


def silu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``silu(x[..., :d]) * x[..., d:]``."""
    return glu(x, "silu", out=out)


def gelu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``gelu(x[..., :d]) * x[..., d:]`` with the exact (erf) GELU."""
    return glu(x, "gelu", out=out)


def gelu_tanh_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``gelu_tanh(x[..., :d]) * x[..., d:]`` with the tanh-approximated GELU."""
    return glu(x, "gelu_tanh", out=out)
