"""The rule table against real kernel names from upstream projects, launch grouping, user rules,
and the acceptance bar on the seed document's profile."""
import re
from pathlib import Path

import pytest

from solbench.catalog import operator_entries
from solbench.profiles import Classifier, Kernel, RulesError, read_profile, summarize
from solbench.profiles.classifier import ATTENTION_FAMILY, CLASSES, load_rules

FIX = Path(__file__).parent / "fixtures"

# (kernel name as profilers print it, expected target)
REAL_NAMES = [
    ("void flashinfer::activation::act_and_mul_kernel<__nv_bfloat16, &silu<float>>(__nv_bfloat16*, "
     "__nv_bfloat16 const*, int)", "silu_and_mul"),
    ("void vllm::act_and_mul_kernel<c10::BFloat16, &vllm::silu_kernel<c10::BFloat16>, true>(c10::BFloat16*, "
     "c10::BFloat16 const*, int)", "silu_and_mul"),
    # gelu_and_mul is not a catalog operator: an elementwise kernel.
    ("void flashinfer::activation::act_and_mul_kernel<__nv_bfloat16, &gelu_tanh<float>>(__nv_bfloat16*, "
     "__nv_bfloat16 const*, int)", "elementwise"),
    ("void flashinfer::norm::FusedAddRMSNormKernel<8u, __nv_bfloat16>(__nv_bfloat16*, __nv_bfloat16*, "
     "__nv_bfloat16*, unsigned int, unsigned int, unsigned int, float, float)", "fused_add_rms_norm"),
    ("void flashinfer::norm::RMSNormKernel<8u, __nv_bfloat16>(__nv_bfloat16*, __nv_bfloat16*, __nv_bfloat16*, "
     "unsigned int, unsigned int, unsigned int, float, float)", "rms_norm"),
    ("void vllm::rms_norm_kernel<c10::BFloat16, 8>(c10::BFloat16*, c10::BFloat16 const*, long, "
     "c10::BFloat16 const*, float, int, int)", "rms_norm"),
    ("void vllm::fused_add_rms_norm_kernel<c10::BFloat16, 8>(c10::BFloat16*, long, c10::BFloat16*, "
     "c10::BFloat16 const*, float, int, int)", "fused_add_rms_norm"),
    ("nvjet_tst_192x16_64x8_4x1_v_bz_splitK_bias_TNT", "gemm"),
    ("nvjet_hsh_256x128_64x4_2x1_v_bz_coopA_NNN", "gemm"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1_execute_segment_k_off_"
     "kernel__5x_cublas", "gemm"),
    ("void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, true, false, "
     "false>(cublasLt::cublasSplitKParams<float>, float const*, __nv_bfloat16 const*, __nv_bfloat16*)", "gemm"),
    ("void flash::prepare_varlen_num_blocks_kernel<90>(int, int, int, int const*, int const*)", "attention"),
    ("void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<flash::"
     "CollectiveMainloopFwdSm90<2, cute::tuple<cute::C<1>, cute::C<1>, cute::C<1>>, 128>>>>(flash::"
     "FlashAttnFwdSm90<...>::Params)", "attention"),
    ("void cutlass::device_kernel<flash::FlashAttnFwdCombine<cute::tuple<cute::C<8>, cute::C<128>>, 7, 256, 1, "
     "false, true, cutlass::bfloat16_t, float, cutlass::arch::Sm90>>(flash::FlashAttnFwdCombine<...>::Params)",
     "attention"),
    ("void flashinfer::BatchPrefillWithPagedKVCacheKernel<flashinfer::KernelTraits<>>(flashinfer::Params)",
     "attention"),
    ("void flashinfer::BatchQKApplyRotaryPosIdsCosSinCacheKernel<true, 128u, 8u, 16u, __nv_bfloat16, long>("
     "__nv_bfloat16*, __nv_bfloat16*)", "fused_qkv_rope"),
    ("void flashinfer::BatchQKApplyRotaryPosIdsCosSinCacheEnhancedHeadParallelismKernel<true, 128u, 8u, 16u, "
     "__nv_bfloat16, long>(__nv_bfloat16*)", "fused_qkv_rope"),
    ("void vllm::moe::moe_align_block_size_kernel<int>(int const*, int*, int*, int*, int, int, int, int, "
     "unsigned long, int*)", "moe_align_block_size"),
    ("void vllm::moe::moe_align_block_size_small_batch_expert_kernel<int>(int const*, int*, int*, int*, int, "
     "int, unsigned long)", "moe_align_block_size"),
    ("void vllm::moe::count_and_sort_expert_tokens_kernel<int>(int const*, int*, int*, unsigned long)",
     "moe_count_and_sort"),
    ("fused_moe_kernel", "fused_moe"),
    ("_matmul_ogs_NNT_bf16xbf16xmxfp4_16x256x128x1_swiglu", "fused_moe"),
    ("void vllm::moe::topkGatingSoftmax<8, 128, 4, 16, 32, int>(float const*, bool const*, float*, int, int*, "
     "int*, int, int, int)", "moe_topk_gating_softmax"),
    ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "communication"),
    ("ncclKernel_AllGather_RING_LL_Sum_int8_t(ncclDevComm*, unsigned long, ncclWork*)", "communication"),
    ("void vllm::cross_device_reduce_1stage<__nv_bfloat16, 8>(vllm::RankData*, vllm::RankSignals, "
     "vllm::Signal*, __nv_bfloat16*, int, int)", "communication"),
    ("void vllm::reshape_and_cache_flash_kernel<__nv_bfloat16, __nv_bfloat16, (vllm::Fp8KVCacheDataType)0>("
     "__nv_bfloat16 const*)", "reshape_and_cache"),
    ("kernel_unified_attention_2d", "unified_attention"),
    ("_w8a8_block_fp8_matmul", "block_scaled_mm"),
    ("void flashinfer::sampling::TopKMaskLogitsKernel<1024u, (cub::CUB_200700_900_NS::BlockReduceAlgorithm)2, "
     "4u, float, int>(float*, float*, int*, unsigned int, unsigned int)", "topk_filter"),
    ("Memcpy HtoD (Pageable -> Device)", "memcpy/memset"),
    ("[CUDA memset]", "memcpy/memset"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>, at::detail::Array"
     "<char*, 1>>(int, at::native::FillFunctor<float>, at::detail::Array<char*, 1>)", "elementwise"),
    ("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float, at::native::ArgMaxOps<float>, "
     "unsigned int, long, 4>>(at::native::ReduceOp<float, at::native::ArgMaxOps<float>, unsigned int, long, 4>)",
     "reduction"),
    ("_causal_conv1d_fwd_kernel", "causal_conv1d"),
    ("fused_sigmoid_gating_delta_rule_update_kernel", "gated_delta_rule_update"),
    # Truncated by key_averages at ~52 characters: the visible text ends inside "RMSNormKernel".
    ("void flashinfer::norm::RMSNormKernel<8u, __nv_bfloat...", "rms_norm"),
    ("void flashinfer::norm::RMSNormKern...", "rms_norm"),
    ("void flashinfer::norm::FusedAddRMSNo...", "fused_add_rms_norm"),
]


