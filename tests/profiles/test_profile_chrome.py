"""Chrome/Kineto traces: attribution through External id, correlation and time containment; CUDA
graph replays; gzip; hot shapes; broken files; and a large trace read in bounded memory."""
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _profile_traces import SILU, decode_step_trace, write_large_trace
from solbench.profiles import Classifier, ProfileError, read_profile, summarize
from solbench.profiles.shapes import collect, to_suite

HERE = Path(__file__).parent

EXPECTED = {"rms_norm": 3, "gemm": 24, "fused_add_rms_norm": 5, "unified_attention": 33, "silu_and_mul": 13,
            "memcpy/memset": 2}


@pytest.mark.parametrize("gz", [False, True])
def test_attribution_and_shares(tmp_path, gz):
    path = decode_step_trace().dump(tmp_path / ("t.json.gz" if gz else "t.json"), gz=gz)
    (prof,) = read_profile(path)
    assert prof.format == "chrome_trace"
    kernels = list(prof.kernels)
    by_name = {k.name: k for k in kernels}
    # 1. kernel External id; 2. runtime correlation -> External id; 3. time containment on the thread.
    assert by_name["nvjet_tst_192x16_64x8_4x1_v_bz_splitK_bias_TNT"].cpu_op == "aten::mm"
    add = next(k for k in kernels if "CUDAFunctor_add" in k.name)
    assert add.cpu_op == "_C::fused_add_rms_norm"
    graph = [k for k in kernels if k.graph]
    assert len(graph) == 1 and graph[0].name == SILU and graph[0].cpu_op is None
    assert any("CUDA graphs" in n for n in prof.notes)

    s = summarize(prof, Classifier())
    assert {t: st.time_us for t, st in s.targets.items()} == pytest.approx(EXPECTED)
    assert s.total_us == pytest.approx(80)
    # FA3's three kernels are one launch of the operator; nvjet + split-K one GEMM launch.
    assert s.targets["unified_attention"].launches == 1 and s.targets["unified_attention"].kernels == 3
    assert s.targets["gemm"].launches == 1 and s.targets["gemm"].kernels == 2
    assert s.graph_kernels == 1


def test_json_array_format(tmp_path):
    b = decode_step_trace()
    path = tmp_path / "array.json"
    path.write_text(json.dumps(b.events))
    (prof,) = read_profile(path)
    assert summarize(prof, Classifier()).total_us == pytest.approx(80)


def test_hot_shapes_map_to_catalog_kwargs(tmp_path):
    b = decode_step_trace()
    # Two more silu calls at another size, so the histogram has two bins.
    for i in range(2):
        e = b.op("_C::silu_and_mul", 1000 + 100 * i, 20, dims=[[8, 32], [8, 64]])
        b.kernel(SILU, 1010 + 100 * i, 4, ext=e)
    (prof,) = read_profile(b.dump(tmp_path / "s.json"), collect_shapes=True)
    rep = collect(prof.shape_calls, Classifier())
    suite = to_suite(rep)
    ops = {o["name"]: o["shapes"] for o in suite["operators"]}
    silu = ops["silu_and_mul"]
    assert [s["input_kwargs"] for s in silu] == [{"shape": [8, 64]}, {"shape": [4, 128]}]  # 8 us before 6 us
    assert [s["call_count"] for s in silu] == [2, 1]
    assert silu[0]["total_duration_us"] == pytest.approx(8)
    rms = ops["rms_norm"][0]
    assert rms["input_kwargs"] == {"token_count": 4, "hidden_size": 64}
    assert rms["init_kwargs"] == {"eps": 1e-06}
    far = ops["fused_add_rms_norm"][0]
    assert far["input_kwargs"] == {"token_count": 4, "hidden_size": 64} and far["init_kwargs"] == {"eps": 1e-05}
    # aten::mm is a GEMM (a class, not a catalog operator): no shapes for it.
    assert "gemm" not in ops
    from solbench.catalog import load_suite
    p = tmp_path / "suite.json"
    p.write_text(json.dumps(suite))
    assert {o["name"] for o in load_suite(p)["operators"]} == set(ops)


