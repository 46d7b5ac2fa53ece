"""core/rowwise.py: the tiling table's first-principles choices and its override hook; the
row-norm kernel's int64 row indexing."""
import inspect

import pytest

from solbench.core import rowwise
from solbench.core.rowwise import RowConfig, row_config, row_grid


def test_short_rows_pack_several_rows_per_program():
    # hidden 128 bf16, prefill: 4096-element tiles = 32 rows, 8 warps x 32 threads x 16 elements.
    assert row_config(128, 100_000) == RowConfig(block_m=32, block_n=128, num_warps=8)
    # decode: 3 rows -> one program of 4 rows, one warp (16 elements per thread), not 32 rows.
    cfg = row_config(128, 3)
    assert (cfg.block_m, cfg.num_warps, row_grid(3, cfg)) == (4, 1, (1,))
    # hidden 1152 pads to 2048: two rows per program.
    assert row_config(1152, 300).block_m == 2


def test_wide_rows_take_one_row_and_more_warps():
    cfg = row_config(7168, 53)
    assert (cfg.block_m, cfg.block_n, cfg.num_warps, cfg.chunked) == (1, 8192, 16, False)
    # fp32 moves 8 elements per thread for the same 32 bytes: twice the warps of bf16.
    assert row_config(1024, 4096, elem_bytes=4).num_warps == 2 * row_config(1024, 4096).num_warps


def test_long_rows_are_chunked_and_limits_are_clear():
    cfg = row_config(rowwise.MAX_WHOLE_ROW + 1, 10)
    assert cfg.chunked and cfg.block_m == 1 and cfg.block_n == rowwise.CHUNK_N
    with pytest.raises(ValueError, match="hidden size 0 is not supported"):
        row_config(0, 10)
    with pytest.raises(ValueError, match="multiple of 128"):
        rowwise.check_hidden(100, "quant", multiple_of=128)


def test_overrides_win_and_are_capped_by_rows():
    table = {("rms_norm", 2048): RowConfig(block_m=8, block_n=2048, num_warps=4)}
    assert row_config(2048, 1000, kernel="rms_norm", overrides=table).block_m == 8
    assert row_config(2048, 2, kernel="rms_norm", overrides=table).block_m == 2
    assert row_config(2048, 1000, kernel="other", overrides=table).block_m == 2


def test_row_indices_are_int64():
    from solbench.core import rownorm

    src = inspect.getsource(rownorm._rownorm_kernel.fn)
    assert "tl.program_id(0).to(tl.int64)" in src
