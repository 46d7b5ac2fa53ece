"""One test per rule of rules.yaml: each rule files real kernel names, found in public profiles, issues,
docs and source (vLLM, SGLang, FlashInfer, TensorRT-LLM, DeepGEMM, FlashMLA, aiter/CK, Inductor output),
and it is that very rule that files them. Plus the families: no attention, MoE or GEMM kernel lands
outside its family, and `--explain` says which rule matched and why."""
import re

import pytest

from solbench.cli import main
from solbench.profiles import Classifier
from solbench.profiles.classifier import ATTENTION_FAMILY, GEMM_FAMILY, MOE_FAMILY, load_rules

ADD = ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::BFloat16>, "
       "at::detail::Array<char*, 3>>(int, at::native::CUDAFunctor_add<c10::BFloat16>, at::detail::Array<char*, 3>)")

# rule name -> [(kernel name, launching CPU op or None, expected target)]
RULE_EXAMPLES = {
    # Inductor output (names from torch.compile'd vLLM / SGLang graphs and Inductor's own tests).
    "inductor-layernorm": [("triton_red_fused_native_layer_norm_0", None, "layer_norm")],
    "inductor-rmsnorm-quant": [
        ("triton_per_fused__fused_rms_norm__to_copy_abs_amax_clamp_div_mul_reciprocal_select_unsqueeze_view_1", None,
         "fused_rmsnorm_quant")],
    "inductor-rmsnorm": [("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_0", None, "rms_norm"),
                         ("triton_red_fused__to_copy_add_mean_mul_pow_rsqrt_5", None, "rms_norm")],
    "inductor-silu-mul": [("triton_poi_fused_mul_silu_slice_1", None, "silu_and_mul"),
                          ("triton_poi_fused_mul_rocm_unquantized_gemm_silu_slice_0", None, "silu_and_mul"),
                          ("triton_per_fused__to_copy_abs_amax_clamp_min_div_mul_silu_1", None, "silu_and_mul")],
    "inductor-quant": [("triton_red_fused__scaled_mm__to_copy_abs_amax_clamp_mul_reciprocal_0", None, "quantization"),
                       ("triton_per_fused__to_copy_abs_amax_clamp_min_div_view_18", None, "quantization")],
    "inductor-template-mm": [("triton_tem_fused_mm_0", None, "gemm"), ("triton_tem_fused_mm_relu_0", None, "gemm")],
    # The residual add that vLLM fuses after its all-reduce: a local add, not a collective.
    "inductor-pointwise": [("triton_poi_fused_add_all_reduce_0", None, "elementwise"),
                           ("triton_poi_fused_add_all_reduce_div_0", None, "elementwise")],
    "inductor-reduction": [("triton_per_fused__softmax_3", None, "reduction"),
                           ("triton_per_fused__softmax_add_clone_detach_1", None, "reduction")],
    # Catalog operators by kernel name.
    "act-and-mul-silu": [
        ("void vllm::act_and_mul_kernel<c10::BFloat16, &vllm::silu_kernel<c10::BFloat16>, (bool)1>(T1 *, cons…", None,
         "silu_and_mul"),
        ("void flashinfer::activation::act_and_mul_kernel<__nv_bfloat16, &silu<float>>(__nv_bfloat16*, "
         "__nv_bfloat16 const*, int)", None, "silu_and_mul")],
    "silu-and-mul-named": [("_ZN5aiter19silu_and_mul_kernelIDF16bEEvPT_PKS1_i", None, "silu_and_mul")],
    "rmsnorm-quant": [("_ZN5aiter24add_rmsnorm_quant_kernelIDF16bDF16bLi256ELi16ELb1ELb0ELb1ELi1EEEvPT0_", None,
                       "fused_rmsnorm_quant"), ("_q_kv_norm_quant_kernel", None, "fused_rmsnorm_quant")],
    "fused-add-rmsnorm": [
        ("std::enable_if<T2>(int)0&&vllm::_typeConvert<T1>::exists, void>::type vllm::fused_add_rms_norm_kern…", None,
         "fused_add_rms_norm"),
        ("void flashinfer::norm::FusedAddRMSNormKernel<8u, __nv_bfloat16>(__nv_bfloat16*, __nv_bfloat16*, "
         "__nv_bfloat16*, unsigned int, unsigned int, unsigned int, float, float)", None, "fused_add_rms_norm")],
    "qk-rmsnorm": [("fused_qk_rmsnorm", None, "fused_qk_rmsnorm")],
    "gated-rmsnorm": [("_layer_norm_fwd_1pass_kernel", None, "gated_rms_norm")],
    "rmsnorm": [("void flashinfer::norm::RMSNormKernel<8u, __nv_bfloat16>(__nv_bfloat16*, __nv_bfloat16*, "
                 "__nv_bfloat16*, unsigned int, unsigned int, unsigned int, float, float)", None, "rms_norm"),
                ("void rms_norm_f32<(int)1024, (bool)1, (bool)0>(const float *, float *, int, long, long, long, float…",
                 None, "rms_norm")],
    "l2norm": [("void l2_norm_f32<(int)32>(const float *, float *, int, long, long, long, float)", None, "l2_norm")],
    "layernorm": [("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::BFloat16, float>("
                   "int, float, c10::BFloat16 const*, c10::BFloat16 const*, c10::BFloat16 const*, float*, float*, "
                   "c10::BFloat16*)", None, "layer_norm")],
    "per-token-group-quant": [
        ("void per_token_group_quant_8bit_kernel<c10::BFloat16, c10::Float8_e4m3fn, true, true, float>("
         "c10::BFloat16 const*, void*, float*, int, int, int, float, float, float, int, int)", None,
         "per_token_group_quant_fp8")],
    "per-token-quant": [("void vllm::dynamic_per_token_scaled_fp8_quant_kernel<c10::BFloat16, c10::Float8_e4m3fn>("
                         "c10::Float8_e4m3fn*, float*, c10::BFloat16 const*, float const*, int)", None,
                         "fp8_dynamic_per_token_quant")],
    "mrope": [("_triton_mrope_forward", None, "mrope")],
    "fused-qkv-rope": [
        ("void vllm::rotary_embedding_kernel<c10::BFloat16, (bool)1>(const long *, T1 *, T1 *, const T1 *, in…", None,
         "fused_qkv_rope"),
        ("rotary_kernel", None, "fused_qkv_rope"),
        ("void vllm::deepseek_v4_fused_ops::fusedDeepseekV4QNormRopeKVRopeQuantInsertKernelReducedGrid<c10::BFloat16, "
         "64>(c10::BFloat16 const*, c10::BFloat16*)", None, "fused_qkv_rope")],
    "reshape-and-cache": [("void vllm::reshape_and_cache_flash_kernel<__nv_bfloat16, __nv_bfloat16, "
                           "(vllm::Fp8KVCacheDataType)0…", None, "reshape_and_cache")],
    "moe-topk-softmax": [("void vllm::moe::topkGatingSoftmax<8, 128, 4, 16, 32, int>(float const*, bool const*, "
                          "float*, int, int*, int*, int, int, int)", None, "moe_topk_gating_softmax")],
    "trtllm-moe-routing-indices": [
        ("void moe::dev::routing::routingCustom::routingIndicesClusterKernel<moe::dev::routing::routingCustom::"
         "KernelParams<__nv_b", None, "moe_count_and_sort"),
        ("moe::dev::routing::routingDeepSeek::routingIndicesClusterKernel", None, "moe_count_and_sort")],
    "trtllm-moe-routing": [("moe::dev::routing::routingDeepSeek::routingMainKernel", None, "moe_topk_gating_softmax")],
    "triton-kernels-topk": [("_topk_forward", None, "moe_topk_gating_softmax")],
    "moe-count-sort": [("void vllm::moe::count_and_sort_expert_tokens_kernel<int>(int const*, int*, int*, "
                        "unsigned long)", None, "moe_count_and_sort")],
    "triton-kernels-routing": [("_combined_routing_compute", None, "moe_count_and_sort"),
                               ("_sum_bitmatrix_rows", None, "moe_count_and_sort")],
    "moe-align": [("void vllm::moe::moe_align_block_size_kernel<int>(int const*, int*, int*, int*, int, int, int, "
                   "int, unsigned long, int*)", None, "moe_align_block_size")],
    "moe-sum": [("moe_sum_kernel", None, "moe_sum_reduce"),
                ("void moe::dev::finalize::finalizeKernelVecLoad<moe::dev::finalize::KernelParams<cutlass::bfloat16_t, "
                 "float, 2, true> >(m", None, "moe_sum_reduce"),
                ("finalizeKernelVecLoad", None, "moe_sum_reduce")],
    "fp8-blockscale-moe": [("_ZN5aiter59fmoe_stage1_bf16_pertokenFp8_blockscale_g1u1_32x128_3tg_pf3E", None,
                            "fp8_blockscale_fused_moe")],
    "fused-moe": [
        ("fused_moe_kernel", None, "fused_moe"),
        ("bmm_E4m3_E4m3E4m3_Fp32_t128x64x128u2_s6_et64x64_m64x64x32_c1x1x1_rM_TN_transOut_noShfl_dsFp8_schPd4x2x2x3_"
         "bN_tma_tmaSf_rgTma_clmp_lbW4_dynB_sm100f", None, "fused_moe"),
        ("bmm_Bfloat16_E4m3E4m3_Fp32_t128x16x128u2_s6_et64x16_m64x16x32_c1x1x1_rM_TN_transOut_noShfl_dsFp8_"
         "schPd4x2x2x3_bN_rgTma_clmp_dynB_sm100f", None, "fused_moe"),
        ("bmm_MxE4m3_MxE2m1MxE4m3_Fp32_Ab32_Bb32_Cb32_t128x32x256_s5_et128x32_m256x32x32_c2x1x1_rM_TN_transOut_"
         "schPd2x1x2x3_biasFp", None, "fused_moe"),
        ("bmm_E2m1_E2m1E2m1_Fp32", None, "fused_moe"),
        ("void moe::dev::activation::activationDeepSeekKernel<moe::dev::activation::KernelParams<cutlass::"
         "float_e4m3_t, 4, true> >(moe::dev::activation::KernelParams<cutlass::float_e4m3_t, 4, true>)", None,
         "fused_moe"),
        ("void marlin_moe_wna16::Marlin<1125899906909960l, 562949953487106l, 1125899906909960l, 2814749767106568l, "
         "128, 4, 8, 4, false, 4, 2, false>(int4 const*, int4 const*)", None, "fused_moe"),
        ("_ZN5aiter50fmoe_bf16_pertokenMXfp4_g1u1_flat_novs_silu_16x128E", None, "fused_moe"),
        ("_matmul_ogs_NNT_bf16xbf16xmxfp4_16x256x128x1_swiglu", None, "fused_moe")],
    "linear-sigmoid-mul": [("fused_linear_sigmoid_mul", None, "linear_sigmoid_mul")],
    "block-scaled-mm": [
        ("void deep_gemm::sm90_fp8_gemm_1d2d_impl<(cute::UMMA::Major)0, 0u, 4096u, 1024u, 1u, 256u, 128u, 128u, 128u, "
         "128u, 128u, 3u, 128u, 256u, 2u, true, 132u, (deep_gemm::GemmType)0, deep_gemm::epilogue::transform::"
         "EpilogueIdentity>(float*, int*, unsigned int)", None, "block_scaled_mm"),
        ("void deep_gemm::sm100_fp8_gemm_1d1d_impl<(cute::UMMA::Major)0, (cute::UMMA::Major)0, 128u>", None,
         "block_scaled_mm"),
        ("_w8a8_block_fp8_matmul", None, "block_scaled_mm"),
        ("void ck::kernel_gemm_xdl_cshuffle_v3_multi_d_blockscale_b_preshuffle<int>()", None, "block_scaled_mm"),
        ("_ZN5aiter42fp8gemm_bf16_blockscale_BpreShuffle_32x128E", None, "block_scaled_mm")],
    "gdn-update": [("fused_sigmoid_gating_delta_rule_update_kernel", None, "gated_delta_rule_update")],
    "gdn-chunk-state": [("chunk_gated_delta_rule_fwd_kernel_h_blockdim64", None, "chunk_gated_delta_rule_state")],
    "gdn-chunk-output": [("chunk_fwd_kernel_o", None, "chunk_delta_rule_output")],
    "causal-conv1d": [("_causal_conv1d_fwd_kernel", None, "causal_conv1d")],
    "topk-mask-logits": [("void flashinfer::sampling::TopKMaskLogitsKernel<1024u, (cub::CUB_200700_900_NS::"
                          "BlockReduceAlgorithm)2, 4u, float, int>(float*, float*, int*, unsigned int, unsigned int)",
                          None, "topk_filter")],
    "unified-attention": [("kernel_unified_attention_2d", None, "unified_attention")],
    "unified-attention-reduce": [("reduce_segments", None, "unified_attention")],
    "paged-attention": [("_ZN5aiter42pa_bf16_pertokenFp8_gqa10_1tg_4w_mtp3_msk1E", None, "paged_attention_decode"),
                        ("void vllm::paged_attention_v2_kernel<__nv_bfloat16, __nv_bfloat16, 128, 16, 128, "
                         "(vllm::Fp8KVCacheDataType)0, false, 512>", None, "paged_attention_decode")],
    "mla-decode": [
        ("fmhaSm100fKernel_QkvE4m3OBfloat16HQk576HV512PagedKvDenseStaticTokenSparseP1VarSeqQ16Kv128PersistentSwapsAb"
         "ForGen", None, "mla_decode_attention"),
        ("fmhaSm100fKernel_QkvE4m3OBfloat16HQk576HV512HVPerCta256PagedKvDenseP64MultiCtasKvVarSeqQ16Kv128StaticSwapsAb"
         "ForGen", None, "mla_decode_attention"),
        ("void sm90::decode::sparse_fp8::flash_fwd_splitkv_mla_fp8_sparse_kernel<sm90::decode::sparse_fp8::"
         "KernelTemplate<(ModelType)1, 64>, cutlass::bfloat16_t>(SparseAttnDecodeParams)", None,
         "mla_decode_attention"),
        ("_ZN5aiter39mla_dec_stage1_bf16_a16w16_subQ16_mqa16E", None, "mla_decode_attention")],
    # Catalog operators by launching CPU operator (a generic kernel inside a named custom op).
    "op-silu-and-mul": [(ADD, "_C::silu_and_mul", "silu_and_mul")],
    "op-fused-add-rmsnorm": [(ADD, "_C::fused_add_rms_norm", "fused_add_rms_norm")],
    "op-rmsnorm": [(ADD, "_C::rms_norm", "rms_norm")],
    "op-layernorm": [(ADD, "aten::layer_norm", "layer_norm")],
    "op-rope": [(ADD, "_C::rotary_embedding", "fused_qkv_rope")],
    "op-reshape-and-cache": [(ADD, "_C_cache_ops::reshape_and_cache_flash", "reshape_and_cache")],
    "op-moe-align": [(ADD, "_moe_C::moe_align_block_size", "moe_align_block_size")],
    "op-topk-softmax": [(ADD, "_moe_C::topk_softmax", "moe_topk_gating_softmax")],
    "op-moe-sum": [(ADD, "_moe_C::moe_sum", "moe_sum_reduce")],
    "op-unified-attention": [("void cutlass::device_kernel<flash::FlashAttnFwdSm90<>>",
                              "vllm::unified_attention_with_output", "unified_attention")],
    "op-per-token-group-quant": [(ADD, "_C::per_token_group_fp8_quant", "per_token_group_quant_fp8")],
    "op-per-token-quant": [(ADD, "_C::dynamic_per_token_scaled_fp8_quant", "fp8_dynamic_per_token_quant")],
    # Generic classes.
    "fa3-prepare": [("void flash::prepare_varlen_num_blocks_kernel<90>(int, int, int, int const*, int const*)", None,
                     "attention")],
    "fa3-combine": [("void cutlass::device_kernel<flash::FlashAttnFwdCombine<cute::tuple<cute::C<8>, cute::C<128>>, 7, "
                     "256, 1, false, true, cutlass::bfloat16_t, float, cutlass::arch::Sm90>>(flash::"
                     "FlashAttnFwdCombine<...>::Params)", None, "attention")],
    "flashinfer-merge": [("void flashinfer::MergeStatesLargeNumIndexSetsKernel<8, 32, 4, 4, __nv_bfloat16, "
                          "__nv_bfloat16>", None, "attention")],
    "attention": [
        ("fmhaSm100fKernel_QkvBfloat16OBfloat16H128PagedKvCausalP16VarSeqQ128Kv128PersistentContext", None,
         "attention"),
        ("fmhaSm100fKernel_QkvBfloat16OBfloat16H128PagedKvCausalP16MultiCtasKvCgaVarSeqQ8Kv128StaticSwapsAbFo…", None,
         "attention"),
        ("void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<flash::CollectiveMa…", None,
         "attention"),
        ("void flash_fwd_splitkv_kernel<Flash_fwd_kernel_traits<128, 64, 128, 4, false, false, cutlass::bfloat16_t>>",
         None, "attention"),
        ("void flashinfer::BatchPrefillWithPagedKVCacheKernel<flashinfer::KernelTraits<>>(flashinfer::Params)", None,
         "attention"),
        ("_ZN5aiter32fmha_fwd_hd192_hd128_bf16_causalE", None, "attention"),
        ("void sm90::fwd::sparse_attn_fwd_kernel<sm90::fwd::KernelTemplate<512, true>>", None, "attention"),
        ("fmhaSm100fKernel_QkvE4m3OBfloat16H512PagedKvDenseDynamicTokenSparseP1VarSeqQ16Kv128PersistentSwapsAbForGen",
         None, "attention")],
    "xqa": [("kernel_mha", None, "attention")],
    "attention-metadata": [("create_flashinfer_kv_indices_triton", None, "attention"),
                           ("void vllm::gather_and_maybe_dequant_cache<__nv_bfloat16, unsigned char, "
                            "(vllm::Fp8KVCacheDataType)1, 576, 8>", None, "attention"),
                           ("_build_flashinfer_mixed_sparse_indices_kernel", None, "attention"),
                           ("void deep_gemm::sm100_paged_mqa_logits<1u, 32u, 128u, 64u, true, true, true, 3u, 10u, "
                            "256u, 16u, 128u, 256u, cutlass::fl", None, "attention")],
    "fla-chunk-helpers": [("chunk_local_cumsum_scalar_kernel", None, "attention")],
    "nccl": [("ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<(unsigned long)4096>)", None, "communication"),
             ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", None, "communication")],
    "custom-allreduce": [
        ("void flashinfer::trtllm_allreduce_fusion::allreduce_fusion_kernel_twoshot_sync<(flashinfer::trtllm_…", None,
         "communication"),
        ("void flashinfer::trtllm_mnnvl_allreduce::twoshotAllreduceKernel<(unsigned char)4, __nv_bfloat16, true, "
         "float4>(flashinfe", None, "communication"),
        ("void (anonymous namespace)::multimem_all_reduce_kernel<c10::BFloat16, 16>(c10::BFloat16*, unsigned long)",
         None, "communication"),
        ("void vllm::cross_device_reduce_1stage<__nv_bfloat16, 8>(vllm::RankData*, vllm::RankSignals, vllm::Signal*, "
         "__nv_bfloat16*, int, int)", None, "communication"),
        ("void deep_ep::internode_ll::dispatch<3, 10, 7168>(void*, float*, int*, long*, void*, int*, void*,...", None,
         "communication")],
    "memcpy-memset": [("[CUDA memcpy Host-to-Device]", None, "memcpy/memset"),
                      ("Memcpy DtoD (Device -> Device)", None, "memcpy/memset")],
    "quantization": [
        ("void vllm::scaled_fp8_quant_kernel<c10::BFloat16>(c10::Float8_e4m3fn*, c10...", None, "quantization"),
        ("cvt_fp16_to_fp4", None, "quantization"),
        ("kernel_cutlass_kernel_flashinferquantizationkernelsmxfp8_quantizeMXFP8QuantizeSwizzledKernel_object_at__"
         "tensorptrbf16gme", None, "quantization")],
    "splitk-reduce": [("void cublasLt::splitKreduce_kernel<32, 16, int, float, __nv_bfloat16, float, __nv_bfloat16, "
                       "true, false, false>(cublasLt::cublasSplitKParams<float>, float const*)", None, "gemm")],
    "gemm": [
        ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize64x64x64_warpgroupsize1x1x1_execute_segment_k_off_…", None,
         "gemm"),
        ("nvjet_tst_320x64_64x4_2x1_2cta_v_bz_TNT", None, "gemm"),
        ("void flashinfer::trtllm_dsv3_router_gemm::router_gemm_kernel<__nv_bfloat16, float, 128, 8, 16, 256, 7168>"
         "(float*, __nv_bfloat16 const*, __nv_bfloat16 const*)", None, "gemm"),
        ("kernel_cutlass_kernel_flashinfergemmkernelsdense_blockscaled_gemm_sm100Sm100BlockScaledPersistentDenseGemm"
         "Kernel_object_", None, "gemm"),
        ("void deep_gemm::sm100_mega_mhc_impl<5120u, 40u, 148u, true, true, false, 0u>(CUtensorMap_st, CUtensorMap_st, "
         "CUtensorMap", None, "gemm"),
        ("void ck::kernel_gemm_xdl_cshuffle_v3_multi_d<int>()", None, "gemm"),
        ("Cijk_Alik_Bljk_BBS_BH_Bias_HA_S_SAV_UserArgs_MT64x64x256_MI16x16x1", None, "gemm"),
        ("void mul_mat_vec_f<__nv_bfloat16, float, (int)1, (int)256, (bool)1, (bool)0>(const T1 *, const floa…", None,
         "gemm")],
    "dsv4-mhc": [("mhc_post_tilelang_kernel", None, "other"),
                 ("mhc_pre_big_fuse_with_norm_tilelang_kernel", None, "other")],
    "sampling": [("rejection_greedy_sample_kernel", None, "sampling"),
                 ("void vllm::apply_repetition_penalties_kernel<float>(T1 *, const bool *, const bool *, const T1 *, i…",
                  None, "sampling")],
    # cub's TransformInputIterator holds "mInP": it must not be taken for a MinP sampling kernel.
    "reduction": [
        ("void at_cuda_detail::cub::DeviceReduceSingleTileKernel<at_cuda_detail::cub::DeviceReducePolicy<bool, int, "
         "int, at_cuda_detail::cub::Sum>::Policy600, at_cuda_detail::cub::TransformInputIterator<bool, "
         "at::native::NonZeroOp<bool>, bool*, long>, int*, int, at_cuda_detail::cub::Sum, int>", None, "reduction"),
        ("void at::native::(anonymous namespace)::RowwiseMomentsCUDAKernel<float, float>(long, float, float const*, "
         "float*, float*)", None, "reduction"),
        ("void at::native::reduce_kernel<(int)512, (int)1, at::native::ReduceOp<float, at::native::ArgMaxOps<…", None,
         "reduction")],
    "elementwise": [
        ("void cudnn::ops::nchwToNhwcKernel<float, float, float, false, true, (cudnnKernelDataType_t)2>("
         "cudnn::ops::nchw2nhwc_params_t<float>, float const*, float*)", None, "elementwise"),
        ("void at::native::vectorized_elementwise_kernel<(int)4, at::native::FillFunctor<int>, std::array<cha…", None,
         "elementwise"),
        ("void (anonymous namespace)::fast_hadamard_transform_kernel<(anonymous namespace)::FastHadamardKernelTraits"
         "<16, 7, __nv_bfloat16> >(HadamardParamsBase)", None, "elementwise")],
    "serving-bookkeeping": [("_compute_slot_mapping_kernel", None, "other"), ("compute_position_kernel", None, "other")],
}


