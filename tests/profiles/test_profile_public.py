"""Real public profiles of vLLM and SGLang serving, in the forms they were published in, with their
shares computed by hand from the tables' own numbers.

- public_vllm_llama8b_h100_kern_sum.txt: the `nsys stats` example of vLLM's profiling docs (Llama-3.1-8B
  on H100): aligned text indented in a markdown block, names cut with U+2026, rows off the dashed rule,
  an elided `...` line. Hopper, dense.
- public_vllm_qwen7b_b200_boxed.txt: Qwen-7B served by vLLM on B200, `nsys stats --format table`:
  boxed tables, three reports in one file (cuda_gpu_kern_sum, cuda_api_sum, nvtx_pushpop_sum).
  Blackwell, dense.
- public_sglang_dsv3_b200_key_averages.txt: the kernels above 2% of an SGLang DeepSeek (V3 architecture,
  DeepSeek-Math-V2, TP8) B200 profile, as a torch key_averages table with an Inductor graph-call
  annotation and a row_limit cut. Blackwell, MoE + MLA.
- public_vllm_dsv4flash_b200_gui_copy.tsv: vLLM DeepSeek-V4-Flash decode on B200 (TP4), the kernel list
  as the Nsight GUI copies it (tab-separated, units in the cells). Blackwell, MoE + sparse MLA.
- public_vllm_dsv4_hopper_kern_sum.csv: vLLM DeepSeek-V4 on Hopper (sm90 kernels), its largest kernels
  as an nsys CSV. Hopper, MoE + MLA.
"""
from pathlib import Path

import pytest

from solbench.profiles import Classifier, read_profile, summarize
from solbench.profiles.classifier import ATTENTION_FAMILY, GEMM_FAMILY, MOE_FAMILY
from test_profile_rules import _ATTN, _GEMM, _MOE

FIX = Path(__file__).parent / "fixtures"


def summary(name):
    (prof,) = read_profile(FIX / name)
    return prof, summarize(prof, Classifier())


def times(s):
    return {t: st.time_us for t, st in s.targets.items()}


def test_vllm_llama8b_h100_docs_table():
    prof, s = summary("public_vllm_llama8b_h100_kern_sum.txt")
    assert prof.format == "nsys_kern_sum_table"
    ns = {"gemm": 10_327_352_338 + 3_305_114_764 + 2_692_284_876 + 2_116_600_578, "silu_and_mul": 1_119_749_165,
          "attention": 916_662_515, "fused_add_rms_norm": 587_283_113, "fused_qkv_rope": 418_362_605,
          "reshape_and_cache": 167_083_069}
    assert times(s) == pytest.approx({t: v / 1e3 for t, v in ns.items()})
    assert s.share("gemm") == pytest.approx(18_441_352_556 / 21_650_493_023)
    # Names keep their first character although the rows sit off the dashed rule; the reader says so.
    assert [k.name[:4] for k in prof.kernels] == ["sm90"] * 4 + ["void", "void", "std:", "void", "void"]
    assert all(k.truncated for k in prof.kernels)
    assert any("do not line up with the column rule" in w and w.startswith("line 17:") for w in prof.warnings)
    # The table's own Time (%) column: 97.0% shown, the rest elided at line 23.
    assert any("cover 97.0%" in n and "line 23" in n for n in prof.notes)


def test_vllm_qwen7b_b200_boxed_reports():
    prof, s = summary("public_vllm_qwen7b_b200_boxed.txt")
    assert len(prof.kernels) == 28
    ns = {"attention": 24038586640 + 3602652081 + 1300739111 + 26536208,
          "reshape_and_cache": 1055128733,
          "communication": 979257472 + 88744119,
          "elementwise": 894615585 + 558925481 + 389416499 + 379375642 + 345790546 + 294250136 + 227922459
          + 169856369 + 145500672 + 100758204 + 55177971 + 53733570 + 31313263 + 26408408,
          "sampling": 502018195 + 39140329,
          "gemm": 392092900 + 193165670 + 29733109,
          "reduction": 333508027,
          "other": 41018396}
    assert times(s) == pytest.approx({t: v / 1e3 for t, v in ns.items()})
    # The CUDA API report beside it (cudaLaunchKernel, ...) is not kernel time.
    assert not any(k.name.startswith("cuda") for k in prof.kernels)
    assert any("skipped other nsys reports: cuda_api_sum" in n for n in prof.notes)


