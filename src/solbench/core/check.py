"""Correctness checker: every implementation, every shape, before anything is timed.

Per seed: fresh random inputs; the reference runs on its own copy (implementations may work in
place); ``out=`` outputs are poisoned with NaN (integers with a sentinel) before the call, and on
CUDA the allocator is poisoned too, so an output nobody wrote can never look right. Floating
outputs are compared element-wise (|got - ref| <= atol + rtol |ref|) and by RMS-relative error;
NaN or Inf fails; integer outputs must match exactly unless the operator is structural, in which
case its own invariants decide. Outputs must be plain dense tensors of the declared dtype.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from solbench.core.spec import Impl, OpSpec, Shape, Tolerance

#: Input copies the checker may keep alive between seeds (see check_impls).
HOLD_BYTES = 4 << 30
INT_POISON = -0x5A5A5A5  # an unlikely index/count: shows up as wrong in any exact comparison
DEFAULT_SEEDS = (0, 1, 2)


@dataclass
class CheckResult:
    ok: bool
    reason: str = ""
    max_abs: float = 0.0
    max_rel: float = 0.0
    rms_rel: float = 0.0
    seeds: list[int] = field(default_factory=list)

    def to_record(self) -> dict:
        return {"ok": self.ok, "reason": self.reason, "max_abs": _finite(self.max_abs),
                "max_rel": _finite(self.max_rel), "rms_rel": _finite(self.rms_rel), "seeds": self.seeds}


def _finite(x: float):
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None


def poison_(t) -> None:
    import torch

    if t.is_floating_point():
        if t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            t.view(torch.uint8).fill_(0x7F if t.dtype == torch.float8_e4m3fn else 0x7E)  # NaN bit patterns
        else:
            t.fill_(float("nan"))
    elif t.dtype == torch.bool:
        t.fill_(True)
    else:
        t.fill_(INT_POISON if t.element_size() >= 4 else -1)


def poison_allocator(device, nbytes: int) -> None:
    """Make the CUDA caching allocator hand out NaN-filled memory for the next allocations, so
    that implementations which allocate their own outputs are poisoned as well."""
    import torch

    if device.type != "cuda" or nbytes <= 0:
        return
    blocks = [torch.full((int(nbytes) // 4 + 1024,), float("nan"), device=device) for _ in range(4)]
    del blocks


def clone_inputs(inputs: Mapping[str, Any]) -> dict:
    import torch

    return {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in inputs.items()}


def _fmt_index(flat_idx: int, shape) -> str:
    idx = []
    for s in reversed(list(shape)):
        idx.append(flat_idx % s if s else 0)
        flat_idx = flat_idx // s if s else 0
    return "(" + ", ".join(str(i) for i in reversed(idx)) + ")"


def compare_tensor(name: str, got, ref, tol: Tolerance) -> tuple[list[str], dict]:
    """Errors (empty when ``got`` matches ``ref``) and error statistics for one output."""
    import torch

    stats = {"max_abs": 0.0, "max_rel": 0.0, "rms_rel": 0.0}
    if not isinstance(got, torch.Tensor):
        return [f"{name}: expected a tensor, got {type(got).__name__}"], stats
    if tuple(got.shape) != tuple(ref.shape):
        return [f"{name}: shape {tuple(got.shape)}, expected {tuple(ref.shape)}"], stats
    if got.numel() == 0:
        return [], stats
    if not ref.is_floating_point():
        if got.dtype.is_floating_point:
            return [f"{name}: dtype {got.dtype}, expected integer {ref.dtype}"], stats
        bad = got.to(torch.int64) != ref.to(torch.int64)
        n_bad = int(bad.sum())
        if n_bad:
            i = int(bad.flatten().nonzero()[0])
            first = f"{_fmt_index(i, got.shape)} (got {int(got.flatten()[i])}, expected {int(ref.flatten()[i])})"
            return [f"{name}: {n_bad} of {got.numel()} integers differ, first at {first}"], stats
        return [], stats
    return _compare_floats(name, got.detach().reshape(-1), ref.detach().reshape(-1), tuple(got.shape), tol)


# Elements compared per step in float64: bounds the checker's temporaries to a few hundred MB
# however large the output (a 700k x 2048 fp32 GEMM output would need 11 GiB in one piece).
COMPARE_CHUNK_ELEMS = 1 << 24


def _compare_floats(name: str, g_flat, r_flat, shape: tuple, tol: Tolerance) -> tuple[list[str], dict]:
    import torch

    n = g_flat.numel()
    n_nf = n_over = 0
    first_nf = worst_i = -1
    worst_over = -1.0
    max_abs = max_rel = 0.0
    err_sq = ref_sq = 0.0
    g_lo = g_hi = r_lo = r_hi = None
    floor = tol.atol if tol.atol > 0 else 1e-30
    for start in range(0, n, COMPARE_CHUNK_ELEMS):
        g = g_flat[start:start + COMPARE_CHUNK_ELEMS].to(torch.float64)
        r = r_flat[start:start + COMPARE_CHUNK_ELEMS].to(torch.float64)
        both = torch.isfinite(r)
        nonfinite = ~torch.isfinite(g) & both
        k = int(nonfinite.sum())
        if k:
            if first_nf < 0:
                first_nf = start + int(nonfinite.nonzero()[0])
            n_nf += k
            continue
        diff = (g - r).abs().where(both, torch.zeros_like(g))
        max_abs = max(max_abs, float(diff.max()))
        max_rel = max(max_rel, float((diff / r.abs().clamp_min(floor)).max()))
        r_fin = r.where(both, torch.zeros_like(r))
        err_sq += float(torch.linalg.vector_norm(diff)) ** 2
        ref_sq += float(torch.linalg.vector_norm(r_fin)) ** 2
        over = diff > tol.atol + tol.rtol * r.abs()
        k = int(over.sum())
        if k:
            n_over += k
            d_over = diff.where(over, torch.zeros_like(diff))
            i = int(d_over.argmax())
            if float(d_over[i]) > worst_over:
                worst_over, worst_i = float(d_over[i]), start + i
        g_lo = float(g.min()) if g_lo is None else min(g_lo, float(g.min()))
        g_hi = float(g.max()) if g_hi is None else max(g_hi, float(g.max()))
        r_lo = float(r_fin.min()) if r_lo is None else min(r_lo, float(r_fin.min()))
        r_hi = float(r_fin.max()) if r_hi is None else max(r_hi, float(r_fin.max()))
    stats = {"max_abs": 0.0, "max_rel": 0.0, "rms_rel": 0.0}
    if n_nf:
        return [f"{name}: {n_nf} of {n} elements are NaN/Inf (first at {_fmt_index(first_nf, shape)}; "
                "unwritten or overflowed)"], stats
    err_norm, ref_norm = math.sqrt(err_sq), math.sqrt(ref_sq)
    stats = {"max_abs": max_abs, "max_rel": max_rel,
             "rms_rel": err_norm / ref_norm if ref_norm > 0 else (0.0 if err_norm == 0 else math.inf)}
    errors = []
    # A few outliers may be allowed where upstream's own tests judge by RMS error (long bf16
    # recurrences), but never more than the spec's fraction, and the RMS bound still applies.
    if n_over > tol.outlier_frac * n:
        errors.append(f"{name}: {n_over} of {n} elements outside atol={tol.atol:g} rtol={tol.rtol:g}"
                      + (f" (allowed {tol.outlier_frac:g} of them)" if tol.outlier_frac else "")
                      + f"; worst at {_fmt_index(worst_i, shape)}: got {float(g_flat[worst_i]):.6g}, "
                      f"expected {float(r_flat[worst_i]):.6g}")
    if tol.rms_rtol is not None and stats["rms_rel"] > tol.rms_rtol:
        errors.append(f"{name}: RMS-relative error {stats['rms_rel']:.3g} > {tol.rms_rtol:g}")
    # A constant output where the reference varies is never right, however loose the tolerance.
    if n > 1 and r_hi > r_lo and g_hi == g_lo:
        errors.append(f"{name}: constant output ({float(g_flat[0]):.6g}) where the reference varies")
    return errors, stats


def plain_tensor_errors(name: str, t, device) -> list[str]:
    """Outputs must be ordinary dense tensors on the device under test (no subclasses, no lazy
    wrappers, no tensors left on another device)."""
    import torch

    if not isinstance(t, torch.Tensor):
        return [f"{name}: not a tensor ({type(t).__name__})"]
    errs = []
    if type(t) is not torch.Tensor and not isinstance(t, torch.nn.Parameter):
        errs.append(f"{name}: a {type(t).__name__} subclass, not a plain torch.Tensor")
    if t.layout != torch.strided:
        errs.append(f"{name}: layout {t.layout}, expected dense strided")
    if t.device.type != torch.device(device).type:
        errs.append(f"{name}: on {t.device}, expected {device}")
    return errs


def compare_outputs(spec: OpSpec, shape: Shape, inputs, got: Mapping, ref: Mapping, device) -> tuple[list[str], dict]:
    errors: list[str] = []
    agg = {"max_abs": 0.0, "max_rel": 0.0, "rms_rel": 0.0}
    missing = [n for n in ref if n not in got]
    if missing:
        return [f"missing outputs {missing}; expected {list(ref)}"], agg
    for name in ref:
        errors += plain_tensor_errors(name, got[name], device)
    for name in ref:
        if got[name].dtype != ref[name].dtype:
            errors.append(f"{name}: dtype {got[name].dtype}, expected {ref[name].dtype}")
    if errors:
        return errors, agg
    errors += spec.check_invariants(shape, inputs, got, ref)
    g_view, r_view = spec.compare_views(shape, inputs, got, ref)
    tol = spec.tolerance(shape)
    for name, r in r_view.items():
        if spec.structural and not r.is_floating_point():
            continue  # structural integer outputs are judged by check_invariants
        errs, stats = compare_tensor(name, g_view[name], r, tol)
        errors += errs
        for k in agg:
            agg[k] = max(agg[k], stats[k])
    return errors, agg


def run_impl(spec: OpSpec, impl: Impl, shape: Shape, inputs: dict, outs=None):
    """Call an implementation the way the runner does and return ``{name: tensor}``."""
    if impl.takes_out and outs is not None:
        ret = impl.fn(**inputs, out=outs if len(spec.output_names) > 1 else outs[0])
        if ret is None:
            ret = outs if len(spec.output_names) > 1 else outs[0]
        return spec.normalize_outputs(ret)
    return spec.normalize_outputs(impl.fn(**inputs))


def _check_one(spec: OpSpec, impl: Impl, shape: Shape, device, inputs, ref,
               impl_inputs: dict) -> tuple[list[str], dict]:
    """Run ``impl`` once on ``impl_inputs`` (a copy of ``inputs``; NaN-poisoned outputs and
    allocator) and compare with ``ref``. Returns (errors, stats); a raised exception is an error."""
    import torch

    outs = None
    if impl.takes_out:
        outs = spec.make_outputs(shape, impl_inputs)
        if outs is not None:
            outs = tuple(outs)
            for t in outs:
                poison_(t)
    out_bytes = sum(r.numel() * r.element_size() for r in ref.values())
    poison_allocator(device, out_bytes)
    try:
        with torch.no_grad():
            got = run_impl(spec, impl, shape, impl_inputs, outs)
        if device.type == "cuda":
            torch.cuda.synchronize()
    except Exception as e:  # noqa: BLE001 - an implementation's crash is its FAIL verdict
        return [f"raised {type(e).__name__}: {str(e)[:300]}"], {}
    return compare_outputs(spec, shape, inputs, got, ref, device)


def check_impls(spec: OpSpec, impls: Sequence[Impl], shape: Shape, device,
                seeds: Sequence[int] = DEFAULT_SEEDS) -> dict[str, CheckResult]:
    """Check several implementations of one shape: ``{impl.name: CheckResult}``.

    The seed loop is the outer one, so each seed's inputs and fp32 reference are made once and
    judged against every implementation (the reference is often the most expensive call of a
    shape). An implementation that fails a seed is not run on the later ones. Inputs/reference
    failures (e.g. out of memory) propagate."""
    import torch

    agg = {i.name: {"max_abs": 0.0, "max_rel": 0.0, "rms_rel": 0.0} for i in impls}
    results: dict[str, CheckResult] = {}
    # Each implementation's copy of the previous seed's inputs stays alive until its copy of the
    # next seed's exists, so the two never share an address: a kernel that memoizes outputs by
    # input pointer cannot replay the previous seed's answer (it is left to the fresh-input audit).
    # One copy per implementation is held; with many implementations of a multi-GB shape (our
    # own, in `run`) only while that stays under HOLD_BYTES.
    held: dict[str, dict] = {}
    hold = None
    for seed in seeds:
        live = [i for i in impls if i.name not in results]
        if not live:
            break
        inputs = spec.make_inputs(shape, device, seed)
        with torch.no_grad():
            ref = spec.normalize_outputs(spec.reference(**clone_inputs(inputs)))
        if hold is None:
            copy_bytes = sum(v.numel() * v.element_size() for v in inputs.values() if isinstance(v, torch.Tensor))
            hold = len(impls) == 1 or copy_bytes * len(impls) <= HOLD_BYTES
        for impl in live:
            impl_inputs = clone_inputs(inputs)
            if hold:
                held[impl.name] = impl_inputs
            errors, stats = _check_one(spec, impl, shape, device, inputs, ref, impl_inputs)
            del impl_inputs
            for k in agg[impl.name]:
                agg[impl.name][k] = max(agg[impl.name][k], stats.get(k, 0.0))
            if errors:
                results[impl.name] = CheckResult(False, f"seed {seed}: " + "; ".join(errors[:3]),
                                                 seeds=list(seeds), **agg[impl.name])
        # The next seed's tensors are made before these are released, so they get fresh addresses.
    for impl in impls:
        results.setdefault(impl.name, CheckResult(True, "", seeds=list(seeds), **agg[impl.name]))
    return results


def check_impl(spec: OpSpec, impl: Impl, shape: Shape, device, seeds: Sequence[int] = DEFAULT_SEEDS) -> CheckResult:
    """Check one implementation on one shape (see :func:`check_impls`)."""
    return check_impls(spec, [impl], shape, device, seeds)[impl.name]
