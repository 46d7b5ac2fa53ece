"""Each table form and its broken variants, written here small: every form parses to hand-computed
times, or fails with one line naming the line and the problem. None is read silently wrong."""
import pytest

from solbench.profiles import Classifier, ProfileError, read_profile, summarize

ATTN = "void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<flash::CollectiveMa…"
GEMM = "nvjet_tst_320x64_64x4_2x1_2cta_v_bz_TNT"
SILU = "void vllm::act_and_mul_kernel<c10::BFloat16, &vllm::silu_kernel<c10::BFloat16>, (bool)1>(T1 *, cons…"
# As key_averages cuts it (52 characters and "..."): the visible text ends inside "RMSNormKernel".
RMS_CUT = "void flashinfer::norm::RMSNormKernel<8u, __nv_bfloat..."


def read(tmp_path, text, name="p.txt"):
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    return read_profile(f)


def times(prof):
    s = summarize(prof, Classifier())
    return {t: st.time_us for t, st in s.targets.items()}


# ---- nsys cuda_gpu_kern_sum ----------------------------------------------------------------------

def test_markdown_pasted_table(tmp_path):
    (p,) = read(tmp_path, "#### Table 2: CUDA 'cuda_gpu_kern_sum'\n"
                          "| Time (%) | Total Time (ns) | Instances | Avg (ns) | Name |\n"
                          "|----------|-----------------|-----------|----------|------|\n"
                          f"| 60.0     | 6,000           | 2         | 3,000.0  | {GEMM} |\n"
                          f"| 40.0     | 4,000           | 4         | 1,000.0  | {ATTN} |\n\n")
    assert times(p) == pytest.approx({"gemm": 6.0, "attention": 4.0})
    assert not p.warnings and not p.notes


def test_gui_copy_with_units_and_a_header_that_lost_its_padding(tmp_path):
    # Single spaces between the labels; units in every cell, one space from the number.
    (p,) = read(tmp_path, "Time Total Time Instances Avg Name\n"
                          f"75.0% 1.500 ms 100 15.000 μs {GEMM}\n"
                          f"25.0% 500.000 μs 50 10.000 µs {SILU}\n")
    assert times(p) == pytest.approx({"gemm": 1500.0, "silu_and_mul": 500.0})
    assert [k.count for k in p.kernels] == [100, 50]


def test_two_kernel_tables_in_one_file_are_two_profiles(tmp_path):
    table = ("\n ** CUDA GPU Kernel Summary (cuda_gpu_kern_sum):\n\n"
             " Time (%)  Total Time (ns)  Instances  Name\n"
             " --------  ---------------  ---------  ----\n"
             "    100.0            {ns}          1  {name}\n\n")
    profs = read(tmp_path, table.format(ns=2000, name=GEMM) + "Processing [b.sqlite] with [...]\n"
                 + table.format(ns=3000, name=SILU))
    assert [times(p) for p in profs] == [pytest.approx({"gemm": 2.0}), pytest.approx({"silu_and_mul": 3.0})]
    assert profs[1].path.endswith("p.txt#1")


def test_boxed_table_cut_by_unicode_ellipsis_line(tmp_path):
    (p,) = read(tmp_path, "+----------+-----------------+-----------+------+\n"
                          "| Time (%) | Total Time (ns) | Instances | Name |\n"
                          "+----------+-----------------+-----------+------+\n"
                          f"|     80.0 |            8000 |         2 | {GEMM} |\n"
                          "|                          …                    |\n"
                          f"|     10.0 |            1000 |         1 | {SILU} |\n"
                          "+----------+-----------------+-----------+------+\n")
    assert times(p) == pytest.approx({"gemm": 8.0, "silu_and_mul": 1.0})
    assert any("cover 90.0%" in n and "line 5" in n for n in p.notes)