def test_sglang_deepseek_b200_key_averages():
    prof, s = summary("public_sglang_dsv3_b200_key_averages.txt")
    ms = {"communication": 57.768 + 42.605, "fused_moe": 32.345 + 29.296 + 14.545 + 14.421 + 13.474,
          "mla_decode_attention": 20.602, "gemm": 19.160, "elementwise": 8.941}
    assert times(s) == pytest.approx({t: v * 1e3 for t, v in ms.items()})
    # Inductor's graph-call range is listed and kept out of kernel time.
    assert [(n[:23], us) for n, us, _ in prof.annotations] == [("## Call CompiledFxGraph", pytest.approx(151894.0))]
    # The row whose name is one character wider than its column is re-split, with a warning.
    assert any(w.startswith("line 17:") and "re-split" in w for w in prof.warnings)
    assert any(k.name.startswith("void moe::dev::activation") and k.count == 464 for k in prof.kernels)
    # row_limit cut the table: the footer's total is larger than the rows, and the report says why.
    assert any("footer says 412038.0 us" in n and "row_limit" in n for n in prof.notes)


def test_vllm_deepseek_v4_b200_gui_copy():
    prof, s = summary("public_vllm_dsv4flash_b200_gui_copy.tsv")
    us = {"fused_moe": 138083 + 80031, "gemm": 57635 + 49850 + 19000 + 15639 + 10028 + 6137 + 2419 + 2393,
          "communication": 29843 + 9172, "attention": 24614 + 5197 + 2561 + 2448, "moe_sum_reduce": 18218,
          "quantization": 7834 + 4539 + 3395, "moe_count_and_sort": 7418, "reduction": 6710 + 3941 + 3000,
          "unclassified": 5975, "fused_rmsnorm_quant": 4056, "elementwise": 4021 + 3605, "silu_and_mul": 3748,
          "other": 2696}
    assert times(s) == pytest.approx(us)
    assert s.share("unclassified") == pytest.approx(5975 / 534206)
    assert any("cover 90.9%" in n for n in prof.notes)


def test_vllm_deepseek_v4_hopper_csv():
    prof, s = summary("public_vllm_dsv4_hopper_kern_sum.csv")
    ns = {"communication": 2573732532 + 193008647, "fused_moe": 2491093015 + 959169636, "attention": 1275415520,
          "other": 660255114 + 458322790, "per_token_group_quant_fp8": 448847092, "mla_decode_attention": 366788471,
          "fused_qkv_rope": 324656132, "gemm": 274910203 + 208999427, "moe_sum_reduce": 245237521,
          "block_scaled_mm": 170826225}
    assert times(s) == pytest.approx({t: v / 1e3 for t, v in ns.items()})


PUBLIC = sorted(p.name for p in FIX.glob("public_*"))


@pytest.mark.parametrize("name", PUBLIC)
def test_bar_on_public_profiles(name):
    """>= 95% of kernel time on a named operator or class; attention, MoE and GEMM kernels in their family."""
    assert len(PUBLIC) == 5
    prof, s = summary(name)
    assert 1 - s.share("unclassified") >= 0.95, s.targets.get("unclassified")
    for target, st in s.targets.items():
        for kname in st.names:
            if _MOE.search(kname):
                assert target in MOE_FAMILY, (kname, target)
            elif _ATTN.search(kname):
                assert target in ATTENTION_FAMILY, (kname, target)
            elif _GEMM.search(kname):
                assert target in GEMM_FAMILY, (kname, target)


def test_import_all_public_profiles_from_the_command_line(capsys):
    from solbench.cli import main
    assert main(["profile", "import", *(str(FIX / n) for n in PUBLIC), "--json"]) == 0
    cap = capsys.readouterr()
    import json
    data = json.loads(cap.out)
    assert data["profiles"] == 5 and data["unclassified"] < 0.01
    assert "quantization" in data["shares"] and "mla_decode_attention" in data["shares"]
    # Guesses are reported on stderr with the file and line; the tables' own accounts go into the JSON.
    assert "solbench: warning: " in cap.err and "public_vllm_llama8b_h100_kern_sum.txt: line 17: " in cap.err
    notes = {p["path"]: p.get("notes", []) for p in data["per_profile"]}
    assert any("row_limit" in n for n in notes[str(FIX / "public_sglang_dsv3_b200_key_averages.txt")])
