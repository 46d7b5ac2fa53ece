"""Device-tuned launch configurations for our memory-bound kernels.

A kernel asks :func:`lookup` for its launch configuration by ``(kernel, n)`` (``n``: the row length,
or the GLU's ``d``). The answer comes from, in this order: an override (:func:`overriding`, how
``solbench tune`` tries candidates); this device's table, ``$SOLBENCH_CACHE/tuned/<device>.json``
written by ``solbench tune``, else the one shipped in ``solbench/runtime/tuned/``; else ``None``, and
the kernel uses its first-principles rule. ``SOLBENCH_TUNED=0`` ignores the tables and
``SOLBENCH_TUNED_TABLE=FILE`` uses that one instead (A/B runs; ``benchmarks/table_variant.py``).

Row-count tiers: a launch over fewer than :data:`FEW_ROWS_PER_SM` rows per SM (decode, small
prefill) is latency-bound, and one over at least :data:`MANY_ROWS_PER_SM` is a throughput question
of many waves; neither wants the regular key's tile, so they look up ``kernel@few_rows`` or
``kernel@many_rows`` first, then ``kernel``. A table holds only entries measured to beat, on that
device, what the shapes would use without them; each keeps its speedup and shapes.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping

TABLE_VERSION = 1

#: Below this many rows per SM a launch counts as "few rows" (see the module docstring).
FEW_ROWS_PER_SM = 4
FEW_ROWS_SUFFIX = "@few_rows"
#: From this many rows per SM on a launch counts as "many rows" (see the module docstring): the
#: boundary between the row counts where layer_norm's one-warp-per-row tile won and lost on the H200.
MANY_ROWS_PER_SM = 24
MANY_ROWS_SUFFIX = "@many_rows"
#: Keys of a row-count tier: each falls back to the kernel's regular key.
TIER_SUFFIXES = (FEW_ROWS_SUFFIX, MANY_ROWS_SUFFIX)

#: Kernel families, by name: the candidate generator of each, registered by the library module that
#: owns the family (:func:`register_family`). A look-up names its family, and ``solbench tune`` asks
#: that family's generator which configurations to try for the key.
_FAMILIES: dict[str, Callable[..., list]] = {}

_overrides: dict[tuple[str, int], dict] = {}
_recording: list[set] = []
_ignore_tables = 0  # > 0 inside first_principles()


def _cache_dir() -> Path:
    from solbench.runtime import cache_root

    return cache_root() / "tuned"


def packaged_dir() -> Path:
    return Path(__file__).with_name("tuned")


def user_table_path(device_key: str) -> Path:
    return _cache_dir() / f"{device_key}.json"


def packaged_table_path(device_key: str) -> Path:
    return packaged_dir() / f"{device_key}.json"


def read_table(path: str | os.PathLike) -> dict:
    """A tuned table file, validated: ``{"version", "device", "entries": {kernel: {n: cfg}}}``."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: not a readable tuned-config table ({e})") from None
    if not isinstance(data, dict) or data.get("version") != TABLE_VERSION or not isinstance(data.get("entries"), dict):
        raise ValueError(f"{p}: not a version-{TABLE_VERSION} tuned-config table")
    for kernel, by_n in data["entries"].items():
        if not isinstance(by_n, dict):
            raise ValueError(f"{p}: entries[{kernel!r}] must map row lengths to configs")
        for n, cfg in by_n.items():
            if not str(n).isdigit() or not isinstance(cfg, dict) or "config" not in cfg:
                raise ValueError(f"{p}: entries[{kernel!r}][{n!r}] must be {{'config': {{...}}, ...}}")
    return data


def _current_device_key() -> str | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
    except ImportError:
        return None
    from solbench.runtime import device_key

    return device_key()


@functools.lru_cache(maxsize=1)
def active_table() -> tuple[str, dict]:
    """(source, entries) for this device: the user's tuned table, else the packaged one, else
    ("first principles", {}). Cached; :func:`reload` forgets it."""
    if os.environ.get("SOLBENCH_TUNED", "1") == "0":
        return "first principles (SOLBENCH_TUNED=0)", {}
    chosen = os.environ.get("SOLBENCH_TUNED_TABLE")
    if chosen:  # a missing file is an error, not a silent fall-back to another table
        if not Path(chosen).is_file():
            raise FileNotFoundError(f"SOLBENCH_TUNED_TABLE={chosen}: no such tuned-config table")
        return str(chosen), read_table(chosen)["entries"]
    key = _current_device_key()
    if key is None:
        return "first principles", {}
    for path in (user_table_path(key), packaged_table_path(key)):
        if path.exists():
            return str(path), read_table(path)["entries"]
    return "first principles", {}


