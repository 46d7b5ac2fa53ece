"""Print docs/PERFORMANCE.md, or its tables for given files, from committed results files
(nothing is measured here: every figure comes from the records, through solbench.core.score).

    python benchmarks/performance_tables.py --doc > docs/PERFORMANCE.md
    python benchmarks/performance_tables.py FILE.jsonl [more.jsonl ...] [--second-run OTHER.jsonl ...]

``--doc [RESULTS_DIR]`` prints the whole page: one section per GPU folder of
``benchmarks/results/``, from its JSONL runs (not ``eval_*``, ``tune_log*`` or ``table_*``) but
``repeat.jsonl``, which is the second run.
``--second-run``: a second measurement of (some of) the same operators, in another process; a
table then lists the shapes where ours trails the best peer in both runs (a 2-us record scatters
between processes, so one run's ranking of such a shape is not a finding). Given more than once,
each operator's second run comes from the first of those files that has it.
"""
from __future__ import annotations

import contextlib
import io
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from statistics import median

from solbench.catalog import operator_entries
from solbench.core.score import amdahl_estimate, geomean, op_scores, suite_scores
from solbench.report.issue_bars import SECOND_RUN, run_files
from solbench.runner import read_records

IMPLS = ("ours_triton", "ours_cuda", "liger", "torch_native", "torch_compile", "torch_eager")
#: Our other backends: never counted as a peer that ours_triton must beat.
OURS_OTHER = ("ours_cuda",)
#: The GLU, norm and fp8-quant operators: the bars table covers them shape by shape already.
BARS_OPS = {"silu_and_mul", "gelu_and_mul", "gelu_tanh_and_mul", "swiglu_oai", "rms_norm", "fused_add_rms_norm",
            "fused_qk_rmsnorm", "gated_rms_norm", "l2_norm", "layer_norm", "fp8_dynamic_per_token_quant",
            "fused_rmsnorm_quant", "per_token_group_quant_fp8"}

#: The kernel families of issues 22-24 (and the first ones, #2/#7), for the before/after table.
FAMILIES = {
    "attention (#22)": ("unified_attention", "paged_attention_decode", "mla_decode_attention", "attention_forward"),
    "MoE and fp8 GEMM (#23)": ("fused_moe", "block_scaled_mm", "fp8_blockscale_fused_moe", "moe_topk_gating_softmax",
                               "moe_align_block_size", "moe_count_and_sort", "moe_sum_reduce"),
    "cache, rope, top-k, linear attention (#24)": (
        "reshape_and_cache", "topk_filter", "gated_delta_rule_update", "fused_qkv_rope", "causal_conv1d",
        "chunk_gated_delta_rule_state", "mrope", "chunk_delta_rule_output", "linear_sigmoid_mul"),
    "GLU, norms, fp8 quant (#2, #7)": tuple(sorted(BARS_OPS)),
}


def is_ours(rec) -> bool:
    """Our kernels (not ``ours_dense``, a reference on K/V gathered before the timed call)."""
    return rec["impl"] == "ours_triton" or rec["impl"] in OURS_OTHER


def is_reference(rec) -> bool:
    return rec.get("role") == "reference" or rec["impl"] in ("ours_dense", "sdpa_dense")


def families(recs, importance) -> None:
    """Production-weighted S of each family before our kernels (the best runnable peer per
    operator) and after (the best implementation, ours included), and the suite's; references
    (a dense kernel on K/V gathered before the timed call) count on neither side."""
    per_op = op_scores([r for r in recs if not is_reference(r)])
    peers = op_scores([r for r in recs if not is_reference(r) and not is_ours(r)])

    def score(ops, table):
        num = cov = 0.0
        for op in ops:
            if table.get(op):
                w = float(importance.get(op, 0.0))
                num += w * max(table[op].values())
                cov += w
        return num, cov

    print()
    print("Each family's production-weighted S (Σ importance × S / the importance of its operators with\n"
          "records here, `measured`) before our kernels (the best runnable peer of each operator) and after\n"
          "(the best implementation, ours included); `importance` is the catalog's, the suite row every operator's.")
    print()
    print("| family | importance | measured | S before | S after | Σ importance × S before | after |")
    print("|---|---|---|---|---|---|---|")
    catalog = {name: float(e.get("importance") or 0.0) for name, e in operator_entries().items()}
    rows = list(FAMILIES.items()) + [("suite", tuple(sorted(catalog)))]
    for name, ops in rows:
        total = sum(catalog.get(op, 0.0) for op in ops)
        (b, bcov), (a, acov) = score(ops, peers), score(ops, per_op)
        print(f"| {name} | {total:.4f} | {acov:.4f} | {fmt(b / bcov if bcov else None)} | "
              f"{fmt(a / acov if acov else None)} | {b:.4f} | {a:.4f} |")


