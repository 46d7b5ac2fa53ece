"""Block-scaled fp8 GEMM (W8A8, DeepSeek-V3 layout; vLLM ``w8a8_triton_block_scaled_mm``).

``a [..., K]`` float8_e4m3fn with per-token-group scales ``a_scales [..., ceil(K/gk)]`` fp32 (1 x gk
groups), ``b [N, K]`` float8_e4m3fn (the weight, one row per output feature) with block scales
``b_scales [ceil(N/gn), ceil(K/gk)]`` fp32 (gn x gk blocks):

``out[m, n] = sum_kb a_scales[m, kb] * b_scales[n // gn, kb] * sum_{k in block kb} a[m, k] * b[n, k]``

The products of fp8 values run on fp8 tensor cores and accumulate in fp32; each K block's fp32
partial is scaled once by ``a_scale * b_scale`` and added to the accumulator (no operand is
dequantized). ``out`` is fp32 (default), bf16 or fp16, rounded once.

The launch (:class:`BlockFp8Options`, from the tuned table per (N, K, M bucket) where ``solbench
tune`` wrote one for this GPU, else :func:`default_options`):
persistent programs over output tiles in grouped order; BLOCK_K is the scale group ``gk``;
split-K (fp32 output, added by atomics into a zeroed ``out``) where the output tiles alone would
leave SMs idle, as at decode sizes where the weight must stream at full bandwidth; operand tiles
through TMA descriptors on sm90+ where the strides allow, else pointer loads (both pipelined
over ``num_stages``).
"""
from __future__ import annotations

import functools
from dataclasses import asdict, astuple, dataclass, fields, replace

import torch

from solbench.kernels.common import (
    as_rows, check_disjoint, check_dtype, check_out, check_warps, cuda_backend, device_index, emulated_sm_count,
    env_fields, functional_op, gpu_codegen, kernel_op, sm_count_of, triton_unavailable_reason,
)

WHAT = "block_scaled_mm"
#: Scale-group widths along K the kernel takes (BLOCK_K is the group: one scale per K step).
GROUP_K_SUPPORTED = (32, 64, 128, 256)
OUT_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
#: M buckets of the launch heuristic (the bucket of M is the first bound >= M).
M_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


@dataclass(frozen=True)
class BlockFp8Options:
    """Launch options. ``split_k`` must divide the K blocks (ceil(K/gk)), and ``split_k > 1``
    needs an fp32 output. ``programs_per_sm``: persistent programs per SM (the grid is at most
    that many per SM, at most one per tile). ``tma``: None picks TMA descriptors where the device
    (sm90+) and the strides allow them. ``flatten``: pipeline a program's loads across its tiles
    (the next tile's loads overlap this one's epilogue; on sm_90 it also holds the tile in shared
    memory: 192 KB at 128x128 with 4 stages, so one program per SM)."""

    block_m: int = 128
    block_n: int = 128
    group_m: int = 8
    split_k: int = 1
    num_warps: int = 8
    num_stages: int = 4
    programs_per_sm: int = 1
    tma: bool | None = None
    flatten: bool = False

    def __post_init__(self):
        pow2 = lambda v: v >= 1 and v & (v - 1) == 0  # noqa: E731
        if not (pow2(self.block_m) and pow2(self.block_n) and min(self.block_m, self.block_n) >= 16):
            raise ValueError(f"{WHAT}: block_m and block_n must be powers of two >= 16 (got {self.block_m}, {self.block_n})")
        check_warps(WHAT, self.num_warps)
        if min(self.group_m, self.split_k, self.num_stages, self.programs_per_sm) < 1:
            raise ValueError(f"{WHAT}: group_m, split_k, num_stages and programs_per_sm must be >= 1 ({self})")

    def encode(self) -> list[int]:
        """The options as ints (a custom op's argument): ``tma`` None/False/True is -1/0/1."""
        return [(-1 if v is None else int(v)) for v in astuple(self)]

    @classmethod
    def decode(cls, values) -> "BlockFp8Options":
        names = [f.name for f in fields(cls)]
        if len(values) != len(names):
            raise ValueError(f"{WHAT}: expected {len(names)} option values, got {len(values)}")
        d = dict(zip(names, (int(v) for v in values)))
        d["tma"] = None if d["tma"] < 0 else bool(d["tma"])
        d["flatten"] = bool(d["flatten"])
        return cls(**d)


def m_bucket(m: int) -> int:
    """The heuristic's M bucket: the first of :data:`M_BUCKETS` >= m, or 8192 past them."""
    return next((b for b in M_BUCKETS if m <= b), 8192)