@pytest.mark.parametrize("mutate, match", [
    (lambda t: t[: len(t) // 2], r"truncated"),
    (lambda t: t.replace('"traceEvents"', '"otherEvents"'), r"no 'traceEvents' array"),
    (lambda t: t.replace('"ph": "X"', '"ph" "X"', 3), r":\d+: invalid JSON: Expecting ':' delimiter"),
    (lambda t: "", r"empty file"),
    (lambda t: json.dumps({"traceEvents": [{"ph": "X", "cat": "cpu_op", "name": "a", "ts": 0, "dur": 1}]}),
     r"no kernel events"),
    (lambda t: json.dumps({"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": "x", "dur": 1}]}),
     r":1: bad field in trace event"),
    (lambda t: json.dumps({"traceEvents": [1, 2]}), r"trace event is a int"),
])
def test_broken_traces(tmp_path, mutate, match):
    text = json.dumps({"traceEvents": decode_step_trace().events}, indent=0)
    path = tmp_path / "broken.json"
    path.write_text(mutate(text))
    with pytest.raises(ProfileError, match=r"broken\.json.*" + match):
        read_profile(path)


def test_error_names_the_line(tmp_path):
    text = json.dumps({"traceEvents": decode_step_trace().events}, indent=0)
    lines = text.split("\n")
    bad = next(i for i, l in enumerate(lines) if '"cat": "kernel"' in l)
    lines[bad] = lines[bad].replace('"cat": "kernel"', '"cat": kernel')
    path = tmp_path / "broken.json"
    path.write_text("\n".join(lines))
    with pytest.raises(ProfileError) as e:
        read_profile(path)
    assert e.value.line == bad + 1


def test_gzip_truncated(tmp_path):
    raw = json.dumps({"traceEvents": decode_step_trace().events}).encode()
    path = tmp_path / "cut.json.gz"
    path.write_bytes(gzip.compress(raw)[:-40])
    with pytest.raises(ProfileError, match=r"cut\.json\.gz"):
        read_profile(path)


_MEASURE = """
import json, sys, time
from solbench.profiles import Classifier, read_profile, summarize

def status(key):  # kB
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1])

clf = Classifier()
open("/proc/self/clear_refs", "w").write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
base = status("VmRSS")
t0 = time.perf_counter()
(prof,) = read_profile(sys.argv[1])
s = summarize(prof, clf)
grown = (status("VmHWM") - base) * 1024
print(json.dumps({"grown": grown, "seconds": time.perf_counter() - t0, "kernels": len(prof.kernels),
                  "total_us": s.total_us, "shares": {t: s.share(t) for t in s.targets}}))
"""


def test_large_trace_is_streamed(tmp_path):
    """~50 MB of trace, read in a fresh process: its peak resident memory grows by far less than the
    file size (only compact per-launch columns are kept; loading the JSON whole would take several
    times the file size)."""
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux /proc/self/clear_refs to measure peak RSS")
    path = tmp_path / "large.json"
    n, totals = write_large_trace(path, 50 << 20)
    size = os.path.getsize(path)
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["kernels"] == n
    assert res["total_us"] == pytest.approx(sum(totals.values()))
    assert res["shares"] == pytest.approx({"gemm": 20 / 29, "rms_norm": 3 / 29, "silu_and_mul": 6 / 29})
    assert res["grown"] < 0.4 * size, f"grew {res['grown'] / 2**20:.1f} MiB reading a {size / 2**20:.1f} MiB trace"
    print(f"{size / 2**20:.0f} MiB, {n} kernels, +{res['grown'] / 2**20:.1f} MiB, {res['seconds']:.1f} s")


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_tiny_read_chunks_give_the_same_answer(tmp_path, monkeypatch, chunk):
    """Every event, key and number straddles a chunk boundary somewhere: the streaming decoder must
    refill and resume without losing or splitting anything (e.g. a number "123" read as "12")."""
    import solbench.profiles.readers.chrome as chrome

    path = decode_step_trace().dump(tmp_path / "t.json")
    monkeypatch.setattr(chrome, "_CHUNK", chunk)
    (prof,) = read_profile(path)
    s = summarize(prof, Classifier())
    assert {t: st.time_us for t, st in s.targets.items()} == pytest.approx(EXPECTED)
    assert [k.start_us for k in prof.kernels] == sorted(k.start_us for k in prof.kernels if k.stream == 7) + [200.0]
