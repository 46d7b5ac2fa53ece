"""Flash attention over packed (varlen) queries and a dense or paged KV cache, in Triton.

One kernel serves three call sites:

* :func:`unified_attention`: vLLM's ``unified_attention`` contract: queries packed by
  ``cu_seqlens_q``, keys and values in a paged ``nhd`` cache ``[num_blocks, block_size, H_kv, D]``
  read through ``block_table``, ``seqused_k`` keys per sequence, causal aligned bottom-right (the
  queries are the last ``L_q`` of the sequence's ``L_k`` tokens: chunked prefill and decode);
* :func:`varlen_attention`: ``flash_attn_varlen_func``: dense packed K/V by ``cu_seqlens_k``;
* :func:`paged_attention_decode`: one query per sequence over vLLM's original ``x_split`` cache
  (key ``[num_blocks, H_kv, D / x, block_size, x]``, value ``[num_blocks, H_kv, D, block_size]``).

    out[t, h] = sum_j softmax_j(scale * q[t, h] . k[j, h // G]) v[j, h // G],   G = H / H_kv

over the keys j of t's sequence (and, when causal, j <= i + L_k - L_q for t the sequence's
query i). A query that sees no key gets 0.

Design. A program owns one KV head of one sequence and ``BLOCK_M`` rows of the flattened
(query token, query head of that KV head's group) space, so the G query heads that share a KV
head share every K/V tile it loads, and a decode step (one token, G heads) still fills a
tensor-core tile. Key tiles wholly visible to every row run without masks; only the tiles on the
causal diagonal or past ``L_k`` are masked, and tiles past the diagonal are never visited.
Programs are issued last-block-first so the longest causal rows start first. When the batch's
sequences fill their row tiles, sequence s owns the program slots [s * T, (s + 1) * T) for T row
tiles of ``max_seqlen_q`` (:func:`direct_grid`); otherwise programs are packed sequence after
sequence with a bound that needs no device-side prefix sum (``(cu_q[s] * G) // BLOCK_M + s``),
found by a binary search over ``cu_seqlens_q``. Long paged prefills first copy their pages into
dense K/V (:func:`stage_keys`), so their key tiles are contiguous rows. Nothing syncs with the
host: grids and buffers come from host ints (token count, batch size, ``max_seqlen_q``,
``max_seqlen_k`` or the block table's width), so CUDA graphs capture them.

Decode (one query per sequence) splits the keys over programs when sequences x KV heads cannot
fill the GPU (flash-decoding, :func:`decode_splits`): each split writes fp32 partials to a
workspace and a combine pass merges them (``_decode_split_triton``).
"""
from __future__ import annotations

import dataclasses

import torch

from solbench.kernels.common import (check_dtype, check_out, cuda_backend, env_fields, functional_op, kernel_op,
                                     next_pow2)

