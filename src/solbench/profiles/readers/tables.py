"""Text tables: the CSV and human-readable variants of nsys ``cuda_gpu_kern_sum`` and
``cuda_gpu_trace``, and the torch profiler's ``key_averages().table()``."""
from __future__ import annotations

import csv
import re
from pathlib import Path

from solbench.profiles.model import Kernel, Profile, ProfileError
from solbench.profiles.readers.numbers import NumberFormatError, detect_decimal_comma, parse_number, parse_time_us

_UNIT_IN_HEADER = re.compile(r"\((ns|us|μs|µs|ms|s)\)")


def _norm(h: str) -> str:
    return re.sub(r"[\s_]+", "", h.strip().lower())


def _header_unit(h: str, default: str = "ns") -> str:
    # nsys always reported ns; newer versions say so in the header, older ones ("Average") did not.
    m = _UNIT_IN_HEADER.search(h)
    return m.group(1) if m else default


def _find(headers: list[str], *candidates: str) -> int | None:
    normed = [_norm(h) for h in headers]
    for c in candidates:
        for i, h in enumerate(normed):
            if h == c or re.sub(r"\(.*\)$", "", h) == c:
                return i
    return None


def _is_truncated(name: str) -> bool:
    return name.endswith("...")


# ---- nsys kern_sum / gpu_trace: locate the header, then read rows as CSV or as an aligned table --

def _nsys_kind(headers: list[str]) -> str | None:
    n = [_norm(h) for h in headers]
    has = lambda *c: _find(headers, *c) is not None  # noqa: E731
    if not has("name"):
        return None
    if has("totaltime", "total") and not has("start"):
        return "kern_sum"
    if has("start") and has("duration"):
        return "gpu_trace"
    return "kern_sum" if any(x.startswith("time(%)") or x == "time%" for x in n) else None


def _split_aligned(line: str, n_numeric: int, numeric_first: bool) -> list[str] | None:
    """Cells of an aligned table row: separated by tabs, or by two or more spaces. The name is the
    remainder of the line (names may contain single spaces, commas and parentheses)."""
    if "\t" in line:
        cells = [c.strip() for c in line.split("\t") if c.strip()]
        if numeric_first and len(cells) > n_numeric + 1:
            cells = cells[:n_numeric] + ["\t".join(cells[n_numeric:])]
        return cells
    spans = [m.span() for m in re.finditer(r"\S+(?: \S+)*", line)]
    if len(spans) < n_numeric + 1:
        return None
    cells = [line[a:b] for a, b in spans[:n_numeric]]
    return cells + [line[spans[n_numeric][0]:].strip()]


def _header_cells(line: str) -> list[str]:
    if "\t" in line:
        return [c.strip() for c in line.split("\t") if c.strip()]
    return [c.strip() for c in re.split(r"\s{2,}", line.strip()) if c.strip()]