def fmt(x, digits=2):
    return "-" if x is None else f"{x:.{digits}f}"


def main(paths: list[str]) -> None:
    recs = [r for p in paths for r in read_records(p)]
    importance = {r["op"]: r.get("importance") or 0.0 for r in recs}
    per_op = op_scores(recs)
    counts = defaultdict(Counter)
    for r in recs:
        counts[r["op"]][r["status"]] += 1
    # Speedup of ours over torch_compile, shape by shape where both are correct.
    times = defaultdict(dict)
    for r in recs:
        if r["status"] == "ok":
            times[(r["op"], str(r["shape_id"]))][r["impl"]] = r["time_us"]
    vs_compile = defaultdict(list)
    for (op, _), t in times.items():
        if "ours_triton" in t and "torch_compile" in t:
            vs_compile[op].append(t["torch_compile"] / t["ours_triton"])

    print("| operator | importance | ok/fail/skip | " + " | ".join(IMPLS) + " | ours vs compile (geomean) |")
    print("|---|---|---|" + "---|" * len(IMPLS) + "---|")
    for op in sorted(per_op, key=lambda o: -importance.get(o, 0)):
        c = counts[op]
        cells = [fmt(per_op[op].get(i)) for i in IMPLS]
        gm = geomean(vs_compile.get(op, []))
        print(f"| {op} | {importance.get(op, 0):.4f} | {c['ok']}/{c['fail']}/{c['skip']} | " + " | ".join(cells)
              + f" | {fmt(gm) + 'x' if gm else '-'} |")
    scores = suite_scores(recs, importance)
    print()
    print("| implementation | Σ importance × S | importance covered | normalized |")
    print("|---|---|---|---|")
    for impl, sc in sorted(scores.items(), key=lambda kv: -kv[1]["score"]):
        print(f"| {impl} | {sc['score']:.4f} | {sc['coverage']:.4f} | {fmt(sc['normalized'])} |")
    families(recs, importance)
    am = amdahl_estimate(recs)
    if am:
        print()
        print(f"Amdahl estimate (vs the published XPU-A deployed kernels, assuming S carries over between chips): "
              f"{am.get('saved', 0) * 100:.1f}% of production GPU time saved, over {am.get('coverage', 0):.3f} "
              "of importance covered.")
    # Plain (unweighted) median achievable S over each operator's correct shapes, for the kernel
    # families: the production-weighted median above is dominated by launch-bound decode shapes.
    plain = defaultdict(lambda: defaultdict(list))
    for r in recs:
        if r["status"] == "ok" and r.get("s_achievable") is not None:
            plain[r["op"]][r["impl"]].append(r["s_achievable"])
    ours_ops = [op for op in plain if "ours_triton" in plain[op]]
    print()
    print("| operator (plain median achievable S) | " + " | ".join(IMPLS) + " |")
    print("|---|" + "---|" * len(IMPLS))
    for op in sorted(ours_ops):
        print(f"| {op} | " + " | ".join(fmt(median(plain[op][i])) if plain[op].get(i) else "-" for i in IMPLS) + " |")
    bars(recs)
    fails = Counter((r["op"], r["impl"]) for r in recs if r["status"] == "fail")
    if fails:
        print()
        print("FAIL records (all baselines; each carries its reason in the JSONL):",
              ", ".join(f"{op}/{impl} x{n}" for (op, impl), n in sorted(fails.items())))


