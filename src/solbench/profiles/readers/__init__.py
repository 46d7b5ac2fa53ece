"""Profile readers. ``read_profile(path)`` detects the format from the content (not the name) and
returns one :class:`~solbench.profiles.model.Profile` per profile in the file (a log may hold
several key_averages tables)."""
from __future__ import annotations

import re
from pathlib import Path

from solbench.profiles.model import Profile, ProfileError
from solbench.profiles.readers.chrome import read_chrome_trace
from solbench.profiles.readers.nsys_sqlite import SQLITE_MAGIC, read_nsys_sqlite
from solbench.profiles.readers.tables import read_nsys_text, read_torch_tables, sniff_text

FORMATS = ("auto", "nsys_kern_sum", "nsys_gpu_trace", "nsys_sqlite", "torch_table", "chrome_trace")


def detect_format(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.strip():
        raise ProfileError(path, "empty file")
    if head.startswith(SQLITE_MAGIC):
        return "nsys_sqlite"
    # JSON: an object, or the bare event array "[{...". A log line may start with "[" too ("[rank0]: ...").
    if head[:2] == b"\x1f\x8b" or head.lstrip()[:1] == b"{" or re.match(rb"\s*\[\s*(\{|\]|$)", head):
        return "chrome_trace"
    try:
        text = head.decode("utf-8", errors="strict" if len(head) < 4096 else "ignore")
    except UnicodeDecodeError:
        raise ProfileError(path, "binary file of unknown format (expected nsys CSV/table/SQLite, a torch "
                                 "profiler table, or a Chrome trace)") from None
    kind = sniff_text(text)
    if kind is None:
        # The header may come after a long preamble (a server log around a key_averages table).
        kind = sniff_text(Path(path).read_text(encoding="utf-8", errors="replace"))
    if kind == "torch_table":
        return "torch_table"
    if kind == "nsys":
        return "nsys_text"
    raise ProfileError(path, "unrecognized profile: no nsys cuda_gpu_kern_sum / cuda_gpu_trace header, no torch "
                             "profiler key_averages table, not a Chrome trace or nsys SQLite export")


def read_profile(path: str | Path, collect_shapes: bool = False) -> list[Profile]:
    path = Path(path)
    if not path.exists():
        raise ProfileError(path, "no such file")
    if path.is_dir():
        raise ProfileError(path, "is a directory")
    fmt = detect_format(path)
    if fmt == "nsys_sqlite":
        return [read_nsys_sqlite(path)]
    if fmt == "chrome_trace":
        return [read_chrome_trace(path, collect_shapes=collect_shapes)]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError(path, f"not UTF-8 text: {e}") from None
    if fmt == "torch_table":
        profiles = read_torch_tables(path, text)
        if not profiles:
            raise ProfileError(path, "mentions key_averages columns but holds no complete table "
                                     "(dashed rule, header, dashed rule, rows, dashed rule)")
        return profiles
    return read_nsys_text(path, text)


__all__ = ["FORMATS", "Profile", "ProfileError", "detect_format", "read_profile"]
