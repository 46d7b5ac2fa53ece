"""What the kernel library and the benchmark both stand on, importing neither: whether our Triton
kernels can run here, which device this is, and the tuned launch tables
(:mod:`solbench.runtime.tuning`). Imports only the standard library until a function asks for
torch or triton."""
from __future__ import annotations

import functools
import os
import platform
import re
from pathlib import Path


def interpreting() -> bool:
    """True when Triton's CPU interpreter runs our kernels (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.lru_cache(maxsize=None)
def triton_import_error() -> str | None:
    """Why Triton cannot be imported here, or None when it can."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return f"triton is not importable ({type(e).__name__}: {e})"
    return None


def triton_unavailable_reason() -> str | None:
    """None when our Triton kernels can run here (a CUDA device, or the CPU under
    ``TRITON_INTERPRET=1``), else the reason they cannot."""
    err = triton_import_error()
    if err:
        return err
    import torch

    if torch.cuda.is_available() or interpreting():
        return None
    return "no CUDA device, and TRITON_INTERPRET=1 is not set (the CPU runs Triton only in its interpreter)"


def current_device():
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def device_name(device=None) -> str:
    import torch

    device = device or current_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def device_key(kind: str | None = None) -> str:
    """A filesystem-safe identity of the device: the name of its calibration and tuned tables."""
    if kind == "cpu" or (kind is None and current_device().type == "cpu"):
        name = f"cpu-{platform.machine()}-{os.cpu_count()}c"
    else:
        name = device_name()
    return key_of_name(name)


def key_of_name(name: str) -> str:
    """:func:`device_key` of a device called ``name`` (e.g. from a record's ``device``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def cache_root() -> Path:
    """Where solbench keeps per-device state (calibrations, tuned tables): ``$SOLBENCH_CACHE``,
    else ``~/.cache/solbench``."""
    return Path(os.environ.get("SOLBENCH_CACHE", Path.home() / ".cache" / "solbench"))
