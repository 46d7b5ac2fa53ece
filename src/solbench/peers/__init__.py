"""The peers: third-party and torch-native implementations the benchmark compares ours with.

This is the one place that imports them. A third-party package is optional (the benchmark never
installs it): :func:`optional_import` returns the module or attribute with a ``Support`` that
says why it is missing, so the report shows ``skip: <reason>`` instead of dropping the row. Each
adapter's call code stays in its operator's ``impls.py``::

    add_impl(Impl(OP, "liger", liger, available=lambda: LIGER.support(MODULE, NAME), baseline=True, ...))

with ``liger`` calling ``LIGER.get(MODULE, NAME)``.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any

from solbench.core.spec import Support


@functools.lru_cache(maxsize=None)
def optional_import(module: str, attr: str | None = None, *, package: str | None = None) -> tuple[Any, Support]:
    """``(module, or its attribute attr, Support.yes())``, or ``(None, Support.no(reason))`` when
    that does not import; ``package`` names the missing package in the reason (default: the
    module's top-level name). Imported once per process."""
    try:
        mod = importlib.import_module(module)
        return (getattr(mod, attr) if attr else mod), Support.yes()
    except Exception as e:  # noqa: BLE001 - a peer that cannot import is a skip, never the run's end
        who = package or module.split(".")[0]
        return None, Support.no(f"{who} is not importable ({type(e).__name__}: {str(e)[:120]})")


@dataclass(frozen=True)
class Library:
    """A third-party package whose kernels need a CUDA device."""

    package: str    # its name in the reasons
    no_cuda: str    # the reason given where there is no CUDA device

    def load(self, module: str, attr: str | None = None) -> tuple[Any, Support]:
        return optional_import(module, attr, package=self.package)

    def get(self, module: str, attr: str | None = None) -> Any:
        """The object, for the call code (which runs only once :meth:`support` said yes)."""
        obj, support = self.load(module, attr)
        if obj is None:
            raise RuntimeError(support.reason)
        return obj

    def support(self, module: str, attr: str | None = None) -> Support:
        """Whether ``module.attr`` imports and a CUDA device is there to run it."""
        import torch

        _, support = self.load(module, attr)
        if not support:
            return support
        if not torch.cuda.is_available():
            return Support.no(self.no_cuda)
        return Support.yes()


LIGER = Library("liger_kernel", "liger's kernels need a CUDA device")
# flag-gems is installed --no-deps (benchmarks/device.sh); importing it also needs sqlalchemy (its kernel-config
# cache, flag_gems.utils.libentry), PyYAML and packaging, and a GPU (it probes the device at import).
FLAG_GEMS = Library("flag_gems", "flag_gems' kernels need a CUDA device")
# flag_gems.flash_attn_varlen_func (vLLM's flash_attn_varlen_func signature) serves the paged and the dense
# varlen attention operators.
FLAG_GEMS_VARLEN_ATTENTION = ("flag_gems", "flash_attn_varlen_func")
# flash-linear-attention (pip install fla-core; it needs einops) is pure Triton. Its public functions
# are called as documented upstream; nothing of it is vendored. Adapters gather the pool rows a call
# uses (fla takes one initial state per sequence) and scatter the final states back, as a caller does.
FLA = Library("fla-core", "fla-core's kernels need a CUDA device")
VLLM = Library("vllm", "vLLM's quantization kernels need a CUDA device")


def fla_uses_exp2(module: str) -> bool:
    """Newer fla chunk kernels take log-decays in base 2 (they call exp2 on g); older ones call
    exp. The adapter converts ``g`` for whichever the installed module uses."""
    mod = FLA.get(module)
    return "exp2" in vars(mod) and "exp" not in vars(mod)


def flag_gems_head_support(head_dim: int) -> Support:
    """flag-gems' varlen flash attention asserts head sizes that are multiples of 8, at most 256
    (it pads to a power of two in registers, not in memory)."""
    if head_dim % 8 or head_dim > 256:
        return Support.no(f"flag_gems.flash_attn_varlen_func takes head sizes that are multiples of 8 up to 256 "
                          f"(got {head_dim})")
    return Support.yes()


def torch_rms_norm_support() -> Support:
    """torch.nn.functional.rms_norm, the torch_native peer of the RMS norms."""
    import torch.nn.functional as F

    if not hasattr(F, "rms_norm"):
        return Support.no("this torch has no torch.nn.functional.rms_norm (added in 2.4)")
    return Support.yes()
