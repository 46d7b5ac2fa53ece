"""Readers: every format and variant parses to the hand-computed kernel times, and broken files are
rejected with a message naming the file and line."""
import sqlite3
from pathlib import Path

import pytest

from solbench.profiles import Classifier, ProfileError, read_profile, summarize

FIX = Path(__file__).parent / "fixtures"


def shares(path):
    (prof,) = read_profile(path)
    s = summarize(prof, Classifier())
    return prof, s, {t: st.time_us for t, st in s.targets.items()}


def test_kern_sum_csv_modern_header():
    prof, s, t = shares(FIX / "nsys_kern_sum.csv")
    assert prof.format == "nsys_kern_sum_csv"
    # Total Time (ns) column / 1000; names with commas and parentheses come through the CSV parser whole.
    assert t == pytest.approx({"gemm": 500 + 40, "attention": 200, "silu_and_mul": 100, "fused_add_rms_norm": 80,
                               "communication": 50, "unclassified": 30})
    assert s.total_us == pytest.approx(1000)
    assert s.targets["silu_and_mul"].kernels == 20
    assert any(k.name.endswith("(__nv_bfloat16*, __nv_bfloat16 const*, int)") for k in prof.kernels)


def test_kern_sum_csv_old_header():
    prof, s, t = shares(FIX / "nsys_kern_sum_old.csv")
    # "Average"/"Minimum"/"Maximum" and "Time(%)" from older nsys; units are ns.
    assert t == pytest.approx({"moe_align_block_size": 600, "fused_moe": 300, "fused_qkv_rope": 100})
    assert s.targets["moe_align_block_size"].kernels == 4


def test_kern_sum_human_table_thousands_separators():
    prof, s, t = shares(FIX / "nsys_kern_sum_table.txt")
    assert prof.format == "nsys_kern_sum_table"
    assert t == pytest.approx({"gemm": 1500, "rms_norm": 400, "fused_moe": 100})
    assert s.targets["rms_norm"].kernels == 200


def test_kern_sum_tabs_and_unit_suffixes():
    # 1.5 ms, 750 us, 250000 ns; both micro signs (U+03BC, U+00B5) appear in the Avg column.
    _, _, t = shares(FIX / "nsys_kern_sum_units_tabs.txt")
    assert t == pytest.approx({"gemm": 1500, "silu_and_mul": 750, "communication": 250})


def test_kern_sum_decimal_comma_locale():
    # "1.200.000,5" ns = 1200.0005 us; "80,0" settles that ',' is the decimal mark.
    _, _, t = shares(FIX / "nsys_kern_sum_decimal_comma.txt")
    assert t == pytest.approx({"gemm": 1200.0005, "rms_norm": 300.0})


def test_gpu_trace_csv_groups_helpers_with_their_launch():
    prof, s, t = shares(FIX / "nsys_gpu_trace.csv")
    assert prof.format == "nsys_gpu_trace_csv" and prof.ordered
    # Stream 7: nvjet 100 + splitK 10 (joins the GEMM), FA3 prepare 2 + main 50 + combine 5 (one attention
    # launch), then a split-K reduce right after attention: it may only join GEMM-like operators, so it
    # stays a GEMM kernel of its own (4). Stream 13: memcpy 8 and NCCL 21.
    assert t == pytest.approx({"gemm": 114, "attention": 57, "communication": 21, "memcpy/memset": 8})
    assert s.targets["attention"].kernels == 3 and s.targets["attention"].launches == 1
    assert s.targets["gemm"].kernels == 3 and s.targets["gemm"].launches == 2