def read_nsys_text(path: Path, text: str) -> Profile:
    lines = text.splitlines()
    header_idx = None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        looks_csv = line.count(",") >= 2 and not re.search(r"\S\s{2,}\S", line.strip())
        cells = next(csv.reader([line])) if looks_csv else _header_cells(line)
        if _nsys_kind([c.strip() for c in cells]):
            header_idx, headers = i, [c.strip() for c in cells]
            break
    if header_idx is None:
        raise ProfileError(path, "no nsys header found: expected a `cuda_gpu_kern_sum` header "
                                 "(Time (%), Total Time (ns), Instances, ..., Name) or a `cuda_gpu_trace` "
                                 "header (Start (ns), Duration (ns), ..., Name)")
    kind = _nsys_kind(headers)
    head = lines[header_idx]
    is_csv = head.count(",") >= 2 and not re.search(r"\S\s{2,}\S", head.strip())
    body_start = header_idx + 1
    spans = None
    if body_start < len(lines) and re.fullmatch(r"[\s\-]+", lines[body_start] or "x"):
        # The dash rule under a human-readable header gives the column spans; slicing by them keeps
        # empty cells (memcpy rows of cuda_gpu_trace have no grid or registers) in their columns.
        rule_spans = [m.span() for m in re.finditer(r"-+", lines[body_start])]
        if len(rule_spans) == len(headers) and "\t" not in head:
            spans = rule_spans
        body_start += 1
    body = [(j + 1, lines[j]) for j in range(body_start, len(lines)) if lines[j].strip()]
    name_col = _find(headers, "name")
    if name_col != len(headers) - 1:
        raise ProfileError(path, f"expected 'Name' to be the last column, got {headers}", header_idx + 1)
    if is_csv:
        rows = []
        for lineno, line in body:
            cells = next(csv.reader([line]))
            if len(cells) != len(headers):
                raise ProfileError(path, f"expected {len(headers)} CSV fields, got {len(cells)} "
                                         "(a truncated row, or a name with an unquoted comma?)", lineno)
            rows.append((lineno, cells))
    else:
        rows = []
        for lineno, line in body:
            if line.strip().startswith(("Processing", "SKIPPED", "**")):
                continue
            if spans is not None:
                cells = [line[a:b if k < len(spans) - 1 else None].strip() for k, (a, b) in enumerate(spans)]
            else:
                cells = _split_aligned(line, len(headers) - 1, numeric_first=True)
            if cells is None or len(cells) != len(headers):
                raise ProfileError(path, f"expected {len(headers)} columns, got {0 if cells is None else len(cells)}",
                                   lineno)
            rows.append((lineno, cells))
    if not rows:
        raise ProfileError(path, "the table has a header but no rows", header_idx + 1)
    dec_comma = detect_decimal_comma(c for _, cells in rows for c in cells[:-1])
    prof = Profile(path=str(path), format=f"nsys_{kind}_{'csv' if is_csv else 'table'}",
                   ordered=kind == "gpu_trace")

    def num(cells, col, lineno, what):
        try:
            return parse_number(cells[col], dec_comma)[0]
        except NumberFormatError as e:
            raise ProfileError(path, f"column {headers[col]!r} ({what}): {e}", lineno) from None

    def dur(cells, col, lineno):
        try:
            return parse_time_us(cells[col], _header_unit(headers[col]), dec_comma)
        except NumberFormatError as e:
            raise ProfileError(path, f"column {headers[col]!r}: {e}", lineno) from None

    if kind == "kern_sum":
        total_col = _find(headers, "totaltime", "total")
        inst_col = _find(headers, "instances", "calls", "count")
        if total_col is None:
            raise ProfileError(path, f"missing the 'Total Time (ns)' column in {headers}", header_idx + 1)
        for lineno, cells in rows:
            name = cells[name_col].strip()
            if not name:
                raise ProfileError(path, "empty kernel name", lineno)
            count = int(num(cells, inst_col, lineno, "instances")) if inst_col is not None else 1
            prof.kernels.append(Kernel(name=name, total_us=dur(cells, total_col, lineno), count=count,
                                       truncated=_is_truncated(name), line=lineno))
    else:
        start_col, dur_col = _find(headers, "start"), _find(headers, "duration")
        strm_col = _find(headers, "strm", "stream", "streamid")
        for lineno, cells in rows:
            name = cells[name_col].strip()
            prof.kernels.append(Kernel(
                name=name, total_us=dur(cells, dur_col, lineno), start_us=dur(cells, start_col, lineno),
                stream=int(num(cells, strm_col, lineno, "stream")) if strm_col is not None else 0,
                truncated=_is_truncated(name), line=lineno))
        prof.kernels.sort(key=lambda k: (k.stream, k.start_us))
    return prof


# ---- torch profiler key_averages().table() ---------------------------------------------------------

_DASH_RULE = re.compile(r"^-+(?:\s+-+)+\s*$")
_DEVICE_TIME_COLS = ("selfcuda", "selfdevice", "selfxpu", "selfhip", "selfmtia")


def _spans(rule: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"-+", rule)]