def test_ambiguous_truncation_is_not_guessed():
    # Cut inside "rms_norm_": rms_norm_kernel (rms_norm) or rms_norm_dynamic_per_token_quant.
    assert Classifier().match("void vllm::rms_norm_...").target == "unclassified"


@pytest.mark.parametrize("name, target", REAL_NAMES)
def test_real_kernel_names(name, target):
    assert Classifier().match(name).target == target


def test_rule_targets_are_catalog_operators_or_classes():
    ops = set(operator_entries())
    for r in load_rules():
        assert r.target in ops or r.target in CLASSES, r


def test_cpu_op_context_files_generic_kernels_under_their_operator():
    clf = Classifier()
    generic = "void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>>"
    assert clf.match(generic).target == "elementwise"
    assert clf.match(generic, "_C::fused_add_rms_norm").target == "fused_add_rms_norm"
    # FA3 launched by vLLM's unified attention custom op is that catalog operator.
    assert clf.match("void cutlass::device_kernel<flash::FlashAttnFwdSm90<>>", "vllm::unified_attention_with_output"
                     ).target == "unified_attention"
    # A kernel-name rule for a catalog operator wins over the launching operator.
    assert clf.match("fused_moe_kernel", "vllm::unified_attention").target == "fused_moe"


def _k(name, start, stream=7, launch=None):
    return Kernel(name=name, total_us=1.0, stream=stream, start_us=start, launch=launch)


