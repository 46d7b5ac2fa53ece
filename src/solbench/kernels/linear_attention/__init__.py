"""Gated DeltaNet (Qwen3-Next linear attention) kernels: the fused recurrent decode step with its
gates (:func:`gated_delta_rule_update`), and the two chunked-prefill stages, the chunk-state
recurrence (:func:`chunk_gated_delta_rule_state`) and the chunk outputs
(:func:`chunk_delta_rule_output`). Layouts follow flash-linear-attention: ``[B, T, heads, dim]``
activations, ``[K, V]`` fp32 states, value head ``i`` reading key head ``i // (HV // H)``."""
from solbench.kernels.linear_attention.chunk import (ChunkOptions, chunk_delta_rule_output,
                                                    chunk_gated_delta_rule_state, output_chunk_len)
from solbench.kernels.linear_attention.recurrent import RecurrentOptions, gated_delta_rule_update

__all__ = ["ChunkOptions", "RecurrentOptions", "chunk_delta_rule_output", "chunk_gated_delta_rule_state",
           "gated_delta_rule_update", "output_chunk_len"]