def _ours_vs_best_peer(recs) -> dict:
    """{(op, shape_id): ours' time / the best correct peer's} where both exist."""
    by_shape = defaultdict(dict)
    for r in recs:
        if r["status"] == "ok" and r.get("time_us") and r.get("role") != "reference":
            by_shape[(r["op"], str(r["shape_id"]))][r["impl"]] = r["time_us"]
    out = {}
    for key, t in by_shape.items():
        peers = [v for impl, v in t.items() if impl != "ours_triton" and impl not in OURS_OTHER]
        if "ours_triton" in t and peers:
            out[key] = t["ours_triton"] / min(peers)
    return out


def second_run(runs: list[list[dict]]) -> list[dict]:
    """The records of several second runs, each operator's from the first run that has it."""
    taken, out = set(), []
    for recs in runs:
        ops = {r["op"] for r in recs} - taken
        out.extend(r for r in recs if r["op"] in ops)
        taken |= ops
    return out


def behind_in_both(first, second) -> None:
    """Per operator measured in both runs: the shapes where ours is slower than the best peer by
    more than 3% (issue #2's noise allowance) and by more than 5% (issue #7's limit) in both."""
    a, b = _ours_vs_best_peer(first), _ours_vs_best_peer(second)
    common = sorted(set(a) & set(b))
    ops = sorted({op for op, _ in common})
    print()
    print("| operator | shapes in both runs | ours behind the best peer by > 3% in both | by > 5% in both |")
    print("|---|---|---|---|")
    for op in ops:
        keys = [k for k in common if k[0] == op]

        def both(limit, op=op, keys=keys):
            hits = [f"{sid} ({a[(op, sid)]:.2f}x / {b[(op, sid)]:.2f}x)" for _, sid in keys
                    if a[(op, sid)] > limit and b[(op, sid)] > limit]
            return ", ".join(hits) if hits else "none"

        print(f"| {op} | {len(keys)} | {both(1.03)} | {both(1.05)} |")


#: "Within this of the best peer" counts as level: the run-to-run scatter of the rotating timer is
#: about 0.2-0.5% on the H200, so a shape 0.1% behind is a tie, not a loss.
TIE = 0.01


def bars(recs) -> None:
    """The kernel bars of issues #2 and #7, per operator with an ours_triton: correct on every
    shape; achievable S >= 0.85 on shapes moving >= 64 MB and >= 0.90 on >= 256 MB; faster than
    the best peer (and by how much at worst); shapes moving < 1 MB within 2 us of the launch floor.
    Shape ids after a colon are the misses."""
    by_shape = defaultdict(dict)
    for r in recs:
        by_shape[(r["op"], str(r["shape_id"]))][r["impl"]] = r
    vs_best_peer = _ours_vs_best_peer(recs)  # > 1: ours is slower than the best peer
    rows = defaultdict(lambda: defaultdict(list))
    for (op, sid), impls in by_shape.items():
        ours = impls.get("ours_triton")
        if ours is None:
            continue
        row = rows[op]
        row["shapes"].append(sid)
        if ours["status"] != "ok":
            row["not_ok"].append(sid)
            continue
        mb = (ours["cost"]["bytes_read"] + ours["cost"]["bytes_written"]) / 1e6
        s_ach = ours.get("s_achievable") or 0.0
        if mb >= 64:
            row["n64"].append(sid)
            if s_ach < (0.90 if mb >= 256 else 0.85):
                row["s_miss"].append(f"{sid}({s_ach:.2f})")
        if mb < 1 and ours.get("launch_floor_us") is not None:
            row["n_small"].append(sid)
            if ours["time_us"] > ours["launch_floor_us"] + 2.0:
                row["small_miss"].append(f"{sid}({ours['time_us']:.1f}us)")
        ratio = vs_best_peer.get((op, sid))
        if ratio is not None:
            row["n_peer"].append(sid)
            if ratio < 1.0:
                row["wins"].append(sid)
            if ratio <= 1.0 + TIE:
                row["level"].append(sid)
            row["ratios"].append((ratio, sid))
    print()
    print("| operator | correct | S bar (>= 64 MB: 0.85, >= 256 MB: 0.90) misses | faster than best peer "
          f"| within {TIE:.0%} of it or faster | worst vs best peer | < 1 MB within 2 us of the launch floor |")
    print("|---|---|---|---|---|---|---|")
    for op in sorted(rows):
        row = rows[op]
        n = len(row["shapes"])
        worst = max(row["ratios"]) if row["ratios"] else None
        worst_txt = f"{worst[0]:.2f}x (#{worst[1]})" if worst else "-"
        slow5 = [f"{sid}" for ratio, sid in sorted(row["ratios"], reverse=True) if ratio > 1.05]
        print(f"| {op} | {n - len(row['not_ok'])}/{n} | {len(row['s_miss'])}/{len(row['n64'])}"
              f"{': ' + ', '.join(row['s_miss']) if row['s_miss'] else ''} | {len(row['wins'])}/{len(row['n_peer'])}"
              f"{' (>5% slower: ' + ', '.join(slow5) + ')' if slow5 else ''} "
              f"| {len(row['level'])}/{len(row['n_peer'])} "
              f"| {worst_txt} | "
              f"{len(row['n_small']) - len(row['small_miss'])}/{len(row['n_small'])}"
              f"{': ' + ', '.join(row['small_miss']) if row['small_miss'] else ''} |")


