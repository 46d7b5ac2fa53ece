"""Baseline helpers shared by every operator: torch.compile that really compiles every shape."""
from __future__ import annotations

import time
from typing import Callable

from solbench.core.spec import Support


def configure_dynamo() -> None:
    """The torch.compile settings of every compiled peer: a recompile limit that a whole catalog
    operator's shapes cannot reach, an error (not a silent eager fall-back) if one is reached
    anyway, and no compile caches carried over from earlier processes."""
    import torch._dynamo.config as cfg

    # Compile once with dynamic shapes, and make hitting the recompile limit an error instead of a
    # silent fall back to eager (which would publish eager numbers under the torch_compile name).
    for key, value in (("recompile_limit", 256), ("cache_size_limit", 256),
                       ("accumulated_recompile_limit", 4096), ("accumulated_cache_size_limit", 4096),
                       ("fail_on_recompile_limit_hit", True)):
        if hasattr(cfg, key):
            setattr(cfg, key, value)
    # No state from earlier processes: with Inductor's on-disk FX-graph / autotune caches and
    # dynamo's automatic-dynamic profiles on, what torch_compile generates depends on what ran
    # before on the machine (a reused graph ran 10-20% slower: docs/DECISIONS.md). Every run
    # compiles cold, so torch_compile figures (and compile_s) are reproducible.
    import torch._inductor.config as inductor_cfg

    for mod, key in ((inductor_cfg, "fx_graph_cache"), (inductor_cfg, "fx_graph_remote_cache"),
                     (inductor_cfg, "autotune_local_cache"), (inductor_cfg, "autotune_remote_cache"),
                     (inductor_cfg, "bundled_autotune_remote_cache"), (cfg, "automatic_dynamic_local_pgo"),
                     (cfg, "automatic_dynamic_remote_pgo")):
        if hasattr(mod, key):
            setattr(mod, key, False)


def compile_support() -> Support:
    try:
        import torch

        if not hasattr(torch, "compile"):
            return Support.no("this torch has no torch.compile")
    except ImportError as e:
        return Support.no(f"torch is not importable: {e}")
    return Support.yes()


class Compiled:
    """``torch.compile(fn, dynamic=True, fullgraph=True)``; remembers per-call compile time.

    ``prepare(shape, inputs_fn)`` calls it once on the shape's inputs and reports the seconds that
    first call took (compilation, or a cache hit) as ``compile_s``: compile time is reported
    separately, never inside the timed figure.
    """

    def __init__(self, fn: Callable, name: str):
        self.fn = fn
        self.name = name
        self._compiled = None
        self._traced_first = False

    @property
    def compiled(self):
        if self._compiled is None:
            import torch

            configure_dynamo()
            self._compiled = torch.compile(self.fn, dynamic=True, fullgraph=True)
        return self._compiled

    def __call__(self, *args, **kwargs):
        return self.compiled(*args, **kwargs)

    def warm(self, inputs: dict, first: Callable[[], tuple[str, dict] | None] | None = None) -> dict:
        """Call once on ``inputs``. ``first``, on the first warm-up only, returns ``(label,
        inputs)`` to call before them (or None: nothing to call): the dynamic-shape graph is then
        traced, and its kernels autotuned, on those inputs (see :func:`_largest_inputs`)."""
        import torch
        from torch._dynamo.utils import counters

        on_gpu = any(getattr(v, "is_cuda", False) for v in inputs.values())
        before = sum(counters["stats"].values()) if "stats" in counters else 0
        facts = {}
        t0 = time.perf_counter()
        with torch.no_grad():
            if first is not None and not self._traced_first:
                self._traced_first = True
                traced = first()
                if traced is not None:
                    label, first_inputs = traced
                    self(**first_inputs)
                    if on_gpu:
                        torch.cuda.synchronize()
                    del first_inputs, traced
                    facts["first_traced_on"] = label
            self(**inputs)
        if on_gpu:
            torch.cuda.synchronize()
        frames = (sum(counters["stats"].values()) if "stats" in counters else 0) - before
        return {"compile_s": round(time.perf_counter() - t0, 3), "dynamo_events": frames, **facts}


def register_torch_baselines(op: str, eager_fn: Callable, description: str = "",
                             supports: Callable | None = None) -> None:
    """Register ``torch_eager`` (the natural PyTorch formulation a user would write) and
    ``torch_compile`` (the same function compiled with dynamic shapes) for ``op``.

    ``eager_fn`` takes the operator's inputs as keyword arguments and returns its outputs.
    ``supports(shape, device)``, when given, applies to both (e.g. a formulation that would
    materialize more memory than the device has refuses with the reason).
    """
    from solbench.core.spec import Impl, _always, add_impl

    add_impl(Impl(op, "torch_eager", eager_fn, supports=supports or _always, baseline=True,
                  description=description or "eager PyTorch"))
    compiled = Compiled(eager_fn, f"{op}.torch_compile")
    supported = supports or _always

    def prepare(shape, inputs):
        device = next((v.device for v in inputs.values() if getattr(v, "is_cuda", False)), None)
        first = (lambda: _largest_inputs(op, device, supported)) if device is not None else None
        return compiled.warm(inputs, first=first)

    add_impl(Impl(op, "torch_compile", compiled, available=compile_support, supports=supported,
                  baseline=True, prepare=prepare,
                  description="torch.compile(dynamic=True, fullgraph=True) of torch_eager, first traced "
                              "on the operator's largest catalog shape"))


#: The largest inputs torch_compile is first traced on (bytes moved by the shape).
FIRST_TRACE_MAX_BYTES = 2 << 30


def _largest_inputs(op: str, device, supports: Callable) -> tuple[str, dict] | None:
    """``(label, inputs)`` of ``op``'s catalog shape that moves the most bytes (at most
    :data:`FIRST_TRACE_MAX_BYTES`) and that ``supports`` accepts on ``device``.

    Why: Inductor autotunes each generated kernel on its first launch and keeps the winner for
    every later shape of the dynamic graph; traced on a microsecond-scale launch, timing noise
    picks it, and torch_compile moved by up to 1.5x between runs (docs/DECISIONS.md). Serving
    frameworks warm their compiled graphs up at their largest batch; so does this."""
    from solbench.core.spec import get_spec

    spec = get_spec(op)
    fits = [s for s in spec.shapes if spec.cost(s).total_bytes <= FIRST_TRACE_MAX_BYTES and supports(s, device)]
    if not fits:  # traced on the first shape a run reaches, as before
        return None
    shape = max(fits, key=lambda s: spec.cost(s).total_bytes)
    return f"shape {shape.id}", spec.make_inputs(shape, device, 0)


def triton_support() -> Support:
    """Our Triton kernels run on a CUDA device, or on the CPU under ``TRITON_INTERPRET=1``."""
    from solbench.runtime import triton_unavailable_reason

    why = triton_unavailable_reason()
    return Support.no(why) if why else Support.yes()