def reload() -> None:
    active_table.cache_clear()
    sm_count.cache_clear()


def source() -> str:
    """Where launch configurations come from on this device (recorded in every run's env)."""
    return active_table()[0]


def portable_source(src: str) -> str:
    """``src`` (a :func:`source`) without machine paths, for files that ship: a packaged table as
    ``solbench/runtime/tuned/<name>``, any other table file by its name, anything else unchanged."""
    if src.startswith("first principles"):
        return src
    p = Path(src)
    try:
        return "solbench/" + p.resolve().relative_to(packaged_dir().resolve().parents[1]).as_posix()
    except ValueError:
        return p.name


@functools.lru_cache(maxsize=1)
def sm_count() -> int | None:
    """The current CUDA device's SM count (None without one)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.get_device_properties(torch.cuda.current_device()).multi_processor_count)
    except Exception:  # noqa: BLE001 - no device facts
        return None


def few_rows_limit() -> int | None:
    """Row counts below this are "few rows" on the current device (None without a CUDA device)."""
    sms = sm_count()
    return FEW_ROWS_PER_SM * sms if sms else None


def many_rows_limit() -> int | None:
    """Row counts from this on are "many rows" on the current device (None without a CUDA device)."""
    sms = sm_count()
    return MANY_ROWS_PER_SM * sms if sms else None


def key_for(kernel: str, rows: int | None) -> str:
    """The table key a launch of ``rows`` rows uses first: ``kernel@few_rows`` below
    :func:`few_rows_limit`, ``kernel@many_rows`` from :func:`many_rows_limit` on, else ``kernel``."""
    return _tier(kernel, rows, few_rows_limit(), many_rows_limit())


def tier_key(kernel: str, rows: int | None, sms: int | None) -> str:
    """:func:`key_for` on a device of ``sms`` SMs (None: no tiers), for choices made away from it."""
    if not sms:
        return kernel
    return _tier(kernel, rows, FEW_ROWS_PER_SM * sms, MANY_ROWS_PER_SM * sms)


def _tier(kernel: str, rows: int | None, few: int | None, many: int | None) -> str:
    if rows is None:
        return kernel
    if few is not None and int(rows) < few:
        return kernel + FEW_ROWS_SUFFIX
    if many is not None and int(rows) >= many:
        return kernel + MANY_ROWS_SUFFIX
    return kernel


def base_kernel(key: str) -> str:
    """The regular key a tier's key (``kernel@few_rows``, ``kernel@many_rows``) falls back to."""
    for suffix in TIER_SUFFIXES:
        if key.endswith(suffix):
            return key[:-len(suffix)]
    return key


def is_tier_key(key: str) -> bool:
    return base_kernel(key) != key


def register_family(name: str, candidates: Callable[..., list]) -> None:
    """Declare kernel family ``name``: ``candidates(n, elem_bytes, rows, few_rows)`` lists the
    launch configurations (dicts, as a table entry's ``config``) worth measuring for a key of
    that family on rows of ``n`` elements, a launch of about ``rows`` rows."""
    _FAMILIES[name] = candidates


#: Operators whose library function chooses between backends per shape bucket (the tuned table's
#: ``{"backend": ...}`` entries, written from measured runs by ``solbench tune --backends-from``):
#: op name -> ``bucket(params) -> (kernel key, n, rows)``, the key and ``n`` the launch looks up.
_BACKEND_OPS: dict[str, Callable[[Mapping], tuple[str, int, int]]] = {}


def register_backend_choice(op: str, bucket: Callable[[Mapping], tuple[str, int, int]]) -> None:
    """Declare that ``op``'s library function picks its backend from the table, per ``bucket``."""
    _BACKEND_OPS[op] = bucket


def backend_bucket(op: str, params: Mapping) -> tuple[str, int, int] | None:
    """``(kernel key, n, rows)`` of a shape of ``op`` (its catalog params), None when ``op`` makes no
    backend choice."""
    bucket = _BACKEND_OPS.get(op)
    return bucket(params) if bucket else None


