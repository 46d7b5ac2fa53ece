"""The command-line launch overrides of the kernel library (solbench.kernels.common.env_fields) and
the SM count a launch plans for under `solbench sass`; the kernels each override reaches are
checked in their own tests (attention, block_scaled_mm, the fused MoE)."""
import pytest
import torch

from solbench.kernels import common
from solbench.kernels.attention import AttentionConfig, tiles_override

NAMES = ("block_m", "block_n", "num_warps", "num_stages")


@pytest.mark.parametrize("value,want", [
    ("", None),
    ("128,64,8,3", dict(block_m=128, block_n=64, num_warps=8, num_stages=3)),
    ("num_stages=2, block_m=16", dict(num_stages=2, block_m=16)),
    ("64,num_warps=4", dict(block_m=64, num_warps=4)),        # positional first, then named
])
def test_env_fields_forms(monkeypatch, value, want):
    monkeypatch.setenv("SOLBENCH_TEST_FIELDS", value)
    assert common.env_fields("SOLBENCH_TEST_FIELDS", NAMES) == want


@pytest.mark.parametrize("value,why", [
    ("1,2,3,4,5", "positional values come first"),            # one too many
    ("num_warps=4,64", "positional values come first"),       # positional after named
    ("warps=4", "unknown or repeated field 'warps'"),
    ("num_warps=4,num_warps=8", "unknown or repeated field 'num_warps'"),
    ("block_m=big", "invalid literal"),
])
def test_env_fields_errors_name_the_variable_and_the_form(monkeypatch, value, why):
    monkeypatch.setenv("SOLBENCH_TEST_FIELDS", value)
    with pytest.raises(ValueError, match=f"SOLBENCH_TEST_FIELDS=.*expected integers block_m,block_n,num_warps,"
                                         f"num_stages.*{why}"):
        common.env_fields("SOLBENCH_TEST_FIELDS", NAMES)


def test_attention_tiles_keep_their_positional_form_and_need_every_field(monkeypatch):
    monkeypatch.setenv("SOLBENCH_ATTENTION_TILES", "16,32,4,1")
    assert tiles_override() == AttentionConfig(16, 32, 4, 1)
    monkeypatch.setenv("SOLBENCH_ATTENTION_TILES", "block_n=32,block_m=16,num_stages=1,num_warps=4")
    assert tiles_override() == AttentionConfig(16, 32, 4, 1)
    monkeypatch.setenv("SOLBENCH_ATTENTION_TILES", "16,32,4")
    with pytest.raises(ValueError, match="SOLBENCH_ATTENTION_TILES=.*missing num_stages"):
        tiles_override()
    monkeypatch.delenv("SOLBENCH_ATTENTION_TILES")
    assert tiles_override() is None


def test_sass_capture_plans_for_the_target_gpus_sms(monkeypatch):
    # `solbench sass --sms 132` patches runtime.tuning.sm_count; launches on CPU tensors then size
    # their grids for that GPU, and only while the capture emulates GPU code generation.
    from solbench.kernels.gemm import block_fp8
    from solbench.runtime import tuning

    monkeypatch.setattr(tuning, "sm_count", lambda: 132)
    x = torch.empty(1)
    assert common.sm_count(x) is None and block_fp8.sm_count(x.device) == 2   # the interpreter's stand-in
    monkeypatch.setattr(common, "EMULATE_GPU_CODEGEN", True)
    assert common.sm_count(x) == 132 and block_fp8.sm_count(x.device) == 132
