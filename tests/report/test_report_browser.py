"""Browser test: the report page in headless Debian chromium, offline.

The page is loaded from disk with every host name unresolvable. Interactions are driven two ways:
the page's own ``#selftest`` hook clicks headers, changes the hardware select and expands a row,
then writes what it saw into the DOM; and independent loads with view state in the URL hash
(``#hw=H20``, ``#sort=...``, ``#expand=...``) whose dumped DOM is checked here against S values
computed in Python from the records. The screenshot is kept under the test's temp dir.
"""
import json
import re
import shutil
import subprocess
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pytest

import report_synth as synth
from solbench.core import hardware
from solbench.core.score import weighted_median
from solbench.report.html import write_report
from solbench.report.plot import s_against

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed "
                                "(`apt-get install chromium`; .ci/run tries to): browser test skipped")

OPS = ["unified_attention", "rms_norm", "silu_and_mul", "fused_moe", "moe_align_block_size", "topk_filter",
       "per_token_group_quant_fp8", "layer_norm"]


def browse(url: str, tmp: Path, *extra: str) -> str:
    """Load ``url`` headless with no network and return the DOM after the page's scripts ran."""
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=10000",
           "--window-size=1366,2000", *extra, url]
    if not any(a.startswith("--screenshot") for a in extra):
        cmd.insert(-1, "--dump-dom")
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"chromium failed ({p.returncode}): {p.stderr[-2000:]}"
    return p.stdout


class Dom(HTMLParser):
    """Op rows, their S cells, header order and detail rows of a dumped report."""

    def __init__(self, text):
        super().__init__()
        self.ops, self.s, self.headers, self.shape_rows, self.impl_rows = [], defaultdict(dict), [], [], []
        self.selftest, self._in_pre, self._cur = None, False, None
        self.spans = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "tr" and "op-row" in cls:
            self._cur = a["data-op"]
            self.ops.append(self._cur)
        elif tag == "td" and self._cur and "data-impl" in a:
            self.s[self._cur][a["data-impl"]] = float(a["data-s"]) if "data-s" in a else None
        elif tag == "th" and "data-col" in a:
            self.headers.append(a["data-col"])
        elif tag == "tr" and "shape-row" in cls:
            self.shape_rows.append(a.get("data-shape"))
        elif tag == "tr" and "impl-row" in cls:
            self.impl_rows.append((a.get("data-shape"), a.get("data-impl"), cls[-1]))
        elif tag == "pre" and a.get("id") == "selftest-result":
            self._in_pre = True
        elif tag == "span" and any(c.startswith("v-") for c in cls):
            self.spans.append(cls[0])
        if tag == "tr" and "detail" in cls:
            self._cur = None

    def handle_endtag(self, tag):
        if tag == "pre":
            self._in_pre = False

    def handle_data(self, data):
        if self._in_pre and data.strip():
            self.selftest = json.loads(data)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    recs = synth.make_records(ops=OPS, max_shapes=8, impls_per_op={"rms_norm": ("ours_triton", "torch_compile",
                              "torch_eager", "liger", "F.rms_norm"), "topk_filter": ("torch_compile", "torch_eager")},
                              fail={("moe_align_block_size", "torch_compile"): "sentinel padding overwritten"})
    path = synth.write_jsonl(tmp / "results.jsonl", recs)
    out, data = write_report([path], tmp / "report.html")
    return out, recs, tmp


def expected_s(recs, hw_name, impl="ours_triton"):
    hw = hardware.SKUS[hw_name]
    groups = defaultdict(list)
    for r in recs:
        if r["impl"] == impl:
            s = s_against(r, hw)
            if s is not None:
                groups[r["op"]].append((s, r["weight"]))
    return {op: weighted_median([v for v, _ in g], [w for _, w in g]) for op, g in groups.items()}