def families() -> tuple[str, ...]:
    return tuple(sorted(_FAMILIES))


def lookup_config(kernel: str, n: int, make: Callable, candidates: Callable[..., list], *, elem_bytes: int = 2):
    """The tuned entry of ``(kernel, n)`` as ``make(**entry)``, or None: no entry, or one that no
    longer fits the kernel's options (a table of another version: a warning names it and the
    launch takes its first-principles config instead of failing). For kernels whose candidates
    depend on more than ``n`` (a GEMM's N and K, a head size): each such key is its own family,
    ``candidates`` (:func:`register_family`'s signature) registered at the key's first look-up,
    before ``solbench tune`` asks for them."""
    if kernel not in _FAMILIES:
        register_family(kernel, candidates)
    cfg = lookup(kernel, n, family=kernel, elem_bytes=elem_bytes)
    if cfg is None:
        return None
    try:
        return make(**cfg)
    except (TypeError, ValueError) as e:
        import warnings

        warnings.warn(f"tuned table entry {kernel}:{n} is not a valid config ({e}); using the first-principles "
                      "launch", stacklevel=2)
        return None


def _check_family(family: str) -> None:
    if family not in _FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}; known: {', '.join(families())}")


def candidates(family: str, n: int, elem_bytes: int, rows: int, few_rows: bool = False) -> list[dict]:
    """The configurations ``solbench tune`` measures for a key of ``family`` (see
    :func:`register_family`)."""
    _check_family(family)
    return _FAMILIES[family](n, elem_bytes, rows, few_rows)


def _find(kernel: str, n: int) -> dict | None:
    key = (kernel, int(n))
    if key in _overrides:
        return dict(_overrides[key])
    if _ignore_tables:
        return None
    entry = active_table()[1].get(kernel, {}).get(str(int(n)))
    return dict(entry["config"]) if entry else None


def lookup(kernel: str, n: int, *, family: str, elem_bytes: int = 2, rows: int | None = None) -> dict | None:
    """The tuned configuration for ``kernel`` on rows of ``n`` elements of ``elem_bytes`` bytes,
    or None. ``family`` (a :func:`register_family` name, e.g. "row" for a kernels/rowwise tile)
    says which candidates ``solbench tune`` may try for it. With ``rows`` in a tier (below
    :func:`few_rows_limit`, from :func:`many_rows_limit` on) the ``kernel@few_rows`` or
    ``kernel@many_rows`` entry comes first, then ``kernel``'s (the key recorded for ``tune`` is
    the first one looked at)."""
    return lookup_keyed(kernel, n, family=family, elem_bytes=elem_bytes, rows=rows)[0]


def lookup_keyed(kernel: str, n: int, *, family: str, elem_bytes: int = 2,
                 rows: int | None = None) -> tuple[dict | None, str | None]:
    """:func:`lookup` and the key its configuration came from (None with no configuration).
    Callers use the key to tell a few-rows entry, measured on launches of this size, from the
    regular one, measured on larger launches, whose rows per program may then leave SMs idle
    (see kernels/common.fill_sms)."""
    _check_family(family)
    first = key_for(kernel, rows)
    for rec in _recording:
        rec.add((first, int(n), family, int(elem_bytes)))
    for key in dict.fromkeys((first, kernel)):
        cfg = _find(key, n)
        if cfg is not None:
            return cfg, key
    return None, None


@contextlib.contextmanager
def overriding(kernel: str, n: int, config: Mapping | None) -> Iterator[None]:
    """Use ``config`` for ``(kernel, n)`` inside the block (None: the first-principles rule)."""
    key = (kernel, int(n))
    old = _overrides.pop(key, None)
    if config is not None:
        _overrides[key] = dict(config)
    try:
        yield
    finally:
        _overrides.pop(key, None)
        if old is not None:
            _overrides[key] = old


@contextlib.contextmanager
def recording() -> Iterator[set]:
    """Collect the ``(kernel, n, family, elem_bytes)`` of every look-up inside the block."""
    keys: set = set()
    _recording.append(keys)
    try:
        yield keys
    finally:
        _recording.remove(keys)


@contextlib.contextmanager
def first_principles() -> Iterator[None]:
    """Ignore the tuned tables inside the block (what the kernels would do untuned)."""
    global _ignore_tables
    _ignore_tables += 1
    try:
        yield
    finally:
        _ignore_tables -= 1
