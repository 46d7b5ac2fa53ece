"""Text tables: nsys ``cuda_gpu_kern_sum`` / ``cuda_gpu_trace`` in every form nsys prints or people
paste (CSV, column-aligned text, the boxed ``--format table``, markdown, the GUI copy with units in
the cells), and the torch profiler's ``key_averages().table()``.

Tables are found by their content: a header line naming the columns, then rows. Cells are read by
what they hold (numbers, then the name), so a row that does not line up with the header or the dashed
rule is still read right; where the reader has to guess it says so, with the line number.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from solbench.profiles.model import Kernel, Profile, ProfileError
from solbench.profiles.readers.numbers import NumberFormatError, detect_decimal_comma, parse_number, parse_time_us

_UNIT_IN_HEADER = re.compile(r"\((ns|us|μs|µs|ms|s)\)")
# A cut name: "..." (torch, hand edits) or "…" (U+2026, nsys tables).
_CUT_MARKS = ("...", "\u2026")


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
    return name.endswith(_CUT_MARKS)


# ---- nsys: find each report's table, read its rows by content ------------------------------------

# nsys names the report above its table: " ** CUDA GPU Kernel Summary (cuda_gpu_kern_sum):" or
# "[6/8] Executing 'cuda_gpu_kern_sum' stats report".
_REPORT_TAG = re.compile(r"\((\w+)\):\s*$|Executing '(\w+)' stats report")
_KERNEL_REPORTS = {"cuda_gpu_kern_sum": "kern_sum", "gpukernsum": "kern_sum", "cuda_gpu_kern_gb_sum": "kern_sum",
                   "gpukerngbsum": "kern_sum", "cuda_gpu_trace": "gpu_trace", "gputrace": "gpu_trace"}
# A line standing for rows left out: "...", "…", "[...]", possibly inside table borders.
_ELISION = re.compile(r"^\s*\|?\s*(?:\.\.\.|\u2026|\[\.\.\.\]|\(\.\.\.\))(?:\s*\|)?\s*$")
_RULE = re.compile(r"^\s*[+|]?[\s\-=:+|]*-[\s\-=:+|]*$")
# One numeric cell of an aligned row: a number with an optional unit glued on or one space away.
_NUM_CELL = r"[-+]?(?:\d[\d,.'\u202f\u00a0]*|[.,]\d+)(?: ?(?:ns|us|μs|µs|ms|sec|s|%))?"
# Labels nsys and its GUI print, for a header whose cells are separated by single spaces.
_LABELS = re.compile(r"Time\s*\(%\)|Total Time(?: \(\w+\))?|Num Calls|Instances|Count|Avg(?: \(\w+\))?|Average|"
                     r"Med(?: \(\w+\))?|Min(?: \(\w+\))?|Minimum|Max(?: \(\w+\))?|Maximum|StdDev(?: \(\w+\))?|"
                     r"GridXYZ|BlockXYZ|Start(?: \(\w+\))?|Duration(?: \(\w+\))?|Name|Time")


def _nsys_kind(headers: list[str]) -> str | None:
    n = [_norm(h) for h in headers]
    has = lambda *c: _find(headers, *c) is not None  # noqa: E731
    if not has("name"):
        return None
    if has("start") and has("duration"):
        return "gpu_trace"
    if has("numcalls") and not has("instances"):
        return "api"      # cuda_api_sum, osrt_sum: CPU calls, not kernels
    if has("totaltime", "total"):
        return "kern_sum"
    return "kern_sum" if any(x.startswith("time(%)") or x == "time%" for x in n) else None


def _style(line: str) -> str:
    s = line.strip()
    if s.startswith("|"):
        return "box"
    if "\t" in s:
        return "tab"
    if s.count(",") >= 2 and not re.search(r"\S\s{2,}\S", s):
        return "csv"
    return "space"


def _box_cells(s: str) -> list[str]:
    s = s.strip()
    s = s[1:] if s.startswith("|") else s
    s = s[:-1] if s.endswith("|") else s
    return [c.strip() for c in s.split("|")]


def _header_cells(line: str, style: str) -> list[str]:
    if style == "box":
        return _box_cells(line)
    if style == "tab":
        return [c.strip() for c in line.split("\t") if c.strip()]
    if style == "csv":
        return [c.strip() for c in next(csv.reader([line.strip()]))]
    cells = [c.strip() for c in re.split(r"\s{2,}", line.strip()) if c.strip()]
    if len(cells) < 3:  # single spaces between the labels (a copy that lost its padding)
        cells = _LABELS.findall(line)
    return cells


def _report_tag(lines: list[str], i: int) -> str | None:
    """The report named just above a header, not one named above an earlier table."""
    own_border = True  # the rule right above a boxed header is the table's own
    for j in range(i - 1, max(-1, i - 8), -1):
        m = _REPORT_TAG.search(lines[j])
        if m:
            return m.group(1) or m.group(2)
        is_rule = bool(_RULE.match(lines[j]) and lines[j].strip())
        own_border = own_border and is_rule
        if (is_rule and not own_border) or re.match(r"^\s*\|?\s*[-+]?\d", lines[j]):
            break
    return None


def read_nsys_text(path: Path, text: str) -> list[Profile]:
    """Every kernel table (``cuda_gpu_kern_sum``, ``cuda_gpu_kern_gb_sum``, ``cuda_gpu_trace``) in the
    text. Other ``nsys stats`` reports in the same file (cuda_api_sum, nvtx_sum, ...) are skipped."""
    lines = text.splitlines()
    profiles: list[Profile] = []
    skipped: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if "Name" not in line and "name" not in line:
            i += 1
            continue
        style = _style(line)
        headers = _header_cells(line, style)
        kind = _nsys_kind(headers)
        tag = _report_tag(lines, i)
        if kind is None:
            i += 1
            continue
        if (tag is not None and tag not in _KERNEL_REPORTS) or kind == "api":
            skipped.append(f"{tag or 'a CPU-call report'} (line {i + 1})")
            i = _skip_table(lines, i + 1)
            continue
        if tag is not None and _KERNEL_REPORTS[tag] != kind:
            raise ProfileError(path, f"the {tag} report's header has the columns of a {kind} table: {headers}", i + 1)
        prof, i = _nsys_table(path, lines, i, style, headers, kind, len(profiles))
        profiles.append(prof)
    if not profiles:
        if skipped:
            raise ProfileError(path, "holds nsys reports but no kernel table (cuda_gpu_kern_sum or cuda_gpu_trace); "
                                     "skipped: " + ", ".join(skipped))
        raise ProfileError(path, "no nsys header found: expected a `cuda_gpu_kern_sum` header "
                                 "(Time (%), Total Time (ns), Instances, ..., Name) or a `cuda_gpu_trace` "
                                 "header (Start (ns), Duration (ns), ..., Name)")
    if skipped:
        profiles[0].notes.append("skipped other nsys reports: " + ", ".join(skipped))
    return profiles


def _skip_table(lines: list[str], i: int) -> int:
    while i < len(lines) and lines[i].strip():
        i += 1
    return i


def _nsys_table(path, lines, header_idx, style, headers, kind, index) -> tuple[Profile, int]:
    name_col = _find(headers, "name")
    if name_col != len(headers) - 1:
        raise ProfileError(path, f"expected 'Name' to be the last column, got {headers}", header_idx + 1)
    ncols = len(headers)
    # Columns that may be empty or hold several words (grid sizes, devices, memory kinds) need the dashed
    # rule's spans; a table of numbers and a name is read by content alone.
    numeric_only = kind == "kern_sum" and _find(headers, "gridxyz", "blockxyz") is None
    j = header_idx + 1
    spans = None
    while j < len(lines) and _RULE.match(lines[j]) and lines[j].strip():
        if style == "space" and "-" in lines[j]:
            rule_spans = [m.span() for m in re.finditer(r"-+", lines[j])]
            if len(rule_spans) == ncols:
                spans = rule_spans
        j += 1
    rows: list[tuple[int, list[str]]] = []
    elided: list[int] = []
    misaligned: list[int] = []
    while j < len(lines):
        line = lines[j]
        s = line.strip()
        lineno = j + 1
        if not s:
            if rows or elided:
                break
            j += 1
            continue
        if _ELISION.match(line):
            elided.append(lineno)
            j += 1
            continue
        if _RULE.match(line):          # the closing rule of a boxed or markdown table
            j += 1
            if rows:
                break
            continue
        cells = _row_cells(path, line, lineno, style, ncols, numeric_only, spans, misaligned)
        if cells is None:
            if re.match(r"^\|?\s*[-+]?\d", s):
                raise ProfileError(path, f"expected {ncols} columns ({', '.join(headers)}); cannot split this row",
                                   lineno)
            break                      # text after the table
        rows.append((lineno, cells))
        j += 1
    if not rows:
        raise ProfileError(path, "the table has a header but no rows", header_idx + 1)
    suffix = f"#{index}" if index else ""
    fmt = {"box": "table", "space": "table", "tab": "table", "csv": "csv"}[style]
    prof = Profile(path=f"{path}{suffix}", format=f"nsys_{kind}_{fmt}", ordered=kind == "gpu_trace")
    if misaligned:
        prof.warn(misaligned[0], f"{len(misaligned)} row(s) do not line up with the column rule (first here); "
                                 "their cells were read by content, not by position")
    dec_comma = _decimal_mark(prof, rows)
    _fill_nsys(path, prof, headers, kind, rows, header_idx, dec_comma)
    if kind == "kern_sum":
        _check_kern_sum_totals(path, prof, headers, rows, elided, dec_comma)
    elif elided:
        prof.notes.append(f"rows elided at line(s) {', '.join(map(str, elided))}: kernels there are not counted")
    return prof, j


def _row_cells(path, line, lineno, style, ncols, numeric_only, spans, misaligned) -> list[str] | None:
    if style == "csv":
        cells = next(csv.reader([line.strip()]))
        if len(cells) != ncols:
            raise ProfileError(path, f"expected {ncols} CSV fields, got {len(cells)} "
                                     "(a truncated row, or a name with an unquoted comma?)", lineno)
        return cells
    if style == "box":
        cells = _box_cells(line)
        if len(cells) < ncols:
            return None
        # A name holding "|" was split with the borders: join it back.
        return cells[:ncols - 1] + ["|".join(cells[ncols - 1:]).strip()]
    if style == "tab":
        cells = [c.strip() for c in line.split("\t") if c.strip()]
        if len(cells) > ncols:
            cells = cells[:ncols - 1] + ["\t".join(cells[ncols - 1:])]
        return cells if len(cells) == ncols else None
    if numeric_only:
        m = re.match(rf"^\s*((?:{_NUM_CELL}\s+){{{ncols - 1}}})(\S.*?)\s*$", line)
        if m is None:
            return None
        cells = re.findall(rf"{_NUM_CELL}(?=\s)", m.group(1)) + [m.group(2)]
        if len(cells) != ncols:
            return None
        if spans is not None and _sliced(line, spans) != cells:
            misaligned.append(lineno)
        return cells
    if spans is None:
        return _split_aligned(line, ncols - 1)
    cells = _sliced(line, spans)
    if cells is not None:
        return cells
    # The row, or its tail from some column on, sits a few characters off the rule: read it at the
    # offset where every cell boundary falls on a space, and say so.
    for k in range(len(spans)):
        for d in (-1, 1, -2, 2, -3, 3):
            shifted = spans[:k] + [(a + d, b + d) for a, b in spans[k:]]
            if shifted[0][0] >= 0 and all(shifted[i][1] < shifted[i + 1][0] for i in range(len(shifted) - 1)) \
                    and (cells := _sliced(line, shifted)) is not None:
                misaligned.append(lineno)
                return cells
    raise ProfileError(path, "the row does not line up with the column rule and has empty cells, so its columns "
                             "cannot be told apart", lineno)


def _sliced(line: str, spans) -> list[str] | None:
    """Cells cut at the rule's spans, or None when a cut falls inside a word (the row is misaligned)."""
    for k, (a, b) in enumerate(spans):
        if a > 0 and a <= len(line) and line[a - 1] != " " and line[a:a + 1].strip():
            return None
        if k < len(spans) - 1 and b < len(line) and line[b] != " " and line[b - 1:b].strip():
            return None
    return [line[a:b if k < len(spans) - 1 else None].strip() for k, (a, b) in enumerate(spans)]


