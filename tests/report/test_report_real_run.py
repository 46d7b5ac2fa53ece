"""End to end on a real CPU run: `solbench run` writes records, then report, plot and compare
read them (and, where chromium is installed, the page passes its self-test)."""
import json
import shutil
import subprocess

import pytest

from solbench.cli import main
from solbench.runner import read_records


@pytest.fixture(scope="module")
def real_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "silu.jsonl"
    # torch_compile is left out only to keep CI fast (its compile alone takes ~10 s on CPU).
    rc = main(["run", "--ops", "silu_and_mul", "--impls", "torch_eager,ours_triton,liger", "--out", str(out)])
    assert rc == 0
    return out


def test_report_plot_compare_on_a_real_run(real_results, tmp_path, capsys):
    recs = read_records(real_results)
    assert {r["status"] for r in recs} >= {"ok"} and all(r["op"] == "silu_and_mul" for r in recs)
    page = tmp_path / "real.html"
    assert main(["report", str(real_results), "-o", str(page)]) == 0
    html = page.read_text()
    data = json.loads(html.split('id="solbench-data">', 1)[1].split("</script>", 1)[0])
    run = data["runs"][0]
    assert run["smoke"] is True and run["timer"] == "cpu" and run["records"] == len(recs)
    assert [o["name"] for o in data["ops"]] == ["silu_and_mul"]
    assert main(["plot", str(real_results), "--op", "silu_and_mul", "-o", str(tmp_path / "silu.svg")]) == 0
    assert "silu_and_mul: S per shape" in (tmp_path / "silu.svg").read_text()
    capsys.readouterr()
    # A file compared with itself: every operator x implementation is the same, exit 0.
    assert main(["compare", str(real_results), str(real_results), "--fail-on-regression", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ops"] and {o["verdict"] for o in data["ops"]} == {"same"}

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian chromium is not installed: the page's browser self-test was not run")
    p = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
                        "--virtual-time-budget=10000", "--dump-dom", page.resolve().as_uri() + "#selftest"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    start = p.stdout.index('<pre id="selftest-result">') + len('<pre id="selftest-result">')
    st = json.loads(p.stdout[start:p.stdout.index("</pre>", start)].replace("&amp;", "&").replace("&lt;", "<")
                    .replace("&gt;", ">").replace("&quot;", '"'))
    assert st["errors"] == [] and st["op_rows"] == 1 and st["expanded_shape_rows"] == st["expanded_shapes_expected"]
    assert st["sol_max_rel_err"] < 1e-4 and st["resources"] == []