#: Within 3% of ours_triton or faster: issue 28's bar for the CUDA backend.
CUDA_LEVEL = 0.03

HEADER = """# Performance

Today's figures, one section per GPU, printed from the files under `benchmarks/results/<gpu>/` by
`python benchmarks/performance_tables.py --doc > docs/PERFORMANCE.md` (a test checks that this page
is what it prints). Every record was measured by `solbench run` (CUDA-graph replay, cold L2) and
carries its environment (`env`: driver, clocks, torch, triton, commit). Achievable S = calibrated
SOL / measured time; "S" alone is against the datasheet. The steps that produce the files are in
`benchmarks/device.sh`; why the kernels and the timer are as they are is in docs/DECISIONS.md, and
the finished experiments are listed in benchmarks/results/ARCHIVE.md.
"""


def peer_table(recs: list[dict], name: str = "") -> None:
    """Shape by shape, for operators with peers beyond the torch baselines or with references:
    ours against the best peer, and the references (ranked apart) beside them."""
    ops = {r["op"] for r in recs if r["op"] not in BARS_OPS and r["impl"] == "ours_triton"}
    if not ops:
        return
    shapes = defaultdict(dict)
    for r in recs:
        if r["op"] in ops:
            shapes[(r["op"], str(r["shape_id"]))][r["impl"]] = r
    print()
    print(f"`{name}`: ours against every peer of the same run, shape by shape (µs; achievable S in\n"
          "brackets; our CUDA backend beside the Triton kernel where the run has it, and the ratio takes the\n"
          "faster; references are ranked apart, e.g. a dense kernel on K/V gathered before the timed call):")
    print()
    print("| operator | shape | ours | best peer | ours / best peer | references |")
    print("|---|---|---|---|---|---|")
    for (op, sid), by in sorted(shapes.items(), key=lambda kv: (kv[0][0], _sid_key(kv[0][1]))):
        ours = by.get("ours_triton")
        if ours is None:
            continue
        ok = {n: r for n, r in by.items() if r["status"] == "ok" and r.get("time_us")}
        peers = {n: r for n, r in ok.items()
                 if n != "ours_triton" and n not in OURS_OTHER and r.get("role") != "reference"}
        refs = {n: r for n, r in ok.items() if r.get("role") == "reference"}
        cell = (f"{ours['time_us']:.1f} ({fmt(ours.get('s_achievable'))})" if ours["status"] == "ok"
                else ours["status"].upper())
        # our other backends of the same run, beside the Triton kernel (the best of ours counts)
        for name in OURS_OTHER:
            other = ok.get(name)
            if other is not None:
                cell += f"; {name} {other['time_us']:.1f} ({fmt(other.get('s_achievable'))})"
                if ours["status"] != "ok" or other["time_us"] < ours["time_us"]:
                    ours = other
        best = min(peers.items(), key=lambda kv: kv[1]["time_us"]) if peers else None
        ratio = (f"{ours['time_us'] / best[1]['time_us']:.2f}" if best and ours["status"] == "ok" else "-")
        print(f"| {op} | {sid} | {cell} | " + (f"{best[0]} {best[1]['time_us']:.1f}" if best else "-")
              + f" | {ratio} | " + (", ".join(f"{n} {r['time_us']:.1f}" for n, r in sorted(refs.items())) or "-")
              + " |")
    print()


