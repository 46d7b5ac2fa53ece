"""GEMM kernels of the library.

* :func:`block_scaled_mm` (``block_fp8.py``): W8A8 fp8 (e4m3) GEMM with 128x128 weight blocks and
  1x128 activation groups (DeepSeek-V3 / vLLM ``w8a8_triton_block_scaled_mm`` layout).
"""
from solbench.kernels.gemm.block_fp8 import BlockFp8Options, block_scaled_mm, default_options

__all__ = ["BlockFp8Options", "block_scaled_mm", "default_options"]