def _split_aligned(line: str, n_numeric: int) -> list[str] | None:
    """Cells separated by two or more spaces; the name is the rest of the line (it may hold spaces)."""
    spans = [m.span() for m in re.finditer(r"\S+(?: \S+)*", line)]
    if len(spans) < n_numeric + 1:
        return None
    return [line[a:b] for a, b in spans[:n_numeric]] + [line[spans[n_numeric][0]:].strip()]


def _decimal_mark(prof, rows) -> bool:
    """Whether ',' is the decimal mark, decided per table. With no cell to settle it, "1,500" is read as
    1500 and the reader says so."""
    dec_comma = detect_decimal_comma(c for _, cells in rows for c in cells[:-1])
    if not dec_comma and not any("." in c or re.search(r"\d,(?!\d{3}(?!\d))", c) for _, cells in rows
                                 for c in cells[:-1]):
        for lineno, cells in rows:
            c = next((c for c in cells[:-1] if re.search(r"\d,\d{3}(?!\d)", c)), None)
            if c is not None:
                prof.warn(lineno, f"no cell shows the decimal mark: ',' in {c!r} was read as a thousands separator")
                break
    return dec_comma


def _fill_nsys(path, prof, headers, kind, rows, header_idx, dec_comma) -> None:
    name_col = len(headers) - 1

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
        avg_col = _find(headers, "avg", "average")
        for lineno, cells in rows:
            name = cells[name_col].strip()
            if not name:
                raise ProfileError(path, "empty kernel name", lineno)
            total = dur(cells, total_col, lineno)
            count = int(num(cells, inst_col, lineno, "instances")) if inst_col is not None else 1
            if avg_col is not None and total > 1.0 and count > 0:
                avg = dur(cells, avg_col, lineno)
                if abs(avg * count - total) > 0.02 * total + 0.001 * count:
                    prof.warn(lineno, f"Instances x Avg = {avg * count:.3f} us but Total Time = {total:.3f} us: "
                                      "a cell may be in the wrong column")
            prof.kernels.append(Kernel(name=name, total_us=total, count=count, truncated=_is_truncated(name),
                                       line=lineno))
    else:
        start_col, dur_col = _find(headers, "start"), _find(headers, "duration")
        strm_col = _find(headers, "strm", "stream", "streamid")
        for lineno, cells in rows:
            name = cells[name_col].strip()
            if not name:
                raise ProfileError(path, "empty kernel name", lineno)
            prof.kernels.append(Kernel(
                name=name, total_us=dur(cells, dur_col, lineno), start_us=dur(cells, start_col, lineno),
                stream=int(num(cells, strm_col, lineno, "stream")) if strm_col is not None else 0,
                truncated=_is_truncated(name), line=lineno))
        prof.kernels.sort(key=lambda k: (k.stream, k.start_us))


