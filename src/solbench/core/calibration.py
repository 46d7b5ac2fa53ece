"""Measure the current device's achievable ceilings (used by ``solbench calibrate``).

* Copy bandwidth: a device-to-device copy by an SM kernel, bytes read + written, timed with the
  graph timer. torch's ``copy_`` is not used: captured in a CUDA graph it becomes a copy-engine
  memcpy node, which is much slower than the SMs (2.76 vs 4.25 TB/s seen on an H200).
* Dense matmul throughput per dtype path, random data: bf16 and fp16 (``torch.matmul``), and fp8
  e4m3 with its own fp8 matmul (per-tensor ``torch._scaled_mm``, cuBLASLt's fp8 tensor-core GEMM)
  where the part has fp8 tensor cores. The fp8 rate is measured, never derived from bf16: it is
  the ceiling of the fp8 paths' achievable SOL (``sol_achievable_us``). Without it (no CUDA, a
  part without fp8, a torch without ``_scaled_mm``) ``fp8_matmul`` says why and there is no fp8
  peak; core/hardware then keeps the datasheet's fp8 rate.
* The launch floor: one empty kernel per graph node, under graph replay.
* The cold floor: a kernel that reads one 128-byte line from HBM and writes one, under graph
  replay with the run's cold-L2 rule (:func:`cold_floor`). No kernel of any size can beat it, so
  ``s_floor = max(SOL, cold floor) / T`` says how far a decode-sized call is from the floor.
* On request (``calibrate --by-size``), the same copy at the sizes kernels actually move (8 MB to
  1 GB read + written), with the run's cold-L2 rule: what a copy reaches at a given size is the
  most a memory-bound kernel of that size can expect. The calibrated bandwidth comes from 1 GiB
  copies and amortizes a fixed cost (launch, ramp-up, the last wave) that weighs a few
  microseconds at every size; see :func:`copy_by_size`.
"""
from __future__ import annotations

import time

from solbench.core.timing import quantiles, time_cpu, time_gpu


def _triton_copy():
    try:
        import triton
        import triton.language as tl
    except ImportError:
        return None

    @triton.jit
    def _copy_kernel(src, dst, n, BLOCK: tl.constexpr):
        pid = tl.program_id(0).to(tl.int64)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(dst + offs, tl.load(src + offs, mask=mask), mask=mask)

    @triton.jit
    def _empty_kernel(x):
        pass

    def copy(src, dst):
        n = src.numel()
        block = 8192
        _copy_kernel[(triton.cdiv(n, block),)](src, dst, n, BLOCK=block, num_warps=8)

    def empty(x):
        _empty_kernel[(1,)](x)

    return copy, empty


