"""The GLU family: ``out = act(gate) * (up + up_shift)`` with optional clamping, one Triton kernel
(``_glu_triton``, imported at the first launch) with the activation chosen at compile time.

Public functions: :func:`glu` (``glu(x, spec, out=None, backend="auto")``) and the classic fused
names :func:`silu_and_mul`, :func:`gelu_and_mul`, :func:`gelu_tanh_and_mul`; custom ops
``torch.ops.solbench.glu`` / ``glu.out`` (the activation passed as its parameters, then the backend)
and the same for each classic name, with fake implementations, computed with torch off CUDA
(:func:`reference_glu`).

Backends: this Triton kernel, and the CUDA C++ one of :mod:`solbench.kernels.cuda.glu`. ``"auto"``
takes the one this device's tuned table names for the launch's shape bucket (:func:`glu_backend`;
``solbench tune --backends-from`` writes those entries from measured runs of both), Triton where
the table names none; ``"triton"`` and ``"cuda"`` force one.

The activation (:class:`ActivationSpec`, its registry and :func:`reference_glu`, the torch
formulation) is data in :mod:`solbench.kernels.activation`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from solbench.kernels.activation import ACT_MODES, ActivationSpec, get_activation, reference_glu
from solbench.kernels.common import (as_rows, check_disjoint, check_dtype, check_out, fill_sms, functional_op,
                                     kernel_op, largest_pow2_divisor, next_pow2, pow2_range)
from solbench.kernels.rowwise import MAX_TILE
from solbench.runtime import tuning


# ---- the public functions and their custom ops -----------------------------------------------------

SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
_KINDS = {mode: kind for kind, mode in ACT_MODES.items()}


#: What ``backend=`` accepts.
BACKENDS = ("auto", "triton", "cuda")


def _glu_eager(x, out, act, alpha, limit, has_limit, up_shift, interleaved, backend="auto") -> None:
    check_disjoint("glu", (("out", out),), (("x", x),))
    kind = _KINDS[act]
    spec = ActivationSpec(name="glu", kind=kind, alpha=alpha if kind == "silu" else None,
                          limit=limit if has_limit else None, up_shift=up_shift,
                          layout="interleaved" if interleaved else "halves")
    out.copy_(reference_glu(x, spec))


def _glu_out_shape(x):
    return (*x.shape[:-1], x.shape[-1] // 2)


@kernel_op("solbench::glu.out", mutates_args=("out",), eager=_glu_eager)
def _glu_op(x: torch.Tensor, out: torch.Tensor, act: int, alpha: float, limit: float, has_limit: bool,
            up_shift: float, interleaved: bool, backend: str = "auto") -> None:
    check_disjoint("glu", (("out", out),), (("x", x),))
    x2d, out2d = as_rows(x, "glu"), as_rows(out, "glu", "out")
    if backend not in BACKENDS:
        raise ValueError(f"glu: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        backend = glu_backend(x2d.shape[0], out2d.shape[1], act, x.device)
    if backend == "cuda":
        from solbench.kernels.cuda.glu import launch_glu as launch_cuda

        if not x.is_cuda:  # the CPU under TRITON_INTERPRET=1: no CUDA to compile for, the torch formulation
            return _glu_eager(x, out, act, alpha, limit, has_limit, up_shift, interleaved)
        launch_cuda(x2d, out2d, act, alpha, limit if has_limit else None, up_shift, interleaved)
        return None
    from solbench.kernels._glu_triton import launch_glu

    launch_glu(x2d, out2d, act, alpha, limit if has_limit else None, up_shift, interleaved)
    return None


@_glu_op.register_fake
def _glu_fake(x, out, act, alpha, limit, has_limit, up_shift, interleaved, backend="auto") -> None:
    return None


functional_op("solbench::glu", _glu_op, lambda x, *_: (x.new_empty(_glu_out_shape(x)),))


def _register_plain(name: str, activation: str):
    """``torch.ops.solbench.<name>(x)`` and ``<name>.out(x, out)``: the GLU op with a fixed
    built-in activation (vLLM's signature without the activation's parameters)."""
    spec = get_activation(activation)
    args = (ACT_MODES[spec.kind], spec.effective_alpha, 0.0, False, float(spec.up_shift), False)

    def body(x: torch.Tensor, out: torch.Tensor) -> None:
        _glu_op.fn(x, out, *args)

    out_op = kernel_op(f"solbench::{name}.out", mutates_args=("out",), eager=body)(body)  # glu.out picks the path
    out_op.register_fake(lambda x, out: None)
    functional_op(f"solbench::{name}", out_op, lambda x: (x.new_empty(_glu_out_shape(x)),))


for _name, _act in (("silu_and_mul", "silu"), ("gelu_and_mul", "gelu"), ("gelu_tanh_and_mul", "gelu_tanh")):
    _register_plain(_name, _act)


def glu(x: torch.Tensor, spec: ActivationSpec | str = "silu", out: torch.Tensor | None = None, *,
        backend: str = "auto") -> torch.Tensor:
    """``act(gate) * (up + up_shift)`` over the last dim of ``x`` (``[..., 2d]`` -> ``[..., d]``).

    ``spec`` is an :class:`ActivationSpec` or a registered name. ``x`` may have any leading dims
    and a row stride (its last dim must be contiguous); bf16, fp16 and fp32 are supported. Math
    is in fp32 with one rounding to ``x.dtype``. ``backend``: ``"auto"`` (the tuned table's choice
    for this shape bucket, see :func:`glu_backend`), ``"triton"`` or ``"cuda"``. Returns ``out``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"glu: backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if isinstance(spec, str):
        spec = get_activation(spec)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"glu: x must be a torch.Tensor, got {type(x).__name__}")
    check_dtype(x, SUPPORTED_DTYPES, "glu")
    if x.dim() == 0 or x.shape[-1] % 2:
        raise ValueError(f"glu: the last dimension of x must be even ([..., 2*d] holding gate and up), "
                         f"got shape {tuple(x.shape)}")
    out_shape = _glu_out_shape(x)
    if out is None:
        out = torch.empty(out_shape, dtype=x.dtype, device=x.device)
    else:
        check_out(out, out_shape, x.dtype, x.device, "glu")
    as_rows(x, "glu")            # validate strides up front, with the public name in the error
    as_rows(out, "glu", "out")
    _glu_op(x, out, ACT_MODES[spec.kind], spec.effective_alpha,
                            float(spec.limit) if spec.limit is not None else 0.0, spec.limit is not None,
                            float(spec.up_shift), spec.layout == "interleaved", backend)
    return out