def _check_kern_sum_totals(path, prof, headers, rows, elided, dec_comma) -> None:
    """The Time (%) column is the table's own account of its total: compare the rows with it."""
    pct_col = _find(headers, "time(%)", "time%", "time")
    if pct_col is None or not prof.kernels:
        if elided:
            prof.notes.append(f"rows elided at line(s) {', '.join(map(str, elided))}: kernels there are not counted")
        return
    pcts = []
    for (lineno, cells), k in zip(rows, prof.kernels):
        try:
            pcts.append((parse_number(cells[pct_col], dec_comma)[0], k, lineno))
        except NumberFormatError as e:
            raise ProfileError(path, f"column {headers[pct_col]!r}: {e}", lineno) from None
    shown = sum(p for p, _, _ in pcts)
    # Each row's Time (%) is rounded to 0.1: allow that much per row.
    tol = 0.05 * len(pcts) + 0.1
    if shown < 100 - tol:
        why = (f"elided with '...' at line {elided[0]}" if elided else
               "the table was cut or filtered before it was saved")
        prof.notes.append(f"the rows cover {shown:.1f}% of kernel time by the table's Time (%) column: the other "
                          f"{100 - shown:.1f}% is in rows not shown ({why}); shares are of the time shown")
    elif shown > 100 + tol:
        prof.notes.append(f"Time (%) sums to {shown:.1f}% over the rows, more than 100%: rows from several tables "
                          "were merged, or a row repeats")
    elif elided:
        prof.notes.append(f"rows elided at line(s) {', '.join(map(str, elided))} hold under {tol:.1f}% of kernel time")
    # Every row's time per percent should be the same (the table's total / 100).
    big = [(k.total_us / p, k, lineno) for p, k, lineno in pcts if p >= 1.0]
    if len(big) >= 2:
        ref = sorted(r for r, _, _ in big)[len(big) // 2]
        for r, k, lineno in big:
            p = k.total_us / r
            if abs(r - ref) > (0.06 / p + 0.02) * ref:
                prof.warn(lineno, f"Total Time ({k.total_us:.3f} us) disagrees with Time (%) ({p:.1f}%) against the "
                                  "other rows: units mixed up, or a cell in the wrong column")


# ---- torch profiler key_averages().table() ---------------------------------------------------------

_DASH_RULE = re.compile(r"^(.*?)(-{3,}(?:\s+-{3,})+)\s*$")
_DEVICE_TIME_COLS = ("selfcuda", "selfdevice", "selfxpu", "selfhip", "selfmtia", "selfprivateuse1")
_DEVICE_TOTAL_COLS = ("cudatotal", "devicetotal", "xputotal", "hiptotal", "mtiatotal")
# A numeric cell of a key_averages row: a time ("1.5ms"), a percentage, a count, memory ("24.61 MB",
# "0 B"), FLOPs, or "--".
_TORCH_CELL = r"(?:[-+]?\d[\d.,]*(?:%|[a-zA-Zμµ]+)?(?: [KMGT]?[Bb])?|--)"
# Ranges that enclose kernels rather than being kernels: the profiler's step marker, collectives'
# record_function ranges, Inductor's "## Call CompiledFxGraph <hash> ##", torch.compile's regions.
_ANNOTATION = re.compile(r"^(ProfilerStep[#*]|nccl:|c10d::|## |Torch-Compiled Region|CompiledFunction|"
                         r"record_param_comms$|gpu_user_annotation)")
# Inductor wraps each Triton launch in a CPU range named after the kernel, so a kernel can have a CPU
# twin too; a name that looks like a kernel is never taken for a range by its twin alone.
_KERNEL_LIKE = re.compile(r"^(void |triton_|_)|[Kk]ernel|[<(]")


def _spans(rule: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"-+", rule)]