def test_every_rule_has_real_examples():
    names = [r.name for r in load_rules()]
    assert len(names) == len(set(names)), "rule names must be unique"
    assert set(names) == set(RULE_EXAMPLES), (set(names) ^ set(RULE_EXAMPLES))


@pytest.mark.parametrize("rule", sorted(RULE_EXAMPLES))
def test_rule_files_its_examples(rule):
    clf = Classifier()
    for name, cpu_op, target in RULE_EXAMPLES[rule]:
        m = clf.match(name, cpu_op)
        assert m.rule is not None and m.rule.name == rule, (name, m.rule and m.rule.name)
        assert m.target == target, (name, m.target)


# What makes a kernel an attention, MoE or GEMM kernel, whatever library wrote it.
_ATTN = re.compile(r"(?i)attn|attention|fmha|flash_fwd|mla|BatchPrefill|BatchDecode|MergeStates|kernel_mha|mqa_logits|"
                   r"prepare_varlen|paged_attention|aiter\d+pa_|unified_attention|reduce_segments|^_fwd_kernel$")
_MOE = re.compile(r"(?i)moe|expert|routing|^bmm_|fmoe|topkGating|_topk_forward|bitmatrix|writeback_idx|_matmul_ogs_|"
                  r"GemmType\)[12]")
