"""The nsys SQLite export (``nsys export --type sqlite``): ``CUPTI_ACTIVITY_KIND_KERNEL`` with names
from ``StringIds``; memcpy/memset activity when present; ``CUPTI_ACTIVITY_KIND_RUNTIME`` joined
through ``correlationId`` to flag kernels replayed by ``cudaGraphLaunch``. Timestamps are ns."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from solbench.profiles.model import Kernel, Profile, ProfileError

SQLITE_MAGIC = b"SQLite format 3\x00"


def _columns(con, table: str) -> set[str]:
    return {row[1] for row in con.execute(f"PRAGMA table_info({table})")}


def read_nsys_sqlite(path: str | Path) -> Profile:
    path = Path(path)
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as e:
        raise ProfileError(path, f"not a readable SQLite database: {e}") from None
    try:
        for need in ("CUPTI_ACTIVITY_KIND_KERNEL", "StringIds"):
            if need not in tables:
                raise ProfileError(path, f"no table {need} (is this an nsys export with CUDA trace enabled? "
                                         f"tables: {', '.join(sorted(tables)) or 'none'})")
        kcols = _columns(con, "CUPTI_ACTIVITY_KIND_KERNEL")
        missing = {"start", "end", "correlationId"} - kcols
        name_col = next((c for c in ("demangledName", "shortName", "mangledName") if c in kcols), None)
        if missing or name_col is None:
            lacking = sorted(missing | ({"demangledName"} if name_col is None else set()))
            raise ProfileError(path, f"table CUPTI_ACTIVITY_KIND_KERNEL lacks column(s) {', '.join(lacking)}")
        graph_launch: set[int] = set()
        if "CUPTI_ACTIVITY_KIND_RUNTIME" in tables:
            rcols = _columns(con, "CUPTI_ACTIVITY_KIND_RUNTIME")
            if {"correlationId", "nameId"} <= rcols:
                graph_launch = {r[0] for r in con.execute(
                    "SELECT r.correlationId FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s ON s.id = r.nameId "
                    "WHERE s.value LIKE 'cudaGraphLaunch%'")}
        stream = "k.streamId" if "streamId" in kcols else "0"
        graph_node = "k.graphNodeId" if "graphNodeId" in kcols else "NULL"
        prof = Profile(path=str(path), format="nsys_sqlite", ordered=True)
        rows = con.execute(
            f"SELECT s.value, k.start, k.end, {stream}, k.correlationId, {graph_node} "
            f"FROM CUPTI_ACTIVITY_KIND_KERNEL k LEFT JOIN StringIds s ON s.id = k.{name_col}")
        for name, start, end, strm, corr, node in rows:
            if name is None:
                raise ProfileError(path, f"kernel with correlationId {corr} names a string id missing from StringIds")
            prof.kernels.append(Kernel(name=name, total_us=(end - start) / 1e3, stream=int(strm or 0),
                                       start_us=start / 1e3, graph=corr in graph_launch or bool(node)))
        for table, label in (("CUPTI_ACTIVITY_KIND_MEMCPY", "[CUDA memcpy]"),
                             ("CUPTI_ACTIVITY_KIND_MEMSET", "[CUDA memset]")):
            if table in tables and {"start", "end"} <= _columns(con, table):
                s = "streamId" if "streamId" in _columns(con, table) else "0"
                for start, end, strm in con.execute(f"SELECT start, end, {s} FROM {table}"):
                    prof.kernels.append(Kernel(name=label, total_us=(end - start) / 1e3, stream=int(strm or 0),
                                               start_us=start / 1e3))
    except sqlite3.DatabaseError as e:
        raise ProfileError(path, f"SQLite error: {e}") from None
    finally:
        con.close()
    if not prof.kernels:
        raise ProfileError(path, "CUPTI_ACTIVITY_KIND_KERNEL is empty")
    prof.kernels.sort(key=lambda k: (k.stream, k.start_us))
    return prof