def test_an_untagged_kernel_table_after_a_short_api_report(tmp_path):
    (p,) = read(tmp_path, " ** CUDA API Summary (cuda_api_sum):\n\n"
                          " Time (%)  Total Time (ns)  Num Calls  Name\n"
                          " --------  ---------------  ---------  ----\n"
                          "     90.0            9,000          3  cudaLaunchKernel\n\n"
                          " Time (%)  Total Time (ns)  Instances  Name\n"
                          " --------  ---------------  ---------  ----\n"
                          f"    100.0            2,000          1  {GEMM}\n")
    assert times(p) == pytest.approx({"gemm": 2.0})
    assert p.notes == ["skipped other nsys reports: cuda_api_sum (line 3)"]


def test_only_other_reports(tmp_path):
    with pytest.raises(ProfileError, match=r"p\.txt: holds nsys reports but no kernel table.*cuda_api_sum \(line 3\)"):
        read(tmp_path, " ** CUDA API Summary (cuda_api_sum):\n\n"
                       " Time (%)  Total Time (ns)  Num Calls  Name\n"
                       " --------  ---------------  ---------  ----\n"
                       "     90.0            9,000          3  cudaLaunchKernel\n")


def test_row_that_cannot_be_split_names_its_line(tmp_path):
    with pytest.raises(ProfileError, match=r"p\.txt:4: expected 4 columns .* cannot split this row"):
        read(tmp_path, " Time (%)  Total Time (ns)  Instances  Name\n"
                       " --------  ---------------  ---------  ----\n"
                       f"     60.0            6,000          2  {GEMM}\n"
                       "     40.0            4,000\n")


def test_cells_that_disagree_with_the_tables_own_totals_warn_with_the_line(tmp_path):
    # Row 2's Total Time is in us where the header says ns: its Time (%) and Avg give it away.
    (p,) = read(tmp_path, "Time (%),Total Time (ns),Instances,Avg (ns),Name\n"
                          f"50.0,5000000,5,1000000.0,{GEMM}\n"
                          f"50.0,5000,5,1000000.0,\"{SILU}\"\n")
    assert any(w.startswith("line 3:") and "Instances x Avg" in w for w in p.warnings)
    assert any(w.startswith("line 3:") and "disagrees with Time (%)" in w for w in p.warnings)


def test_an_unsettled_decimal_mark_is_a_warned_guess(tmp_path):
    (p,) = read(tmp_path, f"Total Time (ns)\tInstances\tName\n1,500\t3\t{GEMM}\n")
    assert times(p) == pytest.approx({"gemm": 1.5})
    assert p.warnings == ["line 2: no cell shows the decimal mark: ',' in '1,500' was read as a thousands separator"]


def test_time_percent_over_100(tmp_path):
    (p,) = read(tmp_path, "Time (%),Total Time (ns),Instances,Name\n"
                          f"70.0,7000,1,{GEMM}\n70.0,7000,1,{GEMM}x\n")
    assert any("more than 100%" in n for n in p.notes)


# ---- torch key_averages ----------------------------------------------------------------------------

W = 55


def torch_table(cols, rows, footer=(), prefix=""):
    rule = "-" * W + "  " + "  ".join(["-" * 12] * len(cols)) + "  "
    # As torch prints it: a label wider than its 12-character column ("CUDA time avg") pushes the rest right.
    lines = [rule, "Name".rjust(W) + "  " + "  ".join(c.rjust(12) for c in cols) + "  ", rule]
    for name, *cells in rows:
        lines.append(name.rjust(W) + "  " + "  ".join(c.rjust(12) for c in cells) + "  ")
    lines += [rule, *footer]
    return "\n".join(prefix + ln for ln in lines) + "\n"


CUDA_ONLY = ["Self CUDA", "Self CUDA %", "CUDA total", "CUDA time avg", "# of Calls"]
FULL = ["Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg"] + CUDA_ONLY


