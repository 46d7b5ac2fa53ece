"""``@triton.jit`` helpers shared by the row-wise kernels (tiling: :mod:`solbench.kernels.rowwise`).

Apart because ``triton.jit`` fixes, when it decorates, whether a function is compiled or run
by the interpreter (``TRITON_INTERPRET``): ``import solbench`` registers the custom ops before
the command line has chosen, so it must decorate nothing."""
import triton
import triton.language as tl


@triton.jit
def tile_offsets(pid, rows, n, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Row indices (int64, ``[BLOCK_M, 1]``), column indices (``[1, BLOCK_N]``) and the
    in-bounds mask of program ``pid``'s tile. Rows are int64 so that ``row * stride`` does not
    overflow past 2^31 elements."""
    r = pid.to(tl.int64) * BLOCK_M + tl.arange(0, BLOCK_M).to(tl.int64)[:, None]
    c = tl.arange(0, BLOCK_N)[None, :]
    return r, c, (r < rows) & (c < n)


@triton.jit
def row_ptrs(base, r, c, row_stride):
    """Pointers ``base + r * row_stride + c`` for a tile from :func:`tile_offsets`."""
    return base + r * row_stride + c
