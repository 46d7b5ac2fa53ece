"""Numbers as profiling tools print them: thousands separators, decimal commas from some locales,
and unit suffixes inside the cell (``1,234.5 us``, ``1.234,5 μs``, ``12 ms``)."""
from __future__ import annotations

import re

# Microseconds per unit. "μ" (U+03BC) and "µ" (U+00B5, the micro sign) both occur in the wild.
UNITS_US = {"ns": 1e-3, "us": 1.0, "μs": 1.0, "µs": 1.0, "ms": 1e3, "s": 1e6, "sec": 1e6}

# A number, optionally followed by letters (a unit, valid or not: the caller reports bad ones).
CELL = re.compile(r"^\s*([-+]?(?:\d[\d.,'\u202f\u00a0]*|[.,]\d+))\s*([A-Za-zμµ%]*)\s*$")


class NumberFormatError(ValueError):
    pass


def detect_decimal_comma(cells) -> bool:
    """Decide per file whether ',' is the decimal mark. Tables always carry a value with a
    fractional part (Time (%), averages), which settles it; with no evidence, ',' groups thousands."""
    comma_dec = dot_dec = False
    for c in cells:
        c = c.strip()
        if re.search(r"\d,\d{3}\.\d", c):
            dot_dec = True
        elif re.search(r"\d\.\d{3},\d", c):
            comma_dec = True
        elif re.search(r"\d,(\d{1,2}|\d{4,})(?!\d)", c):
            comma_dec = True
        elif re.search(r"\d\.(\d{1,2}|\d{4,})(?!\d)", c):
            dot_dec = True
    return comma_dec and not dot_dec


def parse_number(text: str, decimal_comma: bool = False) -> tuple[float, str]:
    """Return (value, unit) where unit is the suffix as written ('' when none)."""
    m = CELL.match(text)
    if not m:
        raise NumberFormatError(f"{text.strip()!r} is not a number")
    num, unit = m.group(1), m.group(2)
    for sep in ("'", "\u202f", "\u00a0"):
        num = num.replace(sep, "")
    if decimal_comma:
        num = num.replace(".", "").replace(",", ".")
    else:
        num = num.replace(",", "")
    try:
        return float(num), unit
    except ValueError:
        raise NumberFormatError(f"{text.strip()!r} is not a number") from None


def parse_time_us(text: str, default_unit: str, decimal_comma: bool = False) -> float:
    """A duration in microseconds. A unit in the cell wins over the column's unit."""
    value, unit = parse_number(text, decimal_comma)
    unit = unit or default_unit
    if unit not in UNITS_US:
        raise NumberFormatError(f"unknown time unit {unit!r} in {text.strip()!r} "
                                f"(known: {', '.join(UNITS_US)})")
    return value * UNITS_US[unit]