def _sid_key(sid: str):
    return (0, int(sid), "") if sid.isdigit() else (1, 0, sid)


def _env_summary(recs: list[dict]) -> str:
    def values(key):
        return sorted({str(r.get("env", {}).get(key)) for r in recs if r.get("env", {}).get(key)})

    commits = Counter(str(r.get("env", {}).get("commit")) for r in recs)
    return (f"Driver {', '.join(values('driver')) or '?'}, torch {', '.join(values('torch')) or '?'}, "
            f"triton {', '.join(values('triton')) or '?'}. Records by the commit they were measured at: "
            + ", ".join(f"{c} ({n})" for c, n in sorted(commits.items(), key=lambda kv: -kv[1])) + ".")


def gpu_section(folder: Path) -> str:
    """The markdown section of one GPU folder."""
    files = run_files(folder)
    runs = [(str(p), read_records(p)) for p in files]
    recs = [r for _, rs in runs for r in rs]
    device = next((r.get("device") for r in recs if r.get("device")), folder.name)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print(f"## {device} (`benchmarks/results/{folder.name}/`)")
        print()
        print(_env_summary(recs))
        cal = folder / "calibration.json"
        if cal.is_file():
            c = json.loads(cal.read_text())
            print(f"Calibration (`calibration.json`, {c.get('date', '?')[:10]}): copy bandwidth "
                  f"{c['bandwidth'] / 1e12:.2f} TB/s (read + write), launch floor {c['launch_floor_us']:.2f} µs.")
        stale_file = folder.parent / "STALE.json"
        stale = json.loads(stale_file.read_text()) if stale_file.is_file() else {}
        for name, entry in sorted(stale.items()):
            if name.startswith(folder.name + "/"):
                print()
                print(f"**Older contracts.** `{name.split('/', 1)[1]}`'s records of {', '.join(entry['ops'])} were "
                      f"{entry['why']}.")
        print()
        print("| file | records | operators |")
        print("|---|---|---|")
        second = folder / SECOND_RUN
        for p in files + ([second] if second.is_file() else []):
            rs = read_records(p)
            role = " (second run)" if p == second else ""
            print(f"| `{p.name}`{role} | {len(rs)} | {len({r['op'] for r in rs})} |")
        print()
        print("Production-weighted median achievable S per operator and implementation, operators by\n"
              "importance (`-`: no correct record); then the suite scores, the plain medians and the bars of\n"
              "issues #2 and #7 (shape ids after a colon are the misses)" +
              (";\nlast, the shapes where ours trails the best peer in both runs." if second.is_file() else "."))
        print()
        main([str(p) for p in files])
        for p in files:  # one file is one run: ours and its peers compared within it
            peer_table(read_records(p), p.name)
        jit_section(folder, recs)
        issue_section(folder, runs)
        if second.is_file():
            behind_in_both(recs, read_records(second))
    return out.getvalue()