def silu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """vLLM's ``silu_and_mul``: ``silu(x[..., :d]) * x[..., d:]``."""
    return glu(x, "silu", out=out)


def gelu_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``gelu(x[..., :d]) * x[..., d:]`` with the exact (erf) GELU."""
    return glu(x, "gelu", out=out)


def gelu_tanh_and_mul(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``gelu_tanh(x[..., :d]) * x[..., d:]`` with the tanh-approximated GELU."""
    return glu(x, "gelu_tanh", out=out)


# ---- backend choice -----------------------------------------------------------------------------
#: Tuned-table keys of the backend choice (family "backend"), split like the tiles' keys below: the
#: erf GELU is compute-heavy where the others are memory-bound, so it is measured and chosen apart.
BACKEND_KERNEL = "glu_backend"
BACKEND_KERNEL_ERF = "glu_erf_backend"


def backend_kernel(act: int) -> str:
    """The backend choice's table key for activation id ``act``."""
    return BACKEND_KERNEL_ERF if act == ACT_GELU_ERF else BACKEND_KERNEL


def glu_backend(rows: int, d: int, act: int, device) -> str:
    """``"cuda"`` or ``"triton"`` for a launch of ``rows`` rows of ``d`` outputs: the CUDA kernel
    where this device's tuned table names it for the bucket (row-count tier, ``d``) and NVRTC can
    compile it, else Triton (tuned per device and already compiled). Off CUDA: Triton."""
    if getattr(device, "type", device) != "cuda" or rows == 0:
        return "triton"
    cfg = tuning.lookup(backend_kernel(act), d, family="backend", rows=rows)
    if cfg is None or cfg.get("backend") != "cuda":
        return "triton"
    return "cuda" if cuda_backend_ready() else "triton"


@functools.lru_cache(maxsize=1)
def cuda_backend_ready() -> bool:
    """Whether NVRTC can compile the CUDA kernels here, asked once per process (a failed import
    of the bindings is not cached by them, and a table that names CUDA is read on every launch)."""
    from solbench.kernels.cuda import jit

    return jit.nvrtc_unavailable_reason() is None


tuning.register_family("backend", lambda n, elem_bytes, rows, few_rows=False: [{"backend": "triton"},
                                                                              {"backend": "cuda"}])


# ---- launch options -----------------------------------------------------------------------------
#: Tuned-table keys: the erf GELU spends about 1.5x the instructions per element of the others and
#: is near the issue limit, so its tiles are tuned apart from the memory-bound modes (where a
#: half-masked column block costs nothing, it costs compute here).
KERNEL = "glu"
KERNEL_ERF = "glu_erf"
ACT_GELU_ERF = ACT_MODES["gelu"]