def test_selftest_drives_the_page_offline(page):
    out, recs, tmp = page
    dom = Dom(browse(out.resolve().as_uri() + "#selftest", tmp, f"--log-net-log={tmp / 'net.json'}"))
    st = dom.selftest
    assert st is not None, "the page did not run its self-test"
    assert st["errors"] == []
    assert st["op_rows"] == st["ops_expected"] == len(OPS)           # the table renders all operators
    assert st["sort_changed"] and st["sorted_desc"] and st["sort_header"] == "descending"
    assert st["hw_changed"] and st["hw_select_value"] == st["hw_target"]
    assert st["expanded_shape_rows"] == st["expanded_shapes_expected"] > 0
    assert st["filtered_rows"] == 1
    # The page's own roofline and score arithmetic agree with the records and with Python.
    assert st["sol_max_rel_err"] < 1e-4 and st["sol_ach_max_rel_err"] < 1e-4
    assert st["suite_score_max_rel_err"] < 1e-4
    assert st["svg_charts"] >= 3 and st["points"] > 0
    # Final state is in the DOM: sorted by S descending, one operator expanded with its impl rows.
    vals = [dom.s[o].get(st["sort_impl"]) for o in dom.ops]
    present = [v for v in vals if v is not None]
    assert present == sorted(present, reverse=True)
    assert len(dom.shape_rows) == st["expanded_shapes_expected"]
    # Nothing fetched: neither in the page's resource timing nor in the browser's network log.
    assert st["resources"] == []
    assert _page_requests(tmp / "net.json") == []


def test_hardware_sort_and_expand_from_url_state(page):
    """S on a datasheet SKU is recomputed from the records' costs: the page's values equal Python's."""
    out, recs, tmp = page
    dom = Dom(browse(out.resolve().as_uri() + "#hw=H20&sort=s:ours_triton,asc&expand=rms_norm,moe_align_block_size", tmp))
    want = expected_s(recs, "H20")
    got = {op: v["ours_triton"] for op, v in dom.s.items() if v.get("ours_triton") is not None}
    assert set(got) == set(want)
    for op in want:
        assert got[op] == pytest.approx(want[op], rel=1e-4), op
    # ... and differs from the S against the measured SKU's datasheet.
    h200 = expected_s(recs, "H200")
    assert all(abs(got[op] - h200[op]) > 1e-3 * h200[op] for op in want)
    assert [o for o in dom.ops if o in want] == sorted(want, key=lambda o: want[o])
    assert dom.ops[-1] == "topk_filter" and "topk_filter" not in want    # no S for the column: sorts last
    n_shapes = len({(r["op"], r["shape_id"]) for r in recs if r["op"] in ("rms_norm", "moe_align_block_size")})
    assert len(dom.shape_rows) == n_shapes
    # FAIL and skip rows are shown with their reasons, never dropped.
    statuses = {c for _, _, c in dom.impl_rows}
    assert {"impl-ok", "impl-fail", "impl-skip"} <= statuses
    assert sum(1 for _, impl, _ in dom.impl_rows if impl == "F.rms_norm") == 8


def test_two_runs_show_deltas(tmp_path):
    ops = ["rms_norm", "silu_and_mul", "l2_norm"]
    a = synth.write_jsonl(tmp_path / "base.jsonl", synth.make_records(ops=ops, max_shapes=6, seed=1, jitter=0.003))
    b = synth.write_jsonl(tmp_path / "new.jsonl", synth.make_records(ops=ops, max_shapes=6, seed=2, jitter=0.003,
                                                                     slow={("l2_norm", "ours_triton"): 1.2}))
    out, _ = write_report([a, b], tmp_path / "delta.html")
    dom = Dom(browse(out.resolve().as_uri() + "#expand=l2_norm", tmp_path))
    assert "delta" in dom.headers
    assert dom.spans.count("v-slower") >= 1 + 6     # the operator row and its 6 shapes
    assert "v-same" in dom.spans


def _page_requests(netlog: Path) -> list[str]:
    """URLs the page itself requested (the browser's own update pings have no page initiator)."""
    d = json.loads(netlog.read_text())
    types = {v: k for k, v in d["constants"]["logEventTypes"].items()}
    urls = []
    for e in d["events"]:
        p = e.get("params") or {}
        if types.get(e["type"]) == "URL_REQUEST_START_JOB" and "url" in p and p.get("initiator") != "not an origin":
            if re.match(r"(https?|wss?|ftp):", p["url"]):
                urls.append(p["url"])
    return urls


def test_network_detector_catches_a_fetching_page(tmp_path):
    # Control for the offline check above: the same detector does see a page that fetches.
    bad = tmp_path / "bad.html"
    bad.write_text('<html><body><img src="http://cdn.example.invalid/x.png"></body></html>')
    browse(bad.resolve().as_uri(), tmp_path, f"--log-net-log={tmp_path / 'bad-net.json'}")
    assert _page_requests(tmp_path / "bad-net.json") == ["http://cdn.example.invalid/x.png"]


def test_screenshot_kept(page):
    out, recs, tmp = page
    shot = tmp / "report.png"
    browse(out.resolve().as_uri() + "#expand=rms_norm", tmp, f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    print(f"report screenshot kept at {shot}")