_GEMM = re.compile(r"(?i)gemm|nvjet|xmma|matmul|cublas|Cijk_|mul_mat|_mm_|triton_tem_fused_mm|splitKreduce")


def _family_cases():
    for rule, examples in RULE_EXAMPLES.items():
        for name, cpu_op, _ in examples:
            # Inductor names list the ops of the graph around the kernel ("_scaled_mm" in a quant kernel).
            if cpu_op is None and not re.match(r"triton_(poi|red|per)_", name) and "hadamard" not in name:
                yield name


def test_no_attention_moe_or_gemm_kernel_outside_its_family():
    clf = Classifier()
    checked = 0
    for name in _family_cases():
        target = clf.match(name).target
        if _MOE.search(name) and "deep_ep" not in name:
            # The MoE router's GEMM is a GEMM.
            assert target in MOE_FAMILY or (target == "gemm" and "router_gemm" in name), (name, target)
            checked += 1
        elif _ATTN.search(name):
            assert target in ATTENTION_FAMILY, (name, target)
            checked += 1
        elif _GEMM.search(name) and "all_reduce" not in name:
            assert target in GEMM_FAMILY, (name, target)
            checked += 1
    assert checked > 40


def test_cut_names_with_the_unicode_ellipsis():
    clf = Classifier()
    # nsys cuts long names with U+2026; the visible text ends inside a rule's literal.
    assert clf.match("void flashinfer::norm::RMSNormKern…").target == "rms_norm"
    assert clf.match("void flashinfer::norm::FusedAddRMSNo…").target == "fused_add_rms_norm"
    assert clf.match("void vllm::rms_norm_…").target == "unclassified"   # rms_norm or its quant variants


def test_explain_names_the_rule_and_why(capsys):
    assert main(["profile", "import", "--explain", "deep_gemm::sm100_fp8_gemm_1d1d_impl<128u>",
                 "--explain", "void flashinfer::norm::RMSNormKern…", "--explain", "my_mystery_kernel"]) == 0
    out = capsys.readouterr().out
    assert "-> block_scaled_mm (catalog operator), rule 'block-scaled-mm' at solbench/profiles/rules.yaml:" in out
    assert "matched 'deep_gemm::sm100_fp8_gemm'" in out
    assert "visible text ends inside 'RMSNormKernel'" in out
    assert "my_mystery_kernel\n  -> unclassified: no rule matches" in out
    assert main(["profile", "import"]) == 2
    assert "give profiles to import, or --explain NAME" in capsys.readouterr().err