def jit_section(folder: Path, recs: list[dict]) -> None:
    """The JIT CUDA backend (issue 28): ours_cuda against ours_triton shape by shape, where one run
    holds both; the PDL chain with and without PDL (``pdl_chain.jsonl``); first-use compile and
    cache-hit times (``jit_compile.jsonl``)."""
    times = defaultdict(dict)
    for r in recs:
        if r["status"] == "ok" and r["impl"] in ("ours_triton", "ours_cuda"):
            times[(r["op"], str(r["shape_id"]))][r["impl"]] = r["time_us"]
    per_op = defaultdict(list)
    for (op, _), t in times.items():
        if len(t) == 2:
            per_op[op].append(t["ours_cuda"] / t["ours_triton"])
    pdl = folder / "pdl_chain.jsonl"
    compile_times = folder / "jit_compile.jsonl"
    if not per_op and not pdl.is_file() and not compile_times.is_file():
        return
    print()
    print("JIT CUDA backend (issue 28; docs/JIT_CUDA.md).")
    if per_op:
        print()
        print(f"| operator | shapes | ours_cuda within {CUDA_LEVEL:.0%} of ours_triton or faster | faster "
              "| geomean ours_cuda / ours_triton | worst |")
        print("|---|---|---|---|---|---|")
        for op, ratios in sorted(per_op.items()):
            level = sum(x <= 1.0 + CUDA_LEVEL for x in ratios)
            print(f"| {op} | {len(ratios)} | {level}/{len(ratios)} | {sum(x < 1.0 for x in ratios)}/{len(ratios)} "
                  f"| {geomean(ratios):.3f} | {max(ratios):.2f}x |")
    _lines_table(pdl, lambda rows: "Programmatic dependent launch (`pdl_chain.jsonl`, `python -m solbench.pdl_chain`): "
                 "two dependent GLU kernels, x [T, 4d] -> [T, 2d] -> [T, d], d = "
                 f"{rows[0]['d'] if rows else '?'}, back to back in one graph (µs per pair, core graph timer).",
                 ("tokens", "without PDL", "with PDL", "gain"),
                 lambda r: (r["tokens"], f"{r['us_per_pair_no_pdl']:.2f}", f"{r['us_per_pair_pdl']:.2f}",
                            f"{r['gain_pct']:+.1f}%"))
    _lines_table(compile_times, lambda rows: "First use (`jit_compile.jsonl`, `python -m solbench.kernels.cuda`): "
                 "NVRTC compile on a cache miss, then the same request from the disk cache, and the module load.",
                 ("variant", "kernels", "NVRTC", "fast math", "compile (miss) s", "disk hit s", "load s"),
                 lambda r: (f"{r['variant']} {r['dtype']} {r['arch']}", r["kernels"], r["nvrtc"], r["fast_math"],
                            f"{r['compile_miss_s']:.3f}", f"{r['disk_hit_s']:.4f}", fmt(r.get("load_s"), 4)))


def issue_section(folder: Path, runs: list) -> None:
    """The bars of issues #22-#24 on this folder's runs (``(path, records)`` each;
    solbench.report.issue_bars states the rules; ``solbench bars <folder> --all-misses`` lists
    every miss)."""
    from solbench.report.issue_bars import markdown, verdicts

    print()
    print("The kernel issues' bars (`solbench bars benchmarks/results/" + folder.name + "`; a comparison with a peer "
          "comes from one run, the one where ours is fastest; unmeasured catalog shapes count as misses; "
          "at most 12 misses a bar are listed).")
    print(markdown(verdicts(runs)), end="")


def _lines_table(path: Path, intro, columns: tuple, cells) -> None:
    """A markdown table of a JSON-lines file that is not a run (one row per line), if it exists."""
    if not path.is_file():
        return
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print()
    print(intro(rows))
    print()
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for r in rows:
        print("| " + " | ".join(str(c) for c in cells(r)) + " |")


def doc(results: Path | None = None) -> str:
    """The whole of docs/PERFORMANCE.md (from ``benchmarks/results/`` by default): the GPU with the
    most records first."""
    results = results or Path(__file__).resolve().parent / "results"
    folders = [d for d in results.iterdir() if d.is_dir() and any(d.glob("*.jsonl"))]
    folders.sort(key=lambda d: (-sum(1 for p in d.glob("*.jsonl") for _ in p.open()), d.name))
    return HEADER + "".join("\n" + gpu_section(d) for d in folders)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    args = sys.argv[1:]
    if args[0] == "--doc":
        sys.stdout.buffer.write(doc(Path(args[1]) if len(args) > 1 else None).encode("utf-8"))
        raise SystemExit(0)
    seconds = []
    while "--second-run" in args:
        i = args.index("--second-run")
        if i + 1 >= len(args):
            raise SystemExit("--second-run needs a JSONL file")
        seconds.append(args[i + 1])
        del args[i:i + 2]
    main(args)
    if seconds:
        behind_in_both([r for p in args for r in read_records(p)], second_run([read_records(p) for p in seconds]))
