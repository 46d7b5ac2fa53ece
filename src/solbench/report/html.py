"""``solbench report``: one self-contained HTML page from results files.

The page is a template, a stylesheet and a script shipped as package data (``report/assets``),
with the data model of :mod:`solbench.report.model` inlined as JSON. Nothing is loaded from the
network: no fonts, no CDN libraries, no images; the charts are SVG drawn by the page's script.
"""
from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Sequence

from solbench.report import model

MAX_BYTES = 5 * 2**20   # the bar for a full sweep; `report` warns above it

_PLACEHOLDERS = ("__SOLBENCH_TITLE__", "__SOLBENCH_CSS__", "__SOLBENCH_JS__", "__SOLBENCH_DATA__")


def _asset(name: str) -> str:
    return resources.files("solbench.report").joinpath("assets", name).read_text(encoding="utf-8")


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _inline_json(data: dict) -> str:
    """JSON that is safe inside a <script> element: '<' is escaped everywhere (so neither
    '</script>' nor '<!--' can appear), and the result still parses as the same JSON."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render(data: dict) -> str:
    """The page for a data model from :func:`solbench.report.model.build`."""
    page = _asset("template.html")
    for p in _PLACEHOLDERS:
        if page.count(p) < 1:
            raise RuntimeError(f"report template lacks {p}")
    css, js = _asset("report.css"), _asset("report.js")
    # Substitute in one pass so that text inside the data can never be mistaken for a placeholder.
    values = {"__SOLBENCH_TITLE__": _escape_html(data.get("title") or "solbench report"),
              "__SOLBENCH_CSS__": css, "__SOLBENCH_JS__": js, "__SOLBENCH_DATA__": _inline_json(data)}
    return re.sub("|".join(_PLACEHOLDERS), lambda m: values[m.group(0)], page)


def write_report(paths: Sequence[str | os.PathLike], out: str | os.PathLike, *, merge: bool = False,
                 baseline: int | None = None, title: str | None = None) -> tuple[Path, dict]:
    """Read results files, build the page and write it; returns (path, data model)."""
    sources = model.load_sources(paths)
    data = model.build(sources, merge=merge, baseline=baseline, title=title)
    html = render(data)
    out = Path(out)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out, data
