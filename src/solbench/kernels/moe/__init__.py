"""Mixture-of-experts kernels: routing (top-k gating softmax, the expert sort, the top-k sum) and
the sorted-token grouped-GEMM expert FFN in bf16 and block-scaled fp8."""
from solbench.kernels.moe.routing import (aligned_capacity, moe_align_block_size, moe_count_and_sort,  # noqa: F401
                                          moe_sum_reduce, topk_gating_softmax)
from solbench.kernels.moe.fused import (FusedMoeOptions, GemmConfig, default_options, fp8_block_fused_moe,  # noqa: F401
                                        fused_moe)