@functools.lru_cache(maxsize=None)
def _major(device_index: int) -> int:
    return torch.cuda.get_device_capability(device_index)[0]


def sm_count(device) -> int:
    """SMs of a CUDA device (under `solbench sass`, its target GPU's); under the interpreter a
    small stand-in (2), so tests walk the persistent loop over several tiles per program."""
    if device.type != "cuda":
        return emulated_sm_count() or 2
    return sm_count_of(device_index(device))


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def default_options(m: int, n: int, k: int, group_k: int = 128, out_dtype=torch.float32,
                    sms: int = 132) -> BlockFp8Options:
    """First-principles launch for an (N, K, M bucket) on a part with ``sms`` SMs.

    * M > 1024: 128 x 128 tiles, 8 warps (two warpgroups, 64 fp32 accumulator registers each
      for the sum and as many for the K block's partial), 4 stages of 32 KB, GROUP_M 8, loads
      pipelined across tiles (one program per SM either way).
    * 64 < M <= 1024: 64 x 128 tiles, 4 warps (same registers per thread), 4 stages, 2 programs
      per SM (2 x 96 KB of stages fit): one's tensor-core work overlaps the other's rescaling.
    * M <= 64 (decode): 16/32/64-row tiles against 64 columns, 5 stages, 2 programs per SM; the
      weight is the traffic, so K is split until the tiles cover the SMs twice (fp32 out only),
      keeping at least 2 K blocks per split and splitting them evenly.
    Tiles that leave more than half the SMs idle also split K (fp32 out only).
    """
    b = m_bucket(m)
    kb = _cdiv(max(k, 1), group_k)
    if b > 1024:
        opt = BlockFp8Options(block_m=128, block_n=128, group_m=8, num_warps=8, num_stages=4, flatten=True)
    elif b > 64:
        opt = BlockFp8Options(block_m=64, block_n=128, group_m=8, num_warps=4, num_stages=4, programs_per_sm=2)
    else:
        opt = BlockFp8Options(block_m=max(16, b), block_n=64, group_m=1, num_warps=4, num_stages=5,
                              programs_per_sm=2)
    if group_k >= 256:  # stages of twice the bytes
        opt = replace(opt, num_stages=max(2, opt.num_stages - 2))
    tiles = _cdiv(m, opt.block_m) * _cdiv(n, opt.block_n)
    if b <= 64:
        goal = sms * opt.programs_per_sm
    else:
        goal = sms if tiles <= sms // 2 else 0
    split = 1
    while out_dtype == torch.float32 and tiles * split < goal and kb % (2 * split) == 0 and kb // (2 * split) >= 2:
        split *= 2
    return replace(opt, split_k=split)


#: ``SOLBENCH_BLOCK_FP8=name=value,...``: fields of :class:`BlockFp8Options` that replace the
#: launch's (the tuned table's or the heuristic's; ``tma`` -1/0/1 for auto/off/on, ``flatten`` 0/1) in
#: every launch without explicit options; for A/B runs from the command line (read at each call).
OPTIONS_ENV = "SOLBENCH_BLOCK_FP8"


def env_override(opt: BlockFp8Options) -> BlockFp8Options:
    """``opt`` with the fields :data:`OPTIONS_ENV` sets (unchanged when it is unset)."""
    values = env_fields(OPTIONS_ENV, [f.name for f in fields(BlockFp8Options)])
    if not values:
        return opt
    for name, allowed in (("tma", (-1, 0, 1)), ("flatten", (0, 1))):
        if name in values and values[name] not in allowed:
            raise ValueError(f"{OPTIONS_ENV}: {name}={values[name]} must be one of {allowed}")
    if "tma" in values:
        values["tma"] = None if values["tma"] < 0 else bool(values["tma"])
    if "flatten" in values:
        values["flatten"] = bool(values["flatten"])
    return replace(opt, **values)