def test_key_averages_without_cpu_columns_lists_annotations(tmp_path):
    # Profiled with activities=[CUDA] only: every row has device time; the step marker, the NCCL range
    # and Inductor's graph call enclose kernels that have rows of their own.
    text = torch_table(CUDA_ONLY, [
        ("ProfilerStep*", "1.000ms", "50.00%", "1.000ms", "500.000us", "2"),
        ("## Call CompiledFxGraph fz4vzx7o2aqqxrw... ##"[:W], "500.000us", "25.00%", "500.000us", "250.000us", "2"),
        (GEMM, "400.000us", "20.00%", "400.000us", "40.000us", "10"),
        ("nccl:all_reduce", "60.000us", "3.00%", "60.000us", "30.000us", "2"),
        ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKe...", "50.000us", "2.50%", "50.000us", "25.000us", "2"),
    ], footer=["Self CUDA time total: 2.010ms"])
    (p,) = read(tmp_path, text)
    assert times(p) == pytest.approx({"gemm": 400.0, "communication": 50.0})
    assert [(n, us) for n, us, _ in p.annotations] == [("ProfilerStep*", 1000.0),
                                                      ("## Call CompiledFxGraph fz4vzx7o2aqqxrw... ##", 500.0),
                                                      ("nccl:all_reduce", 60.0)]
    assert any("also counts the annotation rows" in n for n in p.notes)


def test_record_function_range_is_told_by_its_cpu_twin(tmp_path):
    zero = ["0.00%", "0.000us", "0.00%", "0.000us", "0.000us"]
    text = "[rank0]: vllm-omni stage 1\n" + torch_table(FULL, [
        ("pipeline_forward", "1.00%", "10.000us", "90.00%", "900.000us", "900.000us", "0.000us", "0.00%",
         "700.000us", "700.000us", "1"),
        ("pipeline_forward", *zero, "700.000us", "50.00%", "700.000us", "700.000us", "1"),
        (RMS_CUT, *zero, "700.000us", "50.00%", "700.000us", "7.000us", "100"),
    ], footer=["Self CPU time total: 1.000ms", "Self CUDA time total: 700.000us"])
    (p,) = read(tmp_path, text)
    assert [n for n, _, _ in p.annotations] == ["pipeline_forward"]
    assert times(p) == pytest.approx({"rms_norm": 700.0})
    assert not p.notes[1:]  # the kernel rows add up to the footer


def test_inductor_kernel_with_its_cpu_twin_is_a_kernel(tmp_path):
    # Inductor launches each Triton kernel inside a CPU range of the same name.
    zero = ["0.00%", "0.000us", "0.00%", "0.000us", "0.000us"]
    name = "triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_0"
    (p,) = read(tmp_path, torch_table(FULL, [
        (name, "2.00%", "20.000us", "2.00%", "20.000us", "2.000us", "0.000us", "0.00%", "300.000us", "30.000us", "10"),
        (name, *zero, "300.000us", "100.00%", "300.000us", "30.000us", "10"),
    ], footer=["Self CPU time total: 1.000ms", "Self CUDA time total: 300.000us"]))
    assert times(p) == pytest.approx({"rms_norm": 300.0}) and not p.annotations


def test_log_prefixed_table(tmp_path):
    # A table printed through a logger: every line carries a prefix whose digits change.
    text = torch_table(CUDA_ONLY, [(GEMM, "1.500ms", "100.00%", "1.500ms", "150.000us", "10")],
                       footer=["Self CUDA time total: 1.500ms"],
                       prefix="(EngineCore_DP0 pid=44565) INFO 11-05 13:22:49 [gpu_worker.py:210] ")
    text = text.replace("13:22:49", "13:22:50", 2)
    (p,) = read(tmp_path, text)
    assert times(p) == pytest.approx({"gemm": 1500.0})


def test_key_averages_without_device_columns(tmp_path):
    text = torch_table(["Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg", "# of Calls"],
                       [("aten::mm", "50.00%", "1.000ms", "50.00%", "1.000ms", "1.000ms", "1")])
    with pytest.raises(ProfileError, match=r"p\.txt:2: key_averages table has no device-time column"):
        read(tmp_path, text)


def test_name_wider_than_its_column_is_re_split(tmp_path):
    zero = ["0.00%", "0.000us", "0.00%", "0.000us", "0.000us"]
    text = torch_table(FULL, [(GEMM, *zero, "2.000ms", "80.00%", "2.000ms", "200.000us", "10"),
                              (RMS_CUT, *zero, "500.000us", "20.00%", "500.000us", "5.000us", "100")],
                       footer=["Self CUDA time total: 2.500ms"])
    lines = text.splitlines()
    lines[4] = "x" + lines[4]  # one character wider: every later cell moves right
    (p,) = read(tmp_path, "\n".join(lines) + "\n")
    assert times(p) == pytest.approx({"gemm": 2000.0, "rms_norm": 500.0})
    assert [w[:8] for w in p.warnings] == ["line 5: "]
    assert p.kernels[1].count == 100