def test_fa3_launch_is_one_attention_launch_with_launch_ids():
    names = ["void flash::prepare_varlen_num_blocks_kernel<90>(int)", "void cutlass::device_kernel<flash::"
             "FlashAttnFwdSm90<>>(x)", "void cutlass::device_kernel<flash::FlashAttnFwdCombine<>>(x)"]
    kernels = [_k(n, i, launch=42) for i, n in enumerate(names)] + [_k("nvjet_tst_x", 5, launch=43)]
    out = list(Classifier().classify(kernels, ordered=True))
    assert [(t, p) for _, t, p in out] == [("attention", False), ("attention", True), ("attention", False),
                                           ("gemm", True)]


def test_splitk_reduce_joins_the_block_scaled_gemm_before_it():
    kernels = [_k("_w8a8_block_fp8_matmul", 0), _k("void cublasLt::splitKreduce_kernel<32>(x)", 1),
               _k("nvjet_tst_y", 2), _k("void cublasLt::splitKreduce_kernel<32>(x)", 3, stream=9)]
    out = [(t, p) for _, t, p in Classifier().classify(kernels, ordered=True)]
    # The reduce on stream 9 has no GEMM before it on its stream: a GEMM kernel of its own.
    assert out == [("block_scaled_mm", True), ("block_scaled_mm", False), ("gemm", True), ("gemm", True)]


def test_user_rules_take_precedence_and_are_validated(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("rules:\n  - {kernel: '^my_custom_fused_thing', target: silu_and_mul}\n"
                     "  - {kernel: '^nvjet_tst_192', target: linear_sigmoid_mul}\n")
    clf = Classifier([extra])
    assert clf.match("my_custom_fused_thing_kernel").target == "silu_and_mul"
    assert clf.match("nvjet_tst_192x16_64x8_4x1_v_bz_splitK_bias_TNT").target == "linear_sigmoid_mul"
    assert clf.match("nvjet_tst_128x16").target == "gemm"
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {kernel: 'x', target: gemm}\n  - {kernel: 'y', target: not_an_op}\n")
    with pytest.raises(RulesError, match=r"bad\.yaml:3: target 'not_an_op'"):
        Classifier([bad])
    bad.write_text("rules:\n  - {kernel: '(unclosed', target: gemm}\n")
    with pytest.raises(RulesError, match=r"bad\.yaml:2: bad kernel regex"):
        Classifier([bad])
    bad.write_text("rules: [\n")
    with pytest.raises(RulesError, match=r"bad\.yaml:\d+: invalid YAML"):
        Classifier([bad])


def test_seed_profile_bar():
    """The Bar: >= 95% of kernel time in the seed document's profile lands on a named operator or class,
    and no attention kernel is filed outside attention."""
    (prof,) = read_profile(FIX / "seed_sglang_gptoss_prefill.txt")
    s = summarize(prof, Classifier())
    assert s.total_us == pytest.approx(569.884, abs=1e-3)  # sum of the table's device rows
    assert 1 - s.share("unclassified") >= 0.95
    # The attention kernels of this profile: sglang's triton prefill attention and the flashinfer
    # backend's KV-index metadata kernel.
    attention_kernels = {"_fwd_kernel", "create_flashinfer_kv_indices_triton"}
    seen = set()
    for target, st in s.targets.items():
        for name in st.names:
            if name in attention_kernels or re.search(r"(?i)attn|attention|fmha", name):
                assert target in ATTENTION_FAMILY, (name, target)
                seen.add(name)
    assert seen == attention_kernels
    # Hand-computed from the table: nvjet 11.680 + 10.400 + 5.312 + 312.959 + splitKreduce 7.456 = 347.807 us.
    assert s.targets["gemm"].time_us == pytest.approx(347.807)
    # triton_kernels matmul_ogs (gpt-oss MoE experts): 47.328 + 22.624 us.
    assert s.targets["fused_moe"].time_us == pytest.approx(69.952)
    assert s.targets["attention"].time_us == pytest.approx(34.175 + 2.112)
    assert s.targets["rms_norm"].time_us == pytest.approx(2.113)
    assert s.targets["fused_add_rms_norm"].time_us == pytest.approx(5.376)
    assert s.targets["fused_qkv_rope"].time_us == pytest.approx(2.304)
