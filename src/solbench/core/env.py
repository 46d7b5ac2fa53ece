"""The environment every record carries: device, driver, clocks, versions, timer, commit."""
from __future__ import annotations

import functools
import os
import platform
import subprocess
from pathlib import Path


def _run(cmd: list[str], cwd=None) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=cwd)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def git_commit() -> str | None:
    if os.environ.get("SOLBENCH_COMMIT"):
        return os.environ["SOLBENCH_COMMIT"]
    here = Path(__file__).resolve().parent
    commit = _run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here)
    if commit and _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here):
        commit += "-dirty"
    return commit


def _gpu_facts() -> dict:
    # The UUID tells two runs on one GPU from runs on two GPUs of one model (`solbench compare`
    # says so): two H200s of one model timed every implementation about 1% apart (docs/DECISIONS.md).
    out = _run(["nvidia-smi", "--query-gpu=driver_version,clocks.sm,clocks.mem,clocks.max.sm,power.limit,uuid",
                "--format=csv,noheader,nounits"])
    if not out:
        return {}
    first = out.splitlines()[0].split(",")
    keys = ["driver", "clock_sm_mhz", "clock_mem_mhz", "clock_sm_max_mhz", "power_limit_w", "gpu_uuid"]
    return {k: v.strip() for k, v in zip(keys, first)}


@functools.lru_cache(maxsize=None)
def _static_env() -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
           "commit": git_commit()}
    try:
        import triton

        env["triton"] = triton.__version__
    except Exception:  # noqa: BLE001
        env["triton"] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env.update({"device": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
                    "sm_count": props.multi_processor_count, "capability": f"{props.major}.{props.minor}",
                    "memory_gb": round(props.total_memory / 2**30, 1)})
    else:
        env.update({"device": "cpu", "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()})
    return env


def environment(timer: str) -> dict:
    """Static facts plus what can change between runs (clocks are read now)."""
    env = dict(_static_env())
    env["timer"] = timer
    env["triton_interpret"] = os.environ.get("TRITON_INTERPRET") == "1"
    from solbench.runtime import tuning

    env["launch_configs"] = tuning.source()  # tuned table in use, or "first principles"
    if env.get("device") != "cpu":
        env.update(_gpu_facts())
    return env


def running_clocks(device) -> dict:
    """The SM and memory clocks now, for records of work just timed on ``device`` ({} off CUDA).

    Read right after a shape's timing, while the GPU still runs at the clocks it was timed at:
    the clocks of :func:`environment`, read when a run starts, are those of an idle GPU (an H200
    showed 345 of 1980 MHz there)."""
    if getattr(device, "type", None) != "cuda":
        return {}
    try:  # NVML through torch: no process start
        import torch

        sm = torch.cuda.clock_rate(device)
        return {"clock_sm_mhz": str(sm)} if sm else {}
    except Exception:  # noqa: BLE001 - no pynvml: ask nvidia-smi
        pass
    out = _run(["nvidia-smi", f"--id={device.index or 0}", "--query-gpu=clocks.sm,clocks.mem",
                "--format=csv,noheader,nounits"])
    if not out:
        return {}
    sm, _, mem = out.splitlines()[0].partition(",")
    return {"clock_sm_mhz": sm.strip(), "clock_mem_mhz": mem.strip()}