DTYPES = (torch.bfloat16, torch.float16)
LOG2E = 1.4426950408889634


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Launch options of the attention kernel. ``block_m`` rows of (token, head) pairs per
    program, ``block_n`` keys per tile."""

    block_m: int
    block_n: int
    num_warps: int
    num_stages: int


#: Query rows (tokens x G) per sequence up to which a prefill takes 64 x 64 tiles with 4 warps,
#: and up to which 128 x 64 with 8 warps and 2 stages: a short causal sequence is mostly
#: diagonal tiles, and a one-program-per-SM 128 x 128 launch has nothing to hide one program's
#: prologue and epilogue behind (docs/DECISIONS.md has the measurements).
SHORT_SEQ_ROWS = 2048
MEDIUM_SEQ_ROWS = 4096


def default_config(head_dim_padded: int, rows_per_seq: int, is_cuda: bool) -> AttentionConfig:
    """First-principles tiles, by query rows per sequence (``rows_per_seq``, G rows for decode):

    * decode (< 128 rows): ``block_m`` = the rows rounded up to 16, 32-key tiles, 2 warps, 2
      stages: a decode program is latency-bound, so small programs, several per SM;
    * prefill at D <= 128: 64 x 64 with 4 warps up to ``SHORT_SEQ_ROWS``, 128 x 64 with 8 warps
      and 2 stages up to ``MEDIUM_SEQ_ROWS``, else 128 x 128 with 8 warps (two warpgroups of 64
      rows) and 3 stages;
    * D > 128: 128 x 64, 2 stages, so the K and V stages fit shared memory.
    """
    bm = 128 if rows_per_seq >= 128 else max(16, next_pow2(rows_per_seq))
    if not is_cuda:
        return AttentionConfig(bm, 64 if head_dim_padded <= 128 else 32, 4, 1)
    if bm < 128:
        return AttentionConfig(bm, 32, 2, 2)
    if head_dim_padded > 128:
        return AttentionConfig(128, 64, 8, 2)
    if rows_per_seq <= SHORT_SEQ_ROWS:
        return AttentionConfig(64, 64, 4, 2)
    if rows_per_seq <= MEDIUM_SEQ_ROWS:
        return AttentionConfig(128, 64, 8, 2)
    return AttentionConfig(128, 128, 8, 3)


#: Mean query rows (tokens x G) per sequence from which a paged launch stages its keys dense
#: first: each staged key tile is then read by at least 16 row tiles of 128 (half of 32, causal).
STAGE_MIN_ROWS = 4096
#: The staging buffer's limit (keys and values of num_seqs x the host-side key bound).
STAGE_MAX_BYTES = 256 << 20


def stage_keys(query_rows: int, num_seqs: int, staged_bytes: int) -> bool:
    """Whether a paged prefill copies its sequences' pages into dense K/V before attending.

    A paged key tile costs more than a dense one: its rows come from block-table lookups, one
    page (16 tokens) at a time, without the contiguous rows the compiler pipelines best.
    Staging costs one read and one write of the keys and values, so it pays when many row tiles
    read each key tile: mean query rows per sequence >= ``STAGE_MIN_ROWS``, and the buffer fits
    ``STAGE_MAX_BYTES``."""
    return query_rows >= STAGE_MIN_ROWS * num_seqs and staged_bytes <= STAGE_MAX_BYTES


def direct_grid(num_seqs: int, tiles_per_seq: int, packed_blocks: int) -> bool:
    """Whether a prefill launch gives every sequence ``tiles_per_seq`` program slots (the host's
    max_seqlen_q rows in row tiles) instead of the packed grid, whose programs find their
    sequence by a binary search over cu_seqlens_q (log2(batch) dependent loads each, which
    short sequences cannot hide). Direct when it launches at most twice the packed grid's
    programs (its extra slots return at once)."""
    return num_seqs * tiles_per_seq <= 2 * packed_blocks


def head_dim_chunks(d: int) -> tuple[int, int]:
    """head_size as one or two power-of-two column chunks, the second padded in registers:
    72 -> (64, 16), 80 -> (64, 16), 96 -> (64, 32), 192 -> (128, 64), 128 -> (128, 0)."""
    a = max(16, 1 << (int(d).bit_length() - 1))
    rest = int(d) - a
    return a, (0 if rest <= 0 else max(16, next_pow2(rest)))


def tiles_override() -> AttentionConfig | None:
    """``SOLBENCH_ATTENTION_TILES=block_m,block_n,num_warps,num_stages``: one config for every
    launch, for A/B runs from the command line (read at each call)."""
    names = tuple(f.name for f in dataclasses.fields(AttentionConfig))
    values = env_fields("SOLBENCH_ATTENTION_TILES", names, complete=True)
    return AttentionConfig(**values) if values else None


#: Prefill tiles ``solbench tune`` tries (block_m, block_n, warps, stages), by padded head size:
#: up to 128 columns, and past it (K and V stages of 128-wide heads and more must fit shared memory).
TUNE_TILES = {128: ((64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 8, 2), (128, 64, 8, 3), (128, 128, 8, 2),
                    (128, 128, 8, 3), (64, 128, 4, 2), (128, 32, 4, 3)),
              256: ((128, 64, 8, 2), (64, 64, 4, 2), (128, 32, 8, 2), (64, 32, 4, 2))}


def tuned_key(head_dim_padded: int, group: int, causal: bool) -> str:
    """The tuned table's kernel key of a prefill launch: padded head size, GQA group (query heads
    a KV head), causal or not; its ``n`` is the query rows per sequence (tokens x group) rounded
    up to a power of two. Each key is its own ``solbench tune`` family (its candidates depend on
    the head size)."""
    return f"attention:d{head_dim_padded}:g{group}:{'causal' if causal else 'full'}"


def tune_candidates(head_dim_padded: int, rows_bucket: int) -> list[AttentionConfig]:
    """The prefill tiles ``solbench tune`` times against :func:`default_config`'s for a rows bucket."""
    base = default_config(head_dim_padded, rows_bucket, True)
    tiles = TUNE_TILES[128 if head_dim_padded <= 128 else 256]
    return [c for c in (AttentionConfig(*t) for t in tiles) if c != base]