def _prefix_re(prefix: str) -> re.Pattern | None:
    """A log prefix in front of every table line ("(EngineCore pid=1) INFO 11-05 13:22:49 [x.py:210] "):
    the same text with its digits free to change from line to line."""
    if not prefix.strip():
        return None
    return re.compile("^" + re.sub(r"\\d|\d", r"\\d", re.escape(prefix)))


def read_torch_tables(path: Path, text: str) -> list[Profile]:
    """Every key_averages table in the text (a log may hold several)."""
    lines = text.splitlines()
    profiles = []
    i = 0
    while i + 2 < len(lines):
        m = _DASH_RULE.match(lines[i])
        if not m or "Name" not in lines[i + 1] or not _DASH_RULE.match(lines[i + 2]):
            i += 1
            continue
        prefix = _prefix_re(m.group(1))
        body = [_strip_prefix(ln, prefix) for ln in lines]
        spans = _spans(body[i])
        header_line = body[i + 1]
        headers = [header_line[a:b if k < len(spans) - 1 else None].strip() for k, (a, b) in enumerate(spans)]
        # The header's own words name the columns; the rule places them. When the two disagree (a
        # header edited or re-flowed), the header's words win and the rows are read by content.
        by_text = [c for c in re.split(r"\s{2,}", header_line.strip()) if c]
        header_warning = None
        # torch lets a label wider than its column ("CUDA time avg") run into the spacing, pushing the
        # rest right: a cut label that keeps most of its words still names its column.
        if len(by_text) == len(headers) and all(h and (t.startswith(h) or t.endswith(h)) and 2 * len(h) >= len(t)
                                                for t, h in zip(by_text, headers)):
            headers = by_text
        elif by_text != headers:
            if len(by_text) != len(spans):
                raise ProfileError(path, f"the header names {len(by_text)} columns but the dashed rule has "
                                         f"{len(spans)}: {by_text}", i + 2)
            header_warning = (i + 2, "the header does not line up with the dashed rule; columns are named by the "
                                     "header's words and rows read by their numeric cells")
            headers = by_text
            spans = [(0, 0)] * len(spans)  # no position can be trusted: every row is re-split by content
        start = i + 3
        j = start
        while j < len(body) and not _DASH_RULE.match(body[j]):
            j += 1
        if j >= len(body):
            raise ProfileError(path, "key_averages table is not closed by a dashed rule (truncated file?)", i + 1)
        prof = _torch_table(path, headers, spans, body, start, j, len(profiles), header_warning)
        profiles.append(prof)
        i = j + 1
    return profiles