def test_header_that_disagrees_with_the_rule(tmp_path):
    zero = ["0.00%", "0.000us", "0.00%", "0.000us", "0.000us"]
    text = torch_table(FULL, [(GEMM, *zero, "2.000ms", "80.00%", "2.000ms", "200.000us", "10")],
                       footer=["Self CUDA time total: 2.000ms"])
    lines = text.splitlines()
    lines[1] = " " * 7 + lines[1]  # the header alone indented: its labels straddle the rule's columns
    (p,) = read(tmp_path, "\n".join(lines) + "\n")
    assert times(p) == pytest.approx({"gemm": 2000.0})
    assert p.warnings[0].startswith("line 2: the header does not line up with the dashed rule")
    lines[1] = lines[1].replace("Self CPU %", "Self  CPU %")
    with pytest.raises(ProfileError, match=r"p\.txt:2: the header names 12 columns but the dashed rule has 11"):
        read(tmp_path, "\n".join(lines) + "\n")


def test_nsys_stats_default_output_with_executing_tags_and_grid_columns(tmp_path):
    # `nsys stats` without -r: reports tagged "[n/8] Executing '...' stats report"; the kernel report
    # here is cuda_gpu_kern_gb_sum, whose GridXYZ/BlockXYZ cells hold spaces (cut at the rule's columns).
    text = (
        "[5/8] Executing 'osrt_sum' stats report\n\n"
        " Time (%)  Total Time (ns)  Num Calls    Avg (ns)     Med (ns)    Min (ns)   Max (ns)   StdDev (ns)   Name\n"
        " --------  ---------------  ---------  -----------  -----------  ---------  ---------  -----------  ------\n"
        "     90.0       30,000,000         10  3,000,000.0  3,000,000.0  2,000,000  4,000,000    100,000.0  ioctl\n\n"
        "[6/8] Executing 'cuda_gpu_kern_gb_sum' stats report\n\n"
        " Time (%)  Total Time (ns)  Instances   Avg (ns)     Med (ns)    Min (ns)   Max (ns)   StdDev (ns)      GridXYZ"
        "          BlockXYZ        Name\n"
        " --------  ---------------  ---------  -----------  -----------  ---------  ---------  -----------  ----------"
        "------  --------------  ----------------------------------------\n"
        + "     70.0        7,000,000          1  7,000,000.0  7,000,000.0  7,000,000  7,000,000          0.0  "
        + "132    1    1".rjust(16) + "  " + "384    1    1".rjust(14) + "  nvjet_tst_320x64_64x4_2x1_2cta_v_bz_TNT\n"
        + "     30.0        3,000,000          2  1,500,000.0  1,500,000.0  1,400,000  1,600,000    141,421.4  "
        + "4096    1    1".rjust(16) + "  " + "256    1    1".rjust(14)
        + "  void vllm::act_and_mul_kernel<c10::BFloat16, &vllm::silu_kernel<c10::BFloat16>, true>\n\n"
        + "[7/8] Executing 'cuda_gpu_mem_time_sum' stats report\n\n"
        " Time (%)  Total Time (ns)  Count  Avg (ns)  Med (ns)  Min (ns)  Max (ns)  StdDev (ns)   Operation\n"
        " --------  ---------------  -----  --------  --------  --------  --------  -----------  ----------\n"
        "    100.0            5,000      2   2,500.0   2,500.0     2,000     3,000        707.1  [CUDA memset]\n")
    (p,) = read(tmp_path, text)
    assert times(p) == pytest.approx({"gemm": 7000.0, "silu_and_mul": 3000.0})
    assert p.notes == ["skipped other nsys reports: osrt_sum (line 3)"] and not p.warnings