def _make_sqlite(path, with_kernel_table=True):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT)")
    names = {1: "nvjet_tst_192x16_64x8_4x1_v_bz_splitK_bias_TNT",
             2: "void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, true, "
                "false, false>(cublasLt::cublasSplitKParams<float>, float const*)",
             3: "void flashinfer::activation::act_and_mul_kernel<__nv_bfloat16, &silu<float>>(__nv_bfloat16*, "
                "__nv_bfloat16 const*, int)",
             4: "cudaLaunchKernel_v7000", 5: "cudaGraphLaunch_v10000",
             6: "void vllm::moe::moe_align_block_size_small_batch_expert_kernel<int>(int const*, int*, int*, int*, "
                "int, int, unsigned long)"}
    con.executemany("INSERT INTO StringIds VALUES (?, ?)", names.items())
    if with_kernel_table:
        con.execute("CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INT, end INT, deviceId INT, streamId INT, "
                    "correlationId INT, demangledName INT, shortName INT, gridX INT)")
        con.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES (?,?,0,?,?,?,?,1)", [
            (1000, 41000, 7, 1, 1, 1), (42000, 45000, 7, 2, 2, 2), (50000, 56000, 7, 3, 3, 3),
            (60000, 62000, 9, 4, 6, 6)])
    con.execute("CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INT, end INT, eventClass INT, globalTid INT, "
                "correlationId INT, nameId INT)")
    con.executemany("INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (0, 10, 0, 1, ?, ?)",
                    [(1, 4), (2, 4), (3, 5), (4, 4)])
    con.execute("CREATE TABLE CUPTI_ACTIVITY_KIND_MEMSET (start INT, end INT, streamId INT)")
    con.execute("INSERT INTO CUPTI_ACTIVITY_KIND_MEMSET VALUES (100, 1100, 9)")
    con.commit()
    con.close()


def test_nsys_sqlite(tmp_path):
    db = tmp_path / "report.sqlite"
    _make_sqlite(db)
    prof, s, t = shares(db)
    assert prof.format == "nsys_sqlite"
    # ns -> us: 40 + 3 (split-K joins the GEMM), 6 silu, 2 moe_align, 1 memset.
    assert t == pytest.approx({"gemm": 43, "silu_and_mul": 6, "moe_align_block_size": 2, "memcpy/memset": 1})
    assert s.targets["gemm"].launches == 1
    # The silu kernel was replayed through cudaGraphLaunch (joined through correlationId).
    assert [k.graph for k in prof.kernels if "act_and_mul" in k.name] == [True]


def test_nsys_sqlite_without_kernel_table(tmp_path):
    db = tmp_path / "nocuda.sqlite"
    _make_sqlite(db, with_kernel_table=False)
    with pytest.raises(ProfileError, match=r"nocuda\.sqlite.*CUPTI_ACTIVITY_KIND_KERNEL"):
        read_profile(db)


@pytest.mark.parametrize("input_shapes", [False, True])
def test_torch_table_with_truncated_names(tmp_path, input_shapes):
    # key_averages(group_by_input_shape=True) adds a last "Input Shapes" column whose cells hold spaces.
    rule = "-" * 40 + "  " + "  ".join("-" * 14 for _ in range(10)) + ("  " + "-" * 24 if input_shapes else "")
    cols = ["Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg", "Self CUDA", "Self CUDA %",
            "CUDA total", "CUDA time avg", "# of Calls"]
    head = f"{'Name':>40}  " + "  ".join(f"{c:>14}" for c in cols) + ("  Input Shapes" if input_shapes else "")

    def row(name, cpu, cuda, calls):
        vals = ["1.00%" if cpu else "0.00%", cpu or "0.000us", "1.00%" if cpu else "0.00%", cpu or "0.000us",
                cpu or "0.000us", cuda, "1.00%", cuda, cuda, str(calls)]
        return (f"{name:>40}  " + "  ".join(f"{v:>14}" for v in vals)
                + ("  [[4, 64], [64, 256]]" if input_shapes and cpu else ("  []" if input_shapes else "")))

    text = "\n".join([rule, head, rule,
                      row("aten::mm", "10.000us", "1.500ms", 2),               # CPU op: not a kernel row
                      row("nvjet_tst_384x8_64x4_2x1_v_bz_TNT", None, "1.500ms", 2),
                      row("void flashinfer::norm::RMSNormKern...", None, "500.000us", 4),
                      row("Memcpy HtoD (Pageable -> Device)", None, "0.002s", 1),
                      rule, "Self CPU time total: 10.000us", "Self CUDA time total: 4.000ms", ""])
    f = tmp_path / "table.txt"
    f.write_text("server log before the table\n" + text)
    prof, s, t = shares(f)
    # Auto-scaled cells: 1.5 ms, 500 us, 0.002 s.
    assert t == pytest.approx({"gemm": 1500, "rms_norm": 500, "memcpy/memset": 2000})
    assert [k.truncated for k in prof.kernels] == [False, True, False]
    assert not prof.notes  # rows add up to the footer's total