def _strip_prefix(line: str, prefix: re.Pattern | None) -> str:
    if prefix is None:
        return line
    m = prefix.match(line)
    return line[m.end():] if m else line


def _torch_table(path, headers, spans, lines, start, end, index, header_warning=None) -> Profile:
    hdr_line = start - 1
    name_col = _find(headers, "name")
    dev_col = _find(headers, *_DEVICE_TIME_COLS)
    dev_total_col = _find(headers, *_DEVICE_TOTAL_COLS)
    cpu_total_col = _find(headers, "cputotal")
    self_cpu_col = _find(headers, "selfcpu")
    calls_col = _find(headers, "#ofcalls")
    if dev_col is None and dev_total_col is None:
        raise ProfileError(path, "key_averages table has no device-time column (Self CUDA / Self Device): the "
                                 "profiler was run without ProfilerActivity.CUDA, so there is no kernel time", hdr_line)
    missing = [n for n, c in (("Name", name_col), ("# of Calls", calls_col)) if c is None]
    if missing:
        raise ProfileError(path, f"key_averages table lacks column(s) {', '.join(missing)}; got {headers}", hdr_line)
    if dev_col is None:
        dev_col = dev_total_col
    suffix = f"#{index}" if index else ""
    prof = Profile(path=f"{path}{suffix}", format="torch_key_averages")
    if header_warning is not None:
        prof.warn(*header_warning)
    # The columns read as numbers: everything after the name up to the first free-text column.
    numeric = [k for k in range(name_col + 1, len(headers))
               if not re.search(r"(?i)shape|source|stack|location|overload|name", headers[k])]
    last_num = numeric[-1] if numeric else name_col
    numeric = [k for k in numeric if k <= last_num]

    def parse(line: str, lineno: int):
        cells = _sliced(line, spans) if header_warning is None else None
        vals = _torch_values(cells, name_col, dev_col, cpu_total_col, self_cpu_col, calls_col) if cells else None
        if vals is not None:
            return vals
        # The row does not fit the columns (a name wider than its column shifts every later cell):
        # re-split it by its numeric cells, which hold no spaces but a memory unit's.
        n = len(numeric)
        tail = rf"((?:\s+{_TORCH_CELL}){{{n}}})"
        m = re.match(rf"^(.*?\S){tail}\s*$", line) if last_num == len(headers) - 1 else \
            re.match(rf"^(.*?\S){tail}(?:\s{{2,}}\S.*)?$", line)
        if m is None:
            raise ProfileError(path, f"row does not fit the table's {len(headers)} columns and its {n} numeric cells "
                                     "cannot be found", lineno)
        found = re.findall(rf"(?<=\s){_TORCH_CELL}(?=\s|$)", m.group(2) + " ")
        if len(found) != n:
            raise ProfileError(path, f"row does not fit the table's columns: found {len(found)} of its {n} numeric "
                                     "cells", lineno)
        cells = [""] * len(headers)
        cells[name_col] = m.group(1).strip()
        for k, v in zip(numeric, found):
            cells[k] = v
        vals = _torch_values(cells, name_col, dev_col, cpu_total_col, self_cpu_col, calls_col)
        if vals is None:
            raise ProfileError(path, "row does not fit the table's columns and its cells are not numbers "
                                     "(is the row shifted against the header?)", lineno)
        if header_warning is None:
            prof.warn(lineno, f"row does not fit the columns (a name wider than its column?); re-split by its "
                              f"numeric cells: {cells[name_col]!r}")
        return vals

    device_rows, cpu_names = [], set()
    for idx in range(start, end):
        line = lines[idx]
        if not line.strip():
            continue
        name, dev_us, cpu_us, calls = parse(line, idx + 1)
        if cpu_us > 0:
            cpu_names.add(name)
        elif dev_us > 0:
            device_rows.append((name, dev_us, calls, idx + 1))
    for name, dev_us, calls, lineno in device_rows:
        # A range recorded with record_function shows twice: as a CPU row and as a device row (the
        # GPU-side annotation) spanning the kernels it encloses, which have rows of their own.
        if _ANNOTATION.match(name) or (name in cpu_names and not _KERNEL_LIKE.search(name)):
            prof.annotations.append((name, dev_us, lineno))
        else:
            prof.kernels.append(Kernel(name=name, total_us=dev_us, count=calls, truncated=_is_truncated(name),
                                       line=lineno))
    if prof.annotations:
        shown = "; ".join(f"{n} {us / 1e3:.3f} ms (line {ln})" for n, us, ln in prof.annotations[:6])
        more = f"; and {len(prof.annotations) - 6} more" if len(prof.annotations) > 6 else ""
        prof.notes.append(f"{len(prof.annotations)} annotation row(s) excluded from kernel time (ranges around "
                          f"kernels that have rows of their own): {shown}{more}")
    _check_torch_footer(path, prof, lines, end)
    if not prof.kernels:
        raise ProfileError(path, "key_averages table has no kernel rows (no kernel time recorded; was the "
                                 "profiler run with ProfilerActivity.CUDA?)", start + 1)
    return prof