def _measure_cuda(quick: bool, progress) -> dict:
    import torch

    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    l2 = int(getattr(props, "L2_cache_size", 0) or 0)
    out = {"peaks": {}, "l2_bytes": l2, "sm_count": props.multi_processor_count, "extra": {}}
    tri = _triton_copy()

    def step(msg):
        if progress:
            progress(msg)

    # --- copy bandwidth ------------------------------------------------------------------------
    step("copy bandwidth")
    nbytes = 1 << 30  # 1 GiB each way: ~20x the L2 of current parts
    n = nbytes // 4
    srcs = [torch.randn(n, device=dev) for _ in range(2)]
    dsts = [torch.empty_like(s) for s in srcs]
    candidates = {}
    if tri is not None:
        copy, _ = tri
        t = time_gpu(lambda i, srcs=srcs, dsts=dsts: copy(srcs[i], dsts[i]), 2, flush=False)
        candidates["triton_copy"] = 2 * nbytes / (t.median_us * 1e-6)
    # An elementwise torch kernel (x*1 into out=) runs on the SMs as well.
    t = time_gpu(lambda i, srcs=srcs, dsts=dsts: torch.mul(srcs[i], 1.0, out=dsts[i]), 2, flush=False)
    candidates["torch_elementwise"] = 2 * nbytes / (t.median_us * 1e-6)
    best = max(candidates, key=candidates.get)
    out["bandwidth"] = candidates[best]
    out["extra"].update({f"bandwidth_{k}": v for k, v in candidates.items()})
    out["bandwidth_kernel"] = best
    del srcs, dsts

    # --- matmul --------------------------------------------------------------------------------
    size = 4096 if quick else 8192
    for path, dtype in (("bf16_tc", torch.bfloat16), ("fp16_tc", torch.float16)):
        step(f"matmul {path}")
        a = [torch.randn(size, size, device=dev, dtype=dtype) for _ in range(2)]
        b = [torch.randn(size, size, device=dev, dtype=dtype) for _ in range(2)]
        c = [torch.empty(size, size, device=dev, dtype=dtype) for _ in range(2)]
        t = time_gpu(lambda i, a=a, b=b, c=c: torch.matmul(a[i], b[i], out=c[i]), 2, flush=False)
        out["peaks"][path] = 2 * size**3 / (t.median_us * 1e-6)
        del a, b, c
    why = fp8_unsupported(props.major * 10 + props.minor)
    if why:
        out["fp8_matmul"] = {"skipped": why}
    else:
        step("matmul fp8")
        try:
            out["peaks"]["fp8_e4m3_tc"] = fp8_matmul_rate(dev, size, time_gpu)
            out["fp8_matmul"] = {"kernel": FP8_KERNEL, "size": size}
        except Exception as e:  # noqa: BLE001 - report, do not fail calibration
            out["fp8_matmul"] = {"skipped": f"{type(e).__name__}: {str(e)[:200]}"}

    # --- launch floor --------------------------------------------------------------------------
    step("launch floor")
    x = torch.empty(1, device=dev)
    if tri is not None:
        _, empty = tri
        t = time_gpu(lambda i: empty(x), 1, flush=False, target_sample_us=400)
        out["launch_floor_kernel"] = "triton_empty"
    else:
        t = time_gpu(lambda i: x.add_(0), 1, flush=False, target_sample_us=400)
        out["launch_floor_kernel"] = "torch_add_"
    out["launch_floor_us"] = t.median_us
    step("cold floor")
    out["extra"].update(cold_floor())
    return out


#: One cache line, the least a kernel that reads its input and writes its output can move each way.
COLD_FLOOR_BYTES = 128


def cold_floor() -> dict:
    """The time of the smallest real kernel: one 128-byte line read from HBM and one written
    (``torch.mul(x, 1, out=)`` on 32 fp32, the kernel family of the copy calibration), graph
    replayed with the cold-L2 rule ``solbench run`` applies to a call of that size (one this small
    cannot rotate input sets past the L2, so the L2 is flushed and the flush time subtracted).
    Returns ``{"cold_floor_us": median, "cold_floor_cold_l2": "flush" | "rotate"}``."""
    import torch

    from solbench.core.timing import l2_bytes_of, plan_sets

    dev = torch.device("cuda")
    n = COLD_FLOOR_BYTES // 4
    n_sets, flush = plan_sets(2 * COLD_FLOOR_BYTES, l2_bytes_of(dev), bytes_written=COLD_FLOOR_BYTES)
    srcs = [torch.randn(n, device=dev) for _ in range(n_sets)]
    dsts = [torch.empty_like(x) for x in srcs]
    t = time_gpu(lambda i, srcs=srcs, dsts=dsts: torch.mul(srcs[i], 1.0, out=dsts[i]), n_sets, flush=flush)
    return {"cold_floor_us": t.median_us, "cold_floor_cold_l2": t.cold_l2}


FP8_KERNEL = "torch._scaled_mm, per-tensor scales, e4m3 x e4m3 -> bf16 (cuBLASLt)"


def fp8_unsupported(capability: int | None) -> str | None:
    """Why this device's fp8 matmul rate cannot be measured (``capability``: 10 * major + minor,
    None for no CUDA device), or None when it can."""
    import torch

    if capability is None:
        return "no CUDA device (fp8 tensor cores are measured on the GPU only)"
    if capability < 89:
        return f"sm_{capability} has no fp8 tensor cores (sm_89 and newer have)"
    if not hasattr(torch, "_scaled_mm"):
        return f"torch {torch.__version__} has no torch._scaled_mm"
    return None