@dataclass(frozen=True)
class GluOptions:
    """Launch options of the GLU kernel: each program owns ``block_m`` rows x ``block_n`` columns
    of the output, with ``num_warps`` warps."""

    block_m: int
    block_n: int
    num_warps: int


def glu_options(rows: int, d: int, elem_bytes: int = 2, act: int = 0,
                options: GluOptions | None = None) -> GluOptions:
    """The tile for ``rows`` rows of ``d`` outputs: ``options`` when given, else this device's
    tuned tile for ``d`` (runtime/tuning.py), ``block_m`` capped by the row count either way;
    a regular tuned entry, tuned on larger launches, is also split by kernels/common.fill_sms.
    Else first principles: about 4-8K output elements per program, so that each program keeps
    enough bytes in flight; decode shapes (few rows) get one row per program and split the row
    across programs instead, and no launch packs rows so that SMs go without a program
    (kernels/common.fill_sms). For the erf GELU the first-principles column block divides ``d``
    when a power of two >= 128 does (no masked lanes doing arithmetic)."""
    kernel = KERNEL_ERF if act == ACT_GELU_ERF else KERNEL
    if options is not None:
        return GluOptions(max(1, min(int(options.block_m), next_pow2(rows))), int(options.block_n),
                          int(options.num_warps))
    tuned, key = tuning.lookup_keyed(kernel, d, family="glu", elem_bytes=elem_bytes, rows=rows)
    if tuned is not None:
        block_m, block_n = max(1, min(int(tuned["block_m"]), next_pow2(rows))), int(tuned["block_n"])
        num_warps = int(tuned["num_warps"])
        if key != kernel:  # a tier's tile (few / many rows), measured on launches like this one: used as it is
            return GluOptions(block_m, block_n, num_warps)
    else:
        block_n = min(next_pow2(d), 1024)
        if act == ACT_GELU_ERF and d % block_n:
            divisor = largest_pow2_divisor(d, 1024)
            block_n = divisor if divisor >= 128 else block_n
        target = 8192 if rows * d >= (1 << 22) else 4096
        block_m = max(1, min(next_pow2(rows), target // block_n))
        num_warps = 8 if block_m * block_n >= 4096 else 4
    col_blocks = -(-d // block_n)
    block_m, num_warps = fill_sms(block_m, num_warps, lambda bm: -(-rows // bm) * col_blocks, tuning.sm_count())
    return GluOptions(block_m, block_n, num_warps)


# ---- what `solbench tune` tries --------------------------------------------------------------------
def glu_candidates(d: int, elem_bytes: int, rows: int, few_rows: bool = False) -> list[dict]:
    """Tiles (``block_m`` rows x ``block_n`` columns, ``num_warps``) worth measuring for the GLU on
    ``rows`` rows of ``d`` outputs. Column blocks: the first-principles 1024 (or the whole row),
    2048, and the largest power of two dividing d (no half-masked last block for d = 768, 1536,
    2560, ...); 32 or 64 bytes per thread on tiles of 4-16K elements. ``few_rows`` (latency-bound
    launches) adds narrower column blocks and down to one 8-byte vector per thread."""
    max_m = next_pow2(max(1, rows))
    divisor = largest_pow2_divisor(d, 2048)
    widths = {min(next_pow2(d), 1024), min(next_pow2(d), 2048)} | ({divisor} if divisor >= 128 else set())
    out: list[dict] = []
    if few_rows:
        # Latency-bound: any rows-per-program up to the rows there are, narrower column blocks
        # (more programs for one row), and down to one 8-byte vector per thread: with one or
        # two warps per SM the activation's arithmetic is a dependent chain per element that
        # nothing hides (H200: gelu on 183 x 1024 ran 1.4x silu's time with the same 2-warp
        # tile, 344 against 216 instructions), and more, shorter threads shorten it.
        widths |= {w for w in (256, 512) if w < next_pow2(d)}
        for block_n in sorted(widths):
            for block_m in pow2_range(1, min(max_m, MAX_TILE // block_n)):
                for thread_bytes in (8, 16, 32, 64):
                    warps = block_m * block_n * elem_bytes // (32 * thread_bytes)
                    if 1 <= warps <= 16:
                        out.append({"block_m": block_m, "block_n": block_n, "num_warps": warps})
        return out
    for block_n in sorted(widths):
        for tile in (4096, 8192, 16384):
            block_m = tile // block_n
            if block_m < 1 or block_m > max_m:
                continue
            for thread_bytes in (32, 64):
                warps = tile * elem_bytes // (32 * thread_bytes)
                if 2 <= warps <= 16:
                    out.append({"block_m": block_m, "block_n": block_n, "num_warps": warps})
    return out


tuning.register_family("glu", glu_candidates)
