"""solbench's kernel library: our Triton kernels, importable without the benchmark.

One module (or small folder) per kernel family holds the kernel, its launcher, the public
function and its options. Nothing here imports the catalog, the registry or the measurement
code (``solbench.core``'s specs, runner, timing): ``from solbench.kernels.attention import
paged_attention`` works inside a model. Shared mechanics (input checks, ``out=``, custom ops
with an eager fast path) live in :mod:`solbench.kernels.common`.
"""