def candidates(m: int, n: int, k: int, group_k: int = 128, out_dtype=torch.float32,
               sms: int = 132) -> list[BlockFp8Options]:
    """Launches worth timing against the heuristic's for one shape (the heuristic's first): other
    tiles (for prefill, two 4-warp CTAs per SM, which interleave one's tensor-core work with the
    other's rescaling, against one 8-warp CTA whose warpgroups meet at every K step's barrier),
    one stage more or less, split-K halved and doubled, a wider grouping, and pointer loads
    against TMA. For the device sweep (``sweep.py``) and a tuned table."""
    base = default_options(m, n, k, group_k, out_dtype, sms)
    kb = _cdiv(max(k, 1), group_k)
    if m > 1024:
        tiles = [(64, 128, 4, 2), (128, 64, 4, 2), (64, 64, 4, 2)]
    elif m > 64:
        tiles = [(64, 128, 4, 1), (128, 128, 8, 1), (64, 64, 4, 2)]
    else:
        tiles = [(64, 64, 4, 2), (max(16, base.block_m), 128, 4, 2), (16, 32, 4, 4)]
    out = [base]
    # Two programs per SM fit only unflattened (a flattened 64x128 program holds 128 KB of shared).
    out += [replace(base, block_m=bm, block_n=bn, num_warps=w, programs_per_sm=p, flatten=base.flatten and p == 1)
            for bm, bn, w, p in tiles]
    out += [replace(o, num_stages=o.num_stages + d) for o in out[:2] for d in (-1, 1)]
    if m <= 64:  # narrow tiles instead of split-K: no zeroing of out before the launch
        out.append(replace(base, block_n=32, programs_per_sm=4, split_k=1))
    out += [replace(base, group_m=16), replace(base, tma=False), replace(base, flatten=not base.flatten)]
    if out_dtype == torch.float32:
        out += [replace(base, split_k=s) for s in (base.split_k // 2, base.split_k * 2) if s >= 1 and kb % s == 0]
    seen, unique = set(), []
    for o in out:
        if o not in seen and o.num_stages >= 2:
            seen.add(o)
            unique.append(o)
    return unique


#: Output dtype names in tuned-table keys.
_OUT_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def tuned_key(n: int, k: int, group_k: int, out_dtype) -> str:
    """The tuned table's kernel key of one (N, K, scale group, output dtype); its ``n`` is the M
    bucket (:func:`m_bucket`). Each key is its own ``solbench tune`` family, whose candidates
    (:func:`candidates`) need N and K."""
    return f"block_fp8_mm:{n}x{k}:g{group_k}:{_OUT_NAMES[out_dtype]}"


def tuned_options(m: int, n: int, k: int, group_k: int, out_dtype, sms: int) -> BlockFp8Options:
    """The launch of an (M, N, K): the tuned table's entry for its (N, K, M bucket) when this
    device has one (``solbench tune``, whose candidates for the bucket are :func:`candidates` but
    the heuristic's own launch, the baseline it times anyway), else :func:`default_options`."""
    from solbench.runtime import tuning

    def generate(bucket: int, *_) -> list[dict]:
        return [asdict(o) for o in candidates(bucket, n, k, group_k, out_dtype, tuning.sm_count() or 132)[1:]]

    opt = tuning.lookup_config(tuned_key(n, k, group_k, out_dtype), m_bucket(m), BlockFp8Options, generate,
                               elem_bytes=1)
    return opt if opt is not None else default_options(m, n, k, group_k, out_dtype, sms)


def _tma_possible(a2, b) -> str | None:
    """Why TMA descriptors cannot be used for these operands here, or None when they can."""
    try:
        from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: F401
    except ImportError:
        return "this triton has no triton.tools.tensor_descriptor"
    if a2.is_cuda and _major(device_index(a2.device)) < 9:
        return "TMA needs sm90 or newer"
    for name, t in (("a", a2), ("b", b)):
        if t.data_ptr() % 16 or t.stride(0) % 16:
            return f"{name} rows are not 16-byte aligned (stride {t.stride(0)})"
    return None


def _check_inputs(a, b, a_scales, b_scales, block_size):
    gn, gk = (int(v) for v in block_size)
    if gn < 1 or gk not in GROUP_K_SUPPORTED:
        raise ValueError(f"{WHAT}: block_size {tuple(block_size)} is not supported: group_n >= 1 and "
                         f"group_k one of {GROUP_K_SUPPORTED}")
    fp8 = (torch.float8_e4m3fn,)
    check_dtype(a, fp8, WHAT, "a")
    check_dtype(b, fp8, WHAT, "b")
    check_dtype(a_scales, (torch.float32,), WHAT, "a_scales")
    check_dtype(b_scales, (torch.float32,), WHAT, "b_scales")
    if b.dim() != 2:
        raise ValueError(f"{WHAT}: b must be [N, K] (got shape {tuple(b.shape)})")
    n, k = b.shape
    if a.dim() < 1 or a.shape[-1] != k:
        raise ValueError(f"{WHAT}: a must be [..., K] with K = {k} from b (got shape {tuple(a.shape)})")
    if b.stride(1) != 1 and k > 1:
        raise ValueError(f"{WHAT}: b must be contiguous along K (stride {b.stride(1)})")
    kb, nb = _cdiv(k, gk), _cdiv(n, gn)
    if tuple(a_scales.shape) != (*a.shape[:-1], kb):
        raise ValueError(f"{WHAT}: a_scales must have shape {(*a.shape[:-1], kb)} (a's rows x ceil(K/{gk})), "
                         f"got {tuple(a_scales.shape)}")
    if tuple(b_scales.shape) != (nb, kb):
        raise ValueError(f"{WHAT}: b_scales must have shape {(nb, kb)} (ceil(N/{gn}) x ceil(K/{gk})), "
                         f"got {tuple(b_scales.shape)}")
    for name, t in (("b", b), ("a_scales", a_scales), ("b_scales", b_scales)):
        if t.device != a.device:
            raise ValueError(f"{WHAT}: {name} is on {t.device}, a on {a.device}")
    return gn, gk


#: ``backend="auto"`` takes the CUDA kernel from this many rows: below, its 128 x 128 tiles without
#: split-K leave SMs idle and the Triton kernel was faster (the measurements: docs/DECISIONS.md).
CUDA_MIN_ROWS = 4096


def block_scaled_mm(a: torch.Tensor, b: torch.Tensor, a_scales: torch.Tensor, b_scales: torch.Tensor,
                    block_size=(128, 128), *, out_dtype=torch.float32, out: torch.Tensor | None = None,
                    options: BlockFp8Options | None = None, backend: str = "triton") -> torch.Tensor:
    """``out = (a * a_scales) @ (b * b_scales)^T`` with fp8 operands and block scales (module doc).

    ``a``: ``[..., K]`` float8_e4m3fn, rows may be strided (K contiguous); ``a_scales``:
    ``[..., ceil(K/gk)]`` fp32, any strides (row- or column-major); ``b``: ``[N, K]``
    float8_e4m3fn, K contiguous; ``b_scales``: ``[ceil(N/gn), ceil(K/gk)]`` fp32, any strides;
    ``block_size``: ``(gn, gk)``, gk in 32/64/128/256. ``out``: ``[..., N]`` of ``out_dtype``
    (fp32, bf16 or fp16), rows may be strided. ``options``: the Triton launch (default: the
    heuristic). ``backend``: ``"triton"``, ``"cuda"`` for the sm_90a warpgroup-MMA kernel
    (:mod:`solbench.kernels.cuda.block_fp8`: 128 x 128 groups, fp32 or bf16 out, 16-byte aligned
    rows; anything else is a ValueError that says why), or ``"auto"``: the CUDA kernel from
    :data:`CUDA_MIN_ROWS` rows where it can run (and no Triton ``options`` are given), else
    Triton. Returns ``out``.
    """
    if backend == "cuda" and options is not None:
        raise ValueError(f"{WHAT}: options are the Triton kernel's launch; the cuda backend takes none")
    gn, gk = _check_inputs(a, b, a_scales, b_scales, block_size)
    if out is None:
        if out_dtype not in OUT_DTYPES:
            raise TypeError(f"{WHAT}: out_dtype {out_dtype} is not supported; supported: fp32, bf16, fp16")
        out = torch.empty((*a.shape[:-1], b.shape[0]), dtype=out_dtype, device=a.device)
    else:
        check_dtype(out, OUT_DTYPES, WHAT, "out")
        check_out(out, (*a.shape[:-1], b.shape[0]), out.dtype, a.device, WHAT)
        as_rows(out, WHAT, "out")
    if options is not None and options.split_k > 1 and out.dtype != torch.float32:
        raise ValueError(f"{WHAT}: split_k > 1 adds partial sums into the output and needs fp32 out "
                         f"(got {out.dtype})")
    a2 = as_rows(a, WHAT, "a")

    def unsupported():
        from solbench.kernels.cuda import block_fp8 as cuda_block_fp8

        return cuda_block_fp8.unsupported_reason(a2, b, a_scales, b_scales, as_rows(out, WHAT, "out"), gn, gk)

    def prefer():
        return options is None and a2.shape[0] >= CUDA_MIN_ROWS

    if cuda_backend(WHAT, backend, unsupported, prefer):
        from solbench.kernels.cuda import block_fp8 as cuda_block_fp8

        cuda_block_fp8._block_scaled_mm_cuda_op(a, b, a_scales, b_scales, out)
        return out
    _block_scaled_mm_op(a, b, a_scales, b_scales, out, gn, gk, options.encode() if options else [])
    return out


def _eager(a, b, a_scales, b_scales, out, group_n: int, group_k: int, options: list[int]) -> None:
    """The torch formulation (off CUDA): dequantize by block, fp32 product, one rounding."""
    k = a.shape[-1]
    af = a.float() * a_scales.float().repeat_interleave(group_k, -1)[..., :k]
    sb = b_scales.float().repeat_interleave(group_n, 0)[: b.shape[0]].repeat_interleave(group_k, 1)[:, :k]
    out.copy_(af @ (b.float() * sb).T)


@kernel_op("solbench::block_scaled_mm.out", mutates_args=("out",), eager=_eager)
def _block_scaled_mm_op(a: torch.Tensor, b: torch.Tensor, a_scales: torch.Tensor, b_scales: torch.Tensor,
                        out: torch.Tensor, group_n: int, group_k: int, options: list[int]) -> None:
    check_disjoint(WHAT, (("out", out),), (("a", a), ("b", b), ("a_scales", a_scales), ("b_scales", b_scales)))
    launch(as_rows(a, WHAT, "a"), b, a_scales.reshape(-1, a_scales.shape[-1]), b_scales,
           as_rows(out, WHAT, "out"), group_n, group_k,
           BlockFp8Options.decode(options) if options else None)


@_block_scaled_mm_op.register_fake
def _block_scaled_mm_fake(a, b, a_scales, b_scales, out, group_n, group_k, options) -> None:
    return None


# The functional form writes fp32, the public function's default.
functional_op("solbench::block_scaled_mm", _block_scaled_mm_op,
              lambda a, b, sa, sb, gn, gk, opts: (a.new_empty((*a.shape[:-1], b.shape[0]), dtype=torch.float32),))


def settled_without_a_kernel(a2, b, out2) -> bool:
    """True when the product needs no launch (either backend): no rows or columns, or K = 0 (a
    zero output, written here)."""
    if a2.shape[0] == 0 or b.shape[0] == 0:
        return True
    if a2.shape[1] == 0:
        out2.zero_()
        return True
    return False


def launch(a2, b, sa, sb, out2, group_n: int, group_k: int, options: BlockFp8Options | None = None) -> None:
    """Launch on 2-D views: ``a2 [M, K]``, ``b [N, K]``, ``sa [M, kb]``, ``sb [nb, kb]``,
    ``out2 [M, N]`` (validated by the caller)."""
    if settled_without_a_kernel(a2, b, out2):
        return
    m, k = a2.shape
    n = b.shape[0]
    why = triton_unavailable_reason()
    if why:
        raise RuntimeError(f"{WHAT}: {why}")
    sms = sm_count(a2.device)
    opt = options or env_override(tuned_options(m, n, k, group_k, out2.dtype, sms))
    if opt.split_k > 1 and out2.dtype != torch.float32:
        raise ValueError(f"{WHAT}: split_k > 1 needs fp32 out (got {out2.dtype})")
    if _cdiv(k, group_k) % opt.split_k:
        raise ValueError(f"{WHAT}: split_k {opt.split_k} does not divide the {_cdiv(k, group_k)} K blocks")
    no_tma = _tma_possible(a2, b) if opt.tma is not False else "off"
    if opt.tma and no_tma:
        raise ValueError(f"{WHAT}: options ask for TMA, but {no_tma}")
    # TMA where a GPU build compiles the kernel (also `solbench sass`), never picked in the interpreter.
    use_tma = opt.tma if opt.tma is not None else (no_tma is None and gpu_codegen(a2))

    import triton

    from solbench.kernels.gemm._block_fp8_kernel import _block_fp8_mm_kernel

    if use_tma:
        from triton.tools.tensor_descriptor import TensorDescriptor

        a_desc = TensorDescriptor.from_tensor(a2, [opt.block_m, group_k])
        b_desc = TensorDescriptor.from_tensor(b, [opt.block_n, group_k])
    else:
        a_desc = b_desc = None
    tiles = triton.cdiv(m, opt.block_m) * triton.cdiv(n, opt.block_n) * opt.split_k
    progs = max(1, min(tiles, sms * opt.programs_per_sm))
    if opt.split_k > 1:
        out2.zero_()
    _block_fp8_mm_kernel[(progs,)](
        a2, b, a_desc, b_desc, sa, sb, out2,
        m, n, k,
        a2.stride(0), b.stride(0), sa.stride(0), sa.stride(1), sb.stride(0), sb.stride(1), out2.stride(0),
        progs,
        GROUP_N=group_n, BLOCK_M=opt.block_m, BLOCK_N=opt.block_n, BLOCK_K=group_k,
        GROUP_M=opt.group_m, SPLIT_K=opt.split_k, USE_TMA=bool(use_tma), EVEN_K=k % group_k == 0,
        B_SCALE_PER_TILE=group_n % opt.block_n == 0, FLATTEN=opt.flatten,
        num_warps=opt.num_warps, num_stages=opt.num_stages,
    )