def _torch_values(cells, name_col, dev_col, cpu_total_col, self_cpu_col, calls_col):
    """(name, device us, CPU us, calls) of a row, or None when a cell is not what its column holds."""
    try:
        dev_us = parse_time_us(cells[dev_col], "us")
        cpu_us = parse_time_us(cells[cpu_total_col], "us") if cpu_total_col is not None else 0.0
        if self_cpu_col is not None:
            cpu_us = max(cpu_us, abs(parse_time_us(cells[self_cpu_col], "us")))
        calls = int(parse_number(cells[calls_col])[0])
    except (NumberFormatError, IndexError, ValueError):
        return None
    name = cells[name_col]
    return (name, dev_us, cpu_us, calls) if name else None


def _check_torch_footer(path, prof, lines, end) -> None:
    """The footer states the device total; say when the rows disagree with it, and why."""
    for line in lines[end:end + 4]:
        m = re.match(r"\s*Self (?:CUDA|Device|XPU|HIP) time total:\s*(\S+)", line)
        if not m:
            continue
        try:
            total = parse_time_us(m.group(1), "us")
        except NumberFormatError:
            return
        kern = prof.total_us
        ann = sum(us for _, us, _ in prof.annotations)
        if total <= 0 or abs(kern - total) <= 0.01 * total:
            return
        if ann and abs(kern + ann - total) <= 0.01 * total:
            prof.notes.append(f"the footer's device total ({total:.1f} us) also counts the annotation rows "
                              f"({ann:.1f} us); the shares use the kernel rows only ({kern:.1f} us)")
        elif kern < total:
            prof.notes.append(f"device rows sum to {kern:.1f} us but the footer says {total:.1f} us: "
                              f"{total - kern:.1f} us ({(total - kern) / total:.1%}) is in rows not shown (row_limit "
                              "cut the table; print it with row_limit=-1), so shares are of the time shown")
        else:
            top = sorted(prof.kernels, key=lambda k: -k.total_us)[:3]
            prof.notes.append(f"device rows sum to {kern:.1f} us, more than the footer's {total:.1f} us: some rows "
                              "may be annotation ranges not recognized as such (largest rows: "
                              + "; ".join(f"{k.name} at line {k.line}" for k in top) + ")")
        return


def sniff_text(text: str) -> str | None:
    head = text[:20000]
    if re.search(r"Self (?:CPU|CUDA|Device|XPU|HIP)\b", head) and "# of Calls" in head:
        return "torch_table"
    for line in head.splitlines()[:400]:
        if "Name" in line and re.search(r"Total\s*Time|Duration|Time\s*\(%\)|Time\(%\)", line):
            return "nsys"
        if "Name" in line and "Instances" in line:
            return "nsys"
    return None