def read_torch_tables(path: Path, text: str) -> list[Profile]:
    """Every key_averages table in the text (a log may hold several). Device rows are the ones with
    no CPU time: kernels, memcpy and memset. CPU operator rows also carry device time (the kernels
    they launched), so counting them too would count kernels twice."""
    lines = text.splitlines()
    profiles = []
    i = 0
    while i < len(lines):
        if not (_DASH_RULE.match(lines[i]) and i + 2 < len(lines) and _DASH_RULE.match(lines[i + 2])
                and "Name" in lines[i + 1]):
            i += 1
            continue
        spans = _spans(lines[i])
        header_line = lines[i + 1]
        headers = [header_line[a:b if k < len(spans) - 1 else None].strip() for k, (a, b) in enumerate(spans)]
        start = i + 3
        j = start
        while j < len(lines) and not _DASH_RULE.match(lines[j]):
            j += 1
        if j >= len(lines):
            raise ProfileError(path, "key_averages table is not closed by a dashed rule (truncated file?)",
                               i + 1)
        profiles.append(_torch_table(path, headers, spans, lines, start, j, len(profiles)))
        i = j + 1
    return profiles


def _torch_table(path, headers, spans, lines, start, end, index) -> Profile:
    hdr_line = start - 1
    name_col = _find(headers, "name")
    dev_col = _find(headers, *_DEVICE_TIME_COLS)
    cpu_total_col = _find(headers, "cputotal")
    self_cpu_col = _find(headers, "selfcpu")
    calls_col = _find(headers, "#ofcalls")
    missing = [n for n, c in (("Name", name_col), ("Self CUDA", dev_col), ("CPU total", cpu_total_col),
                              ("# of Calls", calls_col)) if c is None]
    if missing:
        raise ProfileError(path, f"key_averages table lacks column(s) {', '.join(missing)}; got {headers} "
                                 "(kernels are told from CPU operators by their zero CPU time)", hdr_line)
    suffix = f"#{index}" if index else ""
    prof = Profile(path=f"{path}{suffix}", format="torch_key_averages")

    def cell(line, k):
        a, b = spans[k]
        return line[a:b if k < len(spans) - 1 else None].strip()

    for lineno in range(start, end):
        line = lines[lineno]
        if not line.strip():
            continue
        try:
            dev_us = parse_time_us(cell(line, dev_col), "us")
            cpu_us = parse_time_us(cell(line, cpu_total_col), "us")
            self_cpu = parse_time_us(cell(line, self_cpu_col), "us") if self_cpu_col is not None else 0.0
            calls = int(parse_number(cell(line, calls_col))[0])
        except NumberFormatError as e:
            raise ProfileError(path, f"{e} (is the row shifted against the header?)", lineno + 1) from None
        if cpu_us == 0 and self_cpu == 0 and dev_us > 0:
            name = cell(line, name_col)
            prof.kernels.append(Kernel(name=name, total_us=dev_us, count=calls, truncated=_is_truncated(name),
                                       line=lineno + 1))
    # The footer states the device total; a table cut by row_limit shows less than that.
    for line in lines[end:end + 4]:
        m = re.match(r"\s*Self (?:CUDA|Device|XPU) time total:\s*(\S+)", line)
        if m:
            total = parse_time_us(m.group(1), "us")
            shown = prof.total_us
            if total > 0 and abs(shown - total) > 0.01 * total:
                prof.notes.append(f"device rows sum to {shown:.1f} us but the footer says {total:.1f} us "
                                  "(device time not shown as a row, e.g. rows cut by row_limit, is missing from the shares)")
    if not prof.kernels:
        raise ProfileError(path, "key_averages table has no device rows (no kernel time recorded; was the "
                                 "profiler run with ProfilerActivity.CUDA?)", start)
    return prof


def sniff_text(text: str) -> str | None:
    head = text[:20000]
    if re.search(r"Self (?:CUDA|Device|XPU)\b", head) and "# of Calls" in head:
        return "torch_table"
    for line in head.splitlines()[:50]:
        if "Name" in line and (re.search(r"Total\s*Time|Duration|Time\s*\(%\)|Time\(%\)", line)):
            return "nsys"
    return None