def launch_config(head_dim_padded: int, rows_per_seq: int, is_cuda: bool, group: int = 1,
                  causal: bool = True) -> AttentionConfig:
    """The config a prefill launch uses: ``SOLBENCH_ATTENTION_TILES`` when set, else the tuned
    table's entry for (head size, group, causal, rows bucket) where ``solbench tune`` wrote one
    for this GPU, else :func:`default_config`."""
    forced = tiles_override()
    if forced or not is_cuda or rows_per_seq < 128:
        return forced or default_config(head_dim_padded, rows_per_seq, is_cuda)
    from solbench.runtime import tuning

    cfg = tuning.lookup_config(
        tuned_key(head_dim_padded, group, causal), next_pow2(rows_per_seq), AttentionConfig,
        lambda bucket, *_: [dataclasses.asdict(c) for c in tune_candidates(head_dim_padded, bucket)])
    return cfg if cfg is not None else default_config(head_dim_padded, rows_per_seq, is_cuda)


def decode_splits(programs: int, sm_count: int | None, key_tiles: int) -> int:
    """How many programs share one (sequence, KV head) of a decode launch (flash-decoding).

    A decode program is latency-bound: it walks its key tiles one after another. When the
    one-pass launch has ``programs`` < ``sm_count`` programs, SMs sit idle while a few programs
    walk long contexts, so the keys are split into ``ceil(sm_count / programs)`` contiguous
    ranges (about one wave of programs, rounded up: decode tiles are small and several programs
    fit one SM), at most one range per key tile of a sequence (``key_tiles``, from host ints
    only: the block table's width for paged decode, the mean context for MLA), and a combine
    pass merges the partial softmaxes. One pass (1) when the launch already fills the SMs, when
    there is at most one tile, or without a device (CPU). Catalog examples on 132 SMs: paged
    #1 (1 seq x 2 KV heads, 4 tiles of 32 keys at D = 256) -> 4; #3 (4 x 4, 2 tiles) -> 2; #0
    (256 x 16) -> 1; MLA #1 (1 seq, 1 head block, 8 tiles of 32) -> 8."""
    if not sm_count or programs <= 0 or programs >= sm_count or key_tiles <= 1:
        return 1
    return max(1, min(-(-sm_count // programs), key_tiles))


#: Host-side key bound up to which an under-filled decode launch reads a sequence's keys as one
#: tile in one pass, instead of splitting them over programs and combining.
SHORT_CONTEXT_KEYS = 128


def short_context_config(cfg: AttentionConfig, head_dim_padded: int, keys: int, programs: int,
                         sm_count: int | None) -> AttentionConfig | None:
    """The one-pass tile of a decode launch whose sequences hold at most ``SHORT_CONTEXT_KEYS``
    keys (``keys``: the host-side bound) and whose ``programs`` (sequences x KV heads) leave SMs
    idle: every key in one tile of up to 128, 4 warps, 2 stages (the K and V loads issue
    together in the pipeline's prologue), and no combine launch. None where the split launches
    stay: a full launch, longer contexts, or head_size > 128 (its 128-key tile spills at
    D = 256). docs/DECISIONS.md has the measurements."""
    if not sm_count or programs >= sm_count or keys > SHORT_CONTEXT_KEYS or head_dim_padded > 128:
        return None
    return AttentionConfig(cfg.block_m, max(32, next_pow2(keys)), 4, 2)


def decode_plan(head_dim_padded: int, rows_per_seq: int, keys: int, programs: int, sm_count: int | None,
                is_cuda: bool) -> tuple[AttentionConfig, int]:
    """(tile, key splits) of a decode launch of ``programs`` (sequences x KV heads) over at most
    ``keys`` keys a sequence (host-side bound). In order of precedence: ``SOLBENCH_ATTENTION_TILES``
    (then the short-context tile is never substituted), :func:`short_context_config` on a GPU,
    :func:`default_config`; the splits are ``SOLBENCH_DECODE_SPLITS``, else one pass for the
    short-context tile, else :func:`decode_splits`."""
    override = tiles_override()
    cfg = override or default_config(head_dim_padded, rows_per_seq, is_cuda)
    short = None if override or not is_cuda else short_context_config(cfg, head_dim_padded, keys, programs,
                                                                      sm_count)
    cfg = short or cfg
    splits = splits_override() or (1 if short else decode_splits(programs, sm_count, -(-keys // cfg.block_n)))
    return cfg, splits


def splits_override() -> int | None:
    """``SOLBENCH_DECODE_SPLITS=N``: every decode launch (paged and MLA) splits its keys into N
    ranges whatever :func:`decode_splits` says; for tests and GPU A/B runs (read at each call)."""
    import os

    value = os.environ.get("SOLBENCH_DECODE_SPLITS")
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"SOLBENCH_DECODE_SPLITS={value!r}: expected a positive integer")
    return int(value)


# ---- the custom ops ------------------------------------------------------------------------------

def _launch(*args) -> None:
    from solbench.kernels._attention_triton import launch

    launch(*args)


def _launch_cuda(q, k, v, out, cu_q, cu_k, seqused_k, block_table, max_seqlen_q: int, scale: float, causal: bool,
                 max_seqlen_k: int = 0) -> None:
    """The CUDA backend (sm_90a): paged keys staged dense first, as the Triton kernel's long
    prefills, or read in place where the kernel's ``paged`` variant is on and can read them."""
    from solbench.kernels.cuda import attention as cuda_attention

    if not q.is_cuda:  # the CPU under TRITON_INTERPRET=1 reaches here: no CUDA to compile for
        return _eager_attention(q, k, v, out, cu_q, cu_k, seqused_k, block_table, scale, causal)
    if q.shape[0] == 0 or cu_q.shape[0] < 2:
        return
    stage_rows = 0
    if block_table is not None:
        from solbench.kernels._attention_triton import stage_bound, stage_dense

        if cuda_attention.options().paged and cuda_attention.paged_reason(k, v, block_table) is None:  # in place
            cuda_attention.launch(q, k, v, out, cu_q, None, seqused_k, stage_bound(block_table, k.shape[1], max_seqlen_k),
                                  max_seqlen_q, scale, causal, block_table)
            return
        k, v, stage_rows = stage_dense(k, v, seqused_k, block_table, max_seqlen_k)
    cuda_attention.launch(q, k, v, out, cu_q, cu_k, seqused_k if stage_rows else None, stage_rows, max_seqlen_q,
                          scale, causal)


#: ``backend="auto"`` takes the CUDA kernel for one sequence of at least this many queries (a
#: long prefill): it measured faster there and no faster on batches of many short sequences
#: (docs/DECISIONS.md).
CUDA_MIN_QUERIES = 1024
#: ... and of these head sizes: the 80-column build (head sizes 72 and 80) has not been timed yet.
CUDA_AUTO_HEAD_SIZES = (128,)


def _cuda_chosen(backend: str, what: str, q, hkv: int, out, kv=(), cu_q=None, max_seqlen_q: int = 0) -> bool:
    """True for the CUDA backend (after checking it can run these tensors), False for Triton."""
    def unsupported():
        from solbench.kernels.cuda import attention as cuda_attention

        return cuda_attention.unsupported_reason(q, hkv, out, kv)

    def prefer():
        return (cu_q is not None and cu_q.shape[0] == 2 and int(max_seqlen_q) >= CUDA_MIN_QUERIES
                and q.shape[-1] in CUDA_AUTO_HEAD_SIZES)

    return cuda_backend(what, backend, unsupported, prefer)


def _eager_attention(q, k, v, out, cu_q, cu_k, seqused_k, block_table, scale: float, causal: bool) -> None:
    """The torch formulation (off CUDA): per sequence, fp32 scores, bottom-right causal mask,
    softmax, one rounding; a query that sees no key gets 0. Host loops: it syncs, as CPU code may."""
    total, h, d = q.shape
    lq = [1] * total if cu_q is None else (cu_q[1:] - cu_q[:-1]).tolist()
    q0 = list(range(total)) if cu_q is None else cu_q[:-1].tolist()
    lk = seqused_k.tolist() if seqused_k is not None else (cu_k[1:] - cu_k[:-1]).tolist()
    out.zero_()
    for s, (a, n, m) in enumerate(zip(q0, lq, lk)):
        if n == 0 or m == 0:
            continue
        if block_table is None:
            ks, vs = k[cu_k[s]:cu_k[s] + m], v[cu_k[s]:cu_k[s] + m]
        elif k.dim() == 5:  # x-split key, value [nb, H_kv, D, bs]
            pages = block_table[s, :-(-m // k.shape[3])].long()
            ks = k[pages].permute(0, 3, 1, 2, 4).flatten(3).flatten(0, 1)[:m]
            vs = v[pages].permute(0, 3, 1, 2).flatten(0, 1)[:m]
        else:               # nhd [nb, bs, H_kv, D]
            pages = block_table[s, :-(-m // k.shape[1])].long()
            ks, vs = k[pages].flatten(0, 1)[:m], v[pages].flatten(0, 1)[:m]
        g = h // ks.shape[1]
        ks, vs = ks.float().repeat_interleave(g, 1), vs.float().repeat_interleave(g, 1)
        sc = torch.einsum("qhd,khd->hqk", q[a:a + n].float(), ks) * scale
        if causal:
            i = torch.arange(n, device=q.device)[:, None]
            sc = sc.masked_fill(torch.arange(m, device=q.device)[None, :] > i + (m - n), float("-inf"))
        p = torch.softmax(sc, -1).nan_to_num(0.0)
        out[a:a + n] = torch.einsum("hqk,khd->qhd", p, vs).to(out.dtype)


def _unified_eager(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, out, max_seqlen_q, scale, causal,
                   max_seqlen_k=0, cuda=False):
    _eager_attention(q, k_cache, v_cache, out, cu_seqlens_q, None, seqused_k, block_table, scale, causal)


@kernel_op("solbench::unified_attention.out", mutates_args=("out",), eager=_unified_eager)
def _unified_op(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cu_seqlens_q: torch.Tensor,
                seqused_k: torch.Tensor, block_table: torch.Tensor, out: torch.Tensor, max_seqlen_q: int,
                scale: float, causal: bool, max_seqlen_k: int = 0, cuda: bool = False) -> None:
    (_launch_cuda if cuda else _launch)(q, k_cache, v_cache, out, cu_seqlens_q, None, seqused_k, block_table,
                                        max_seqlen_q, scale, causal, max_seqlen_k)


def _varlen_eager(q, k, v, cu_seqlens_q, cu_seqlens_k, out, max_seqlen_q, scale, causal, cuda=False):
    _eager_attention(q, k, v, out, cu_seqlens_q, cu_seqlens_k, None, None, scale, causal)


@kernel_op("solbench::varlen_attention.out", mutates_args=("out",), eager=_varlen_eager)
def _varlen_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
               cu_seqlens_k: torch.Tensor, out: torch.Tensor, max_seqlen_q: int, scale: float, causal: bool,
               cuda: bool = False) -> None:
    (_launch_cuda if cuda else _launch)(q, k, v, out, cu_seqlens_q, cu_seqlens_k, None, None, max_seqlen_q, scale,
                                        causal)


def _decode_eager(query, k_cache, v_cache, block_tables, seq_lens, out, scale):
    _eager_attention(query, k_cache, v_cache, out, None, None, seq_lens, block_tables, scale, False)


@kernel_op("solbench::paged_attention_decode.out", mutates_args=("out",), eager=_decode_eager)
def _decode_op(query: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
               seq_lens: torch.Tensor, out: torch.Tensor, scale: float) -> None:
    _launch(query, k_cache, v_cache, out, None, None, seq_lens, block_tables, 1, scale, False)


for _op in (_unified_op, _varlen_op, _decode_op):
    _op.register_fake(lambda *args: None)

functional_op("solbench::unified_attention", _unified_op, lambda q, *rest: (torch.empty_like(q),))
functional_op("solbench::varlen_attention", _varlen_op, lambda q, *rest: (torch.empty_like(q),))
functional_op("solbench::paged_attention_decode", _decode_op, lambda q, *rest: (torch.empty_like(q),))


# ---- public functions ---------------------------------------------------------------------------

def _check_q(q, what: str, arg: str = "q"):
    check_dtype(q, DTYPES, what, arg)
    if q.dim() != 3:
        raise ValueError(f"{what}: {arg} must be [tokens, heads, head_size], got shape {tuple(q.shape)}")
    if q.shape[-1] > 1 and q.stride(-1) != 1:
        raise ValueError(f"{what}: {arg} must be contiguous in head_size (stride {q.stride(-1)})")


def _check_same(t, q, what: str, arg: str):
    if t.dtype != q.dtype:
        raise TypeError(f"{what}: {arg} has dtype {t.dtype}, q has {q.dtype}; they must match")
    if t.device != q.device:
        raise ValueError(f"{what}: {arg} is on {t.device}, q on {q.device}")


def _check_index(t, n: int | None, what: str, arg: str, dims: int = 1):
    if t.dtype != torch.int32:
        raise TypeError(f"{what}: {arg} must be int32, got {t.dtype}")
    if t.dim() != dims or (n is not None and t.shape[0] != n):
        want = f"[{n}]" if dims == 1 else f"{dims}-D with {n} rows"
        raise ValueError(f"{what}: {arg} must be {want}, got shape {tuple(t.shape)}")
    if t.stride(-1) != 1:
        raise ValueError(f"{what}: {arg} must be contiguous in its last dimension")


def _check_heads(h: int, hkv: int, d_q: int, d: int, what: str):
    if hkv < 1 or h % hkv:
        raise ValueError(f"{what}: {h} query heads is not a multiple of {hkv} kv heads")
    if d_q != d:
        raise ValueError(f"{what}: q has head_size {d_q}, the cache {d}; they must match")
    if d > 256:
        raise ValueError(f"{what}: head_size {d} is not supported (at most 256)")


def _output(out, q, what: str):
    if out is None:
        return torch.empty_like(q)
    check_out(out, q.shape, q.dtype, q.device, what)
    if out.stride(-1) != 1:
        raise ValueError(f"{what}: out must be contiguous in head_size")
    return out


def unified_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                      cu_seqlens_q: torch.Tensor, seqused_k: torch.Tensor, block_table: torch.Tensor,
                      max_seqlen_q: int, softmax_scale: float | None = None, causal: bool = True,
                      out: torch.Tensor | None = None, max_seqlen_k: int | None = None,
                      backend: str = "triton") -> torch.Tensor:
    """Paged varlen attention (vLLM ``unified_attention``), prefill, chunked prefill and decode.

    ``q`` [total_q, H, D] bf16/fp16 packed by ``cu_seqlens_q`` (int32 [B + 1]); ``k_cache`` /
    ``v_cache`` [num_blocks, block_size, H_kv, D] (vLLM's ``nhd`` layout, rows may be strided);
    ``block_table`` [B, max_blocks] int32; ``seqused_k`` [B] int32 keys per sequence (context
    included, >= the sequence's queries when causal); ``max_seqlen_q`` the host-side bound on
    queries per sequence (it sizes the tiles; nothing syncs); ``max_seqlen_k``, if given, the
    host-side bound on keys per sequence (a sequence past it attends to its first max_seqlen_k
    keys; without it the block table's width bounds them; it sizes the
    buffer when long prefills stage their keys dense, :func:`stage_keys`). ``softmax_scale``
    defaults to 1/sqrt(D). Causal masks align bottom-right. ``backend="cuda"``: the sm_90a
    warpgroup-MMA kernel (:mod:`solbench.kernels.cuda.attention`; bf16, head_size 128, 80 or 72,
    keys staged dense first); ``"auto"``: that kernel for one sequence of :data:`CUDA_MIN_QUERIES`
    queries or more and a head size in :data:`CUDA_AUTO_HEAD_SIZES` where it can run, else Triton. Returns ``out`` [total_q, H, D] in q's dtype.
    """
    what = "unified_attention"
    _check_q(q, what)
    for name, t in (("k_cache", k_cache), ("v_cache", v_cache)):
        _check_same(t, q, what, name)
        if t.dim() != 4 or t.stride(-1) != 1:
            raise ValueError(f"{what}: {name} must be [num_blocks, block_size, num_kv_heads, head_size] "
                             f"(vLLM's nhd layout) with a contiguous last dim, got shape {tuple(t.shape)}")
    if k_cache.shape != v_cache.shape:
        raise ValueError(f"{what}: k_cache {tuple(k_cache.shape)} and v_cache {tuple(v_cache.shape)} differ")
    _check_heads(q.shape[1], k_cache.shape[2], q.shape[2], k_cache.shape[3], what)
    _check_index(cu_seqlens_q, None, what, "cu_seqlens_q")
    b = cu_seqlens_q.shape[0] - 1
    _check_index(seqused_k, b, what, "seqused_k")
    _check_index(block_table, b, what, "block_table", dims=2)
    out = _output(out, q, what)
    scale = q.shape[2] ** -0.5 if softmax_scale is None else float(softmax_scale)
    if max_seqlen_k is not None and int(max_seqlen_k) < 0:
        raise ValueError(f"{what}: max_seqlen_k must be >= 0, got {max_seqlen_k}")
    cuda = _cuda_chosen(backend, what, q, k_cache.shape[2], out, (), cu_seqlens_q, max_seqlen_q)
    _unified_op(q, k_cache, v_cache, cu_seqlens_q, seqused_k, block_table, out, int(max_seqlen_q), scale,
                bool(causal), int(max_seqlen_k or 0), cuda)
    return out


def varlen_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: torch.Tensor,
                     cu_seqlens_k: torch.Tensor, max_seqlen_q: int, softmax_scale: float | None = None,
                     causal: bool = False, out: torch.Tensor | None = None, backend: str = "triton") -> torch.Tensor:
    """Dense varlen attention (``flash_attn_varlen_func``).

    ``q`` [total_q, H, D], ``k`` / ``v`` [total_k, H_kv, D] bf16/fp16 packed by ``cu_seqlens_q`` /
    ``cu_seqlens_k`` (int32 [B + 1]); ``max_seqlen_q`` host-side. Causal masks align bottom-right.
    ``backend="cuda"``: the sm_90a warpgroup-MMA kernel (bf16, head_size 128, 80 or 72); ``"auto"``: as
    :func:`unified_attention`'s. Returns ``out`` [total_q, H, D] in q's dtype.
    """
    what = "varlen_attention"
    _check_q(q, what)
    for name, t in (("k", k), ("v", v)):
        _check_q(t, what, name)
        _check_same(t, q, what, name)
    if k.shape != v.shape:
        raise ValueError(f"{what}: k {tuple(k.shape)} and v {tuple(v.shape)} differ")
    _check_heads(q.shape[1], k.shape[1], q.shape[2], k.shape[2], what)
    _check_index(cu_seqlens_q, None, what, "cu_seqlens_q")
    _check_index(cu_seqlens_k, cu_seqlens_q.shape[0], what, "cu_seqlens_k")
    out = _output(out, q, what)
    scale = q.shape[2] ** -0.5 if softmax_scale is None else float(softmax_scale)
    cuda = _cuda_chosen(backend, what, q, k.shape[1], out, (k, v), cu_seqlens_q, max_seqlen_q)
    _varlen_op(q, k, v, cu_seqlens_q, cu_seqlens_k, out, int(max_seqlen_q), scale, bool(causal), cuda)
    return out


def paged_attention_decode(query: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, seq_lens: torch.Tensor, scale: float | None = None,
                           out: torch.Tensor | None = None) -> torch.Tensor:
    """One decode step per sequence over vLLM's original paged layout (``paged_attention_v1``).

    ``query`` [B, H, D] bf16/fp16; ``k_cache`` [num_blocks, H_kv, D / x, block_size, x] with
    x = 16 bytes / element size; ``v_cache`` [num_blocks, H_kv, D, block_size];
    ``block_tables`` [B, max_blocks] int32; ``seq_lens`` [B] int32 keys per sequence. Returns
    ``out`` [B, H, D] in query's dtype.
    """
    what = "paged_attention_decode"
    _check_q(query, what, "query")
    for name, t, dims in (("k_cache", k_cache, 5), ("v_cache", v_cache, 4)):
        _check_same(t, query, what, name)
        if t.dim() != dims:
            raise ValueError(f"{what}: {name} must be {dims}-D (vLLM's x-split layout), got shape {tuple(t.shape)}")
    nb, hkv, dx, bs, x = k_cache.shape
    if tuple(v_cache.shape) != (nb, hkv, dx * x, bs):
        raise ValueError(f"{what}: v_cache has shape {tuple(v_cache.shape)}, expected {(nb, hkv, dx * x, bs)} "
                         f"for k_cache {tuple(k_cache.shape)}")
    if k_cache.stride(-1) != 1:
        raise ValueError(f"{what}: k_cache must be contiguous in its last (x) dimension")
    _check_heads(query.shape[1], hkv, query.shape[2], dx * x, what)
    b = query.shape[0]
    _check_index(seq_lens, b, what, "seq_lens")
    _check_index(block_tables, b, what, "block_tables", dims=2)
    out = _output(out, query, what)
    scale = query.shape[2] ** -0.5 if scale is None else float(scale)
    _decode_op(query, k_cache, v_cache, block_tables, seq_lens, out, scale)
    return out


__all__ = ["AttentionConfig", "decode_plan", "decode_splits", "default_config", "direct_grid", "stage_keys", "unified_attention", "varlen_attention", "paged_attention_decode"]