# ---- broken files -----------------------------------------------------------------------------------

@pytest.mark.parametrize("content, match", [
    ("", r"empty\.txt: empty file"),
    ("   \n\n", r"empty\.txt: empty file"),
])
def test_empty(tmp_path, content, match):
    f = tmp_path / "empty.txt"
    f.write_text(content)
    with pytest.raises(ProfileError, match=match):
        read_profile(f)


def test_missing_total_column(tmp_path):
    f = tmp_path / "nototal.csv"
    f.write_text("Time (%),Instances,Avg (ns),Name\n50.0,3,10.0,nvjet_x\n")
    with pytest.raises(ProfileError, match=r"nototal\.csv:1: missing the 'Total Time \(ns\)' column"):
        read_profile(f)


def test_missing_name_column(tmp_path):
    f = tmp_path / "noname.csv"
    f.write_text("Time (%),Total Time (ns),Instances\n50.0,100,3\n")
    with pytest.raises(ProfileError, match=r"noname\.csv: unrecognized profile"):
        read_profile(f)


def test_unknown_unit(tmp_path):
    f = tmp_path / "units.txt"
    f.write_text("Time (%)\tTotal Time\tInstances\tName\n50.0\t1.5 ms\t3\tnvjet_a\n50.0\t12 xs\t3\tnvjet_b\n")
    with pytest.raises(ProfileError, match=r"units\.txt:3: .*unknown time unit 'xs'"):
        read_profile(f)


def test_truncated_csv_row(tmp_path):
    src = (FIX / "nsys_kern_sum.csv").read_text().splitlines()
    f = tmp_path / "cut.csv"
    f.write_text("\n".join(src[:6] + [src[6][:20]]) + "\n")
    with pytest.raises(ProfileError, match=r"cut\.csv:7: expected 9 CSV fields, got 4"):
        read_profile(f)


def test_not_a_number(tmp_path):
    f = tmp_path / "nan.csv"
    f.write_text("Time (%),Total Time (ns),Instances,Name\n50.0,abc,3,nvjet_x\n")
    with pytest.raises(ProfileError, match=r"nan\.csv:2: column 'Total Time \(ns\)'.*'abc' is not a number"):
        read_profile(f)


def test_torch_table_not_closed(tmp_path):
    lines = (FIX / "seed_sglang_gptoss_prefill.txt").read_text().splitlines()
    f = tmp_path / "cut_table.txt"
    f.write_text("\n".join(lines[:40]) + "\n")
    with pytest.raises(ProfileError, match=r"cut_table\.txt:1: key_averages table is not closed"):
        read_profile(f)


def test_torch_table_shifted_row(tmp_path):
    lines = (FIX / "seed_sglang_gptoss_prefill.txt").read_text().splitlines()
    lines[5] = lines[5][:-4] + "abcd"  # the "# of Calls" cell
    f = tmp_path / "shifted.txt"
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(ProfileError, match=r"shifted\.txt:6: row does not fit"):
        read_profile(f)


def test_unrecognized_and_missing(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello\nworld\n")
    with pytest.raises(ProfileError, match=r"notes\.txt: unrecognized profile"):
        read_profile(f)
    with pytest.raises(ProfileError, match=r"nope\.csv: no such file"):
        read_profile(tmp_path / "nope.csv")


def test_gpu_trace_human_table_with_empty_cells():
    prof, s, t = shares(FIX / "nsys_gpu_trace_table.txt")
    assert prof.format == "nsys_gpu_trace_table"
    # memcpy 2 (no grid/block cells), nvjet 40 + split-K 3 (one GEMM launch), silu 5.
    assert t == pytest.approx({"memcpy/memset": 2, "gemm": 43, "silu_and_mul": 5})
    assert s.targets["gemm"].launches == 1
    assert [k.start_us for k in prof.kernels][:2] == pytest.approx([812345.0, 812350.0])