def fp8_matmul_rate(dev, size: int, timer) -> float:
    """FLOP/s of a square fp8 e4m3 GEMM (``size``^3, per-tensor scales, bf16 out) on ``dev``,
    timed by ``timer(fn, n_sets, flush=False)`` over two input sets, as the bf16 rate is."""
    import torch

    a = [torch.randn(size, size, device=dev).to(torch.float8_e4m3fn) for _ in range(2)]
    # cuBLASLt's fp8 GEMM takes the second operand column-major.
    b = [torch.randn(size, size, device=dev).to(torch.float8_e4m3fn).t() for _ in range(2)]
    one = torch.ones((), device=dev)
    t = timer(lambda i: torch._scaled_mm(a[i], b[i], scale_a=one, scale_b=one, out_dtype=torch.bfloat16),
              2, flush=False)
    return 2 * size**3 / (t.median_us * 1e-6)


#: Bytes moved (read + written) per copy in :func:`copy_by_size`.
BY_SIZE_BYTES = tuple(1 << k for k in range(23, 31))  # 8 MiB .. 1 GiB


def copy_by_size(sizes=BY_SIZE_BYTES, progress=None) -> list[dict]:
    """The SM copy (``torch.mul(x, 1, out=)``, the kernel the calibrated bandwidth came from)
    timed at each total size with the graph timer and the cold-L2 rule of ``solbench run`` for an
    implementation with ``out=`` buffers (rotating sets where they fit, else a flush). Returns
    ``[{"bytes": moved, "us": median, "bandwidth": bytes/s, "cold_l2": "rotate" | "flush"}]``."""
    import torch

    from solbench.core.timing import l2_bytes_of, plan_sets

    dev = torch.device("cuda")
    l2 = l2_bytes_of(dev)
    rows = []
    for moved in sizes:
        if progress:
            progress(f"copy of {moved / 2**20:.0f} MiB")
        n = max(1, moved // 2 // 4)
        n_sets, flush = plan_sets(moved, l2, bytes_written=moved / 2)
        srcs = [torch.randn(n, device=dev) for _ in range(n_sets)]
        dsts = [torch.empty_like(x) for x in srcs]
        t = time_gpu(lambda i, srcs=srcs, dsts=dsts: torch.mul(srcs[i], 1.0, out=dsts[i]), n_sets, flush=flush)
        rows.append({"bytes": 2 * n * 4, "us": t.median_us, "bandwidth": 2 * n * 4 / (t.median_us * 1e-6),
                     "cold_l2": t.cold_l2})
        del srcs, dsts
    return rows


def _measure_cpu(quick: bool, progress) -> dict:
    import torch

    if progress:
        progress("copy bandwidth")
    n = (64 << 20) // 4
    src, dst = torch.randn(n), torch.empty(n)
    t = time_cpu(lambda i: dst.copy_(src), 1, budget_s=0.3)
    bw = 2 * n * 4 / (t.median_us * 1e-6)
    if progress:
        progress("matmul fp32")
    size = 512 if quick else 1024
    a, b = torch.randn(size, size), torch.randn(size, size)
    c = torch.empty(size, size)
    t = time_cpu(lambda i: torch.matmul(a, b, out=c), 1, budget_s=0.3)
    fp32 = 2 * size**3 / (t.median_us * 1e-6)
    t = time_cpu(lambda i: None, 1, budget_s=0.05, max_samples=1000)
    # The CPU's cold floor: the smallest real copy (one line each way; its caches stay warm).
    s1, d1 = torch.randn(COLD_FLOOR_BYTES // 4), torch.empty(COLD_FLOOR_BYTES // 4)
    t1 = time_cpu(lambda i: torch.mul(s1, 1.0, out=d1), 1, budget_s=0.05, max_samples=1000)
    return {"peaks": {"fp32": fp32, "bf16_tc": fp32, "fp16_tc": fp32}, "bandwidth": bw,
            "launch_floor_us": t.median_us, "l2_bytes": None,
            "extra": {"cold_floor_us": t1.median_us, "cold_floor_cold_l2": "warm"},
            "fp8_matmul": {"skipped": fp8_unsupported(None)}}


def measure(quick: bool = False, progress=None) -> dict:
    import torch

    t0 = time.time()
    data = _measure_cuda(quick, progress) if torch.cuda.is_available() else _measure_cpu(quick, progress)
    data["seconds"] = round(time.time() - t0, 2)
    data["quick"] = quick
    return data


__all__ = ["measure", "quantiles"]
