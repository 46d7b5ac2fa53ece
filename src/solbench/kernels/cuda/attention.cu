// Causal / full flash attention forward over packed (varlen) queries and dense K/V on Hopper
// warpgroup MMAs: the CUDA backend of varlen_attention and of unified_attention's staged prefill
// (kernels/cuda/attention.py holds the contract and the launch). bf16, head sizes 128, and 72 or
// 80 padded to 80 (see Layout).
//
//   out[t, h] = sum_j softmax_j(scale * q[t, h] . k[j, h / G]) v[j, h / G]
//
// over the keys j of t's sequence (causal: j <= i + L_k - L_q for t the sequence's query i; a
// query that sees no key gets 0).
//
// Why CUDA: Triton issues a key tile's two products and its softmax in sequence, so a warpgroup's
// tensor cores idle during its softmax. Here a warpgroup issues tile j's q.k products, then tile
// j-1's p.v products, and runs tile j's softmax while the p.v products are in flight
// (FlashAttention-3's intra-warpgroup overlap): wgmma.wait_group 1 waits for q.k only.
//
// A CTA owns (128 / G) * G rows of one sequence and one KV head: rows are (query token, query
// head of the KV head's group of G), token-major, so the G heads that share a KV head share every
// K/V tile; the last 128 mod G rows of the MMA tile are idle (never stored). Its 384 threads are
// two consumer warpgroups of 64 rows and a producer warpgroup (24 registers a thread, so the
// consumers get 240; a lone producer warp would cap all at 168, as the register file is split
// between the SM's four schedulers), whose first thread issues the TMA loads: q
// once (in panels, see Layout), K and V tiles of 128 keys into 3 stages each. Each stage has a
// `full` barrier (the TMA bytes landed) and an `empty` one (all 8 consumer warps waited for the
// products that read it), so the producer refills a stage as soon as both warpgroups are done
// with it and the warpgroups never wait for each other: while one runs its softmax, the other's
// products keep the tensor cores busy (the warp schedulers interleave them).
#include "common.cuh"
#include "sm90.cuh"

namespace solbench {
namespace attn {

constexpr int BN = 128;  // keys a tile
// -infinity by its bits (NVRTC has no math.h)
__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000); }
constexpr int CONSUMERS = 256;           // two warpgroups
constexpr int THREADS = CONSUMERS + 128;  // and the producer warpgroup
constexpr int STAGES = 3;
// q full; k full, v full, k empty, v empty [STAGES] each; q empty (the persistent kernel's next q)
constexpr int N_BARS = 2 + 4 * STAGES;

// Shared memory of a kernel built for DP columns (the padded head size). A tile of 128 rows is
// stored as panels of the widest swizzle that divides DP, each the box of one TMA load: 128 as two
// 64-column panels with the 128-byte swizzle; 80 as five 16-column panels with the 32-byte swizzle.
// Head size 72 runs at 80: the tensor maps end at column 72, so TMA fills columns 72-79 with
// zeros, which add nothing to q.k and make o's columns 72-79 zero (never stored). A smaller
// padding would not do: wgmma steps K by 16 and the swizzle needs whole 16-byte chunks.
template <int DP>
struct Layout {
  static_assert(DP == 128 || DP == 80, "the kernel is built for padded head sizes 128 and 80");
  static constexpr int PANEL_COLS = DP % 64 == 0 ? 64 : 16;
  static constexpr int SW = 2 * PANEL_COLS;     // the swizzle width: a panel row's bytes
  static constexpr int PANELS = DP / PANEL_COLS;
  static constexpr int PANEL = 128 * SW;        // bytes of one panel of 128 rows
  static constexpr int TILE = PANELS * PANEL;   // a 128 x DP bf16 tile
  static constexpr int SMEM_Q = 0;
  static constexpr int SMEM_K = TILE;
  static constexpr int SMEM_V = SMEM_K + STAGES * TILE;
  static constexpr int SMEM_BARS = SMEM_V + STAGES * TILE;
};

struct Params {
  sm90::TensorMap map_q;  // q [T, H, D]: dims {D, H, T}, boxes {PANEL_COLS, G, 128 / G}
  sm90::TensorMap map_k;  // k [rows, H_kv, D]: dims {D, H_kv, rows}, boxes {PANEL_COLS, 1, 128}
  sm90::TensorMap map_v;
  unsigned short* out;    // [T, H, D] bf16
  const int* cu_q;        // [B + 1]
  const int* cu_k;        // [B + 1] (dense keys), or null
  const int* seqused_k;   // [B] (staged keys: sequence s at rows s * stage_rows), or null
  i64 out_t, out_h;       // out strides (elements)
  float scale_log2;       // softmax scale * log2(e)
  int G, stage_rows;
  int rows;               // (token, head) rows a CTA owns: (128 / G) * G (126 for G = 7)
  int row_tiles;          // row tiles of the longest sequence (the non-persistent grid's x)
  int kv_heads, items;    // the persistent kernel's work items: row_tiles * kv_heads * sequences
  // Paged keys read in place (or null: dense): map_k / map_v are then 4-D over the nhd caches
  // [blocks, page, H_kv, D] (dims {D, H_kv, page, blocks}, boxes {PANEL_COLS, 1, page, 1}),
  // sequence s's key i in block block_table[s * bt_stride + i / page]; page divides 128 (16 to 128).
  const int* block_table;
  int bt_stride, page;
  int d;                  // the head size (<= DP): o's columns past it are not stored
};
static_assert(sizeof(Params) == 512, "Params layout changed: update _Params in attention.py");

__device__ __forceinline__ unsigned pack_bf16(float lo, float hi) { return DType<bf16>::pack2(lo, hi); }

struct Tile {
  // Where this CTA is: its sequence's query and key ranges, its rows, its KV head.
  int row0;        // first (token, head) row of the CTA within the sequence
  int q_tok0;      // first query token of the sequence in q (global row)
  int k_row0;      // first key row of the sequence in k / v
  int lq, lk;      // query and key counts of the sequence
  int hk;          // KV head
  int seq;         // sequence
  int n_tiles;     // key tiles to visit
  int full_tiles;  // key tiles every row of the CTA sees in full (no mask)
};

template <bool CAUSAL, bool PINGPONG, bool PERSISTENT, int DP>
struct Attention {
  using L = Layout<DP>;
  const Params& p;
  unsigned smem, bars;
  Tile t;
  // Key tiles this CTA visited before the current work item, and items it ran: the stages and
  // barrier phases run on across items (a persistent CTA runs several; otherwise both stay 0).
  int tiles_before = 0, items_before = 0;
  int row;         // this thread's first row within the warpgroup pair's 128 (the second is + 8)
  float o[DP / 2];  // the output accumulator, fragment order (see block_fp8.cu)
  float m[2], l[2];

  __device__ __forceinline__ unsigned bar_q() const { return bars; }
  __device__ __forceinline__ unsigned bar_k(int s) const { return bars + 8 * (1 + s); }
  __device__ __forceinline__ unsigned bar_v(int s) const { return bars + 8 * (1 + STAGES + s); }
  __device__ __forceinline__ unsigned bar_k_empty(int s) const { return bars + 8 * (1 + 2 * STAGES + s); }
  __device__ __forceinline__ unsigned bar_v_empty(int s) const { return bars + 8 * (1 + 3 * STAGES + s); }
  __device__ __forceinline__ unsigned bar_q_empty() const { return bars + 8 * (1 + 4 * STAGES); }

  // Work item (x, hk, seq): row tile x from the end of sequence seq (the longest causal rows
  // first), KV head hk. Fills t; false when the sequence has no rows there.
  __device__ __forceinline__ bool place(int x, int hk, int seq) {
    t.row0 = (p.row_tiles - 1 - x) * p.rows;
    t.hk = hk;
    t.seq = seq;
    t.q_tok0 = p.cu_q[seq];
    t.lq = p.cu_q[seq + 1] - t.q_tok0;
    if (t.row0 >= t.lq * p.G) return false;
    if (p.seqused_k) {  // staged dense (sequence s at rows s * stage_rows) or paged in place
      t.k_row0 = p.block_table ? 0 : seq * p.stage_rows;
      t.lk = min(p.seqused_k[seq], p.stage_rows);
    } else {
      t.k_row0 = p.cu_k[seq];
      t.lk = p.cu_k[seq + 1] - t.k_row0;
    }
    const int last_tok = min((t.row0 + p.rows - 1) / p.G, t.lq - 1);
    const int first_tok = t.row0 / p.G;
    int keys = t.lk, full_keys = t.lk;
    if (CAUSAL) {
      keys = max(0, min(t.lk, last_tok + t.lk - t.lq + 1));
      full_keys = max(0, min(t.lk, first_tok + t.lk - t.lq + 1));
    }
    t.n_tiles = (keys + BN - 1) / BN;
    t.full_tiles = full_keys / BN;
    return true;
  }
  // The persistent kernel's item i: the longest rows (x = 0) of every head and sequence first.
  __device__ __forceinline__ bool place_item(int i) {
    const int per_x = p.items / p.row_tiles;  // kv_heads * sequences
    return place(i / per_x, i % p.kv_heads, (i % per_x) / p.kv_heads);
  }
  __device__ __forceinline__ void reset() {
#pragma unroll
    for (int i = 0; i < DP / 2; ++i) o[i] = 0.f;
    m[0] = m[1] = neg_inf();
    l[0] = l[1] = 0.f;
  }

  // Producer: key tile j's K (or V) into the stage of its CTA-wide index g = tiles_before + j,
  // once the consumers released the tile that stage held (g - STAGES: the empty barrier's
  // (g / STAGES - 1)-th phase). Paged keys' block-table entries are loaded before that wait, so
  // their round trip overlaps it.
  __device__ __forceinline__ void load(int j, const sm90::TensorMap* map, unsigned base, unsigned full,
                                       unsigned empty) {
    const int g = tiles_before + j, s = g % STAGES;
    const unsigned dst = base + s * L::TILE;
    if (p.block_table) {  // one box a page holding keys of the tile (rows past them stay stale:
                          // masked in K, zeroed in V by clear_v_tail)
      const int first = j * BN, page = p.page;
      const int pages = min(BN / page, (t.lk - first + page - 1) / page);
      const int* bt = p.block_table + (i64)t.seq * p.bt_stride + first / page;
      int block[BN / 16];
#pragma unroll
      for (int i = 0; i < BN / 16; ++i) block[i] = i < pages ? bt[i] : 0;  // together, before the stage frees
      if (g >= STAGES) sm90::mbar_wait(empty, (g / STAGES + 1) & 1);
      sm90::mbar_arrive_expect_tx(full, pages * page * L::PANELS * L::SW);
#pragma unroll
      for (int i = 0; i < BN / 16; ++i)
        if (i < pages) {
#pragma unroll
          for (int c = 0; c < L::PANELS; ++c)
            sm90::tma_load_4d(dst + c * L::PANEL + i * page * L::SW, map, full, c * L::PANEL_COLS, t.hk, 0,
                              block[i]);
        }
      return;
    }
    if (g >= STAGES) sm90::mbar_wait(empty, (g / STAGES + 1) & 1);
    const int key = t.k_row0 + j * BN;
    sm90::mbar_arrive_expect_tx(full, L::TILE);
#pragma unroll
    for (int c = 0; c < L::PANELS; ++c) sm90::tma_load_3d(dst + c * L::PANEL, map, full, c * L::PANEL_COLS, t.hk, key);
  }
  __device__ __forceinline__ int stage(int j) const { return (tiles_before + j) % STAGES; }
  __device__ __forceinline__ unsigned phase(int j) const { return ((tiles_before + j) / STAGES) & 1; }
  __device__ __forceinline__ void load_k(int j) {
    load(j, &p.map_k, smem + L::SMEM_K, bar_k(stage(j)), bar_k_empty(stage(j)));
  }
  __device__ __forceinline__ void load_v(int j) {
    load(j, &p.map_v, smem + L::SMEM_V, bar_v(stage(j)), bar_v_empty(stage(j)));
  }
  // The producer's thread, one work item: its first K tile, q (once the consumers are done with
  // the previous item's), then K one tile ahead of V (q.k of tile j + 1 comes before p.v of tile
  // j), each as soon as its stage is free.
  __device__ __forceinline__ void produce() {
    load_k(0);
    if (items_before > 0) sm90::mbar_wait(bar_q_empty(), (items_before - 1) & 1);
    sm90::mbar_arrive_expect_tx(bar_q(), p.rows * L::PANELS * L::SW);  // the panels of `rows` rows
    const int tok = t.q_tok0 + t.row0 / p.G, head = t.hk * p.G;
#pragma unroll
    for (int c = 0; c < L::PANELS; ++c)
      sm90::tma_load_3d(smem + L::SMEM_Q + c * L::PANEL, &p.map_q, bar_q(), c * L::PANEL_COLS, head, tok);
    for (int j = 0; j < t.n_tiles; ++j) {
      if (j + 1 < t.n_tiles) load_k(j + 1);
      load_v(j);
    }
  }
  // PINGPONG (FlashAttention-3's ping-pong): the consumer warpgroups take turns issuing their
  // products. Warpgroup w waits at named barrier 3 + w until the other has issued (its arrival
  // there), issues, then lets the other go; so one's softmax runs while the other's products do,
  // in strict alternation rather than as the warp schedulers happen to interleave them.
  // Warpgroup 1 arrives once at the start, so warpgroup 0 goes first; warpgroup 0 takes that
  // extra arrival back at the end (turns_done), so every barrier ends balanced.
  __device__ __forceinline__ static void turn_begin() {
    if (PINGPONG) sm90::named_barrier(3 + (threadIdx.x >> 7), CONSUMERS);
  }
  __device__ __forceinline__ static void turn_end() {
    if (PINGPONG) sm90::named_barrier_arrive(3 + ((threadIdx.x >> 7) ^ 1), CONSUMERS);
  }
  __device__ __forceinline__ static void turns_start() {
    if (PINGPONG && threadIdx.x >= 128) sm90::named_barrier_arrive(3, CONSUMERS);
  }
  __device__ __forceinline__ static void turns_done() {
    if (PINGPONG && threadIdx.x < 128) sm90::named_barrier(3, CONSUMERS);
  }

  // A consumer warp is done with a stage (its wgmma wait returned).
  __device__ __forceinline__ static void release(unsigned empty) { sm90::warp_arrive(empty); }

  // s = q k_j^T for this warpgroup's 64 rows: DP / 16 steps of 16 columns, PANEL_COLS / 16 in
  // each panel (32 bytes apart within it).
  __device__ __forceinline__ void issue_qk(int j, float (&s)[64]) {
    const int st = stage(j);
    sm90::mbar_wait(bar_k(st), phase(j));
    const unsigned q_rows = smem + L::SMEM_Q + (threadIdx.x >> 7) * (64 * L::SW);
    const unsigned k_tile = smem + L::SMEM_K + st * L::TILE;
    constexpr int per_panel = L::PANEL_COLS / 16;
    sm90::fence_regs(s);
    sm90::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < DP / 16; ++kk) {
      const unsigned off = (kk / per_panel) * L::PANEL + (kk % per_panel) * 32;
      sm90::wgmma_m64n128k16_bf16_ss(s, sm90::desc_k_major<L::SW>(q_rows + off),
                                     sm90::desc_k_major<L::SW>(k_tile + off), kk > 0);
    }
    sm90::wgmma_commit();
  }

  // o += p_j v_j: the keys are the K dimension (16 a step, 16 panel rows), V is MN-major (D
  // contiguous, the panels PANEL bytes apart).
  __device__ __forceinline__ void issue_pv(int j, const unsigned (&pr)[32]) {
    const int st = stage(j);
    sm90::mbar_wait(bar_v(st), phase(j));
    const unsigned v_tile = smem + L::SMEM_V + st * L::TILE;
    sm90::fence_regs(o);
    sm90::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
      const unsigned a[4] = {pr[4 * kk], pr[4 * kk + 1], pr[4 * kk + 2], pr[4 * kk + 3]};
      const unsigned long long desc = sm90::desc_mn_major<L::SW>(v_tile + kk * 16 * L::SW, L::PANEL);
      if constexpr (DP == 128)
        sm90::wgmma_m64n128k16_bf16_rs_tb(o, a, desc);
      else
        sm90::wgmma_m64n80k16_bf16_rs_tb(o, a, desc);
    }
    sm90::wgmma_commit();
  }

  // Tile j's softmax on s (this thread's rows row, row + 8), in place: masks (MASK: the causal
  // diagonal, or keys past the sequence's end), the new running maxima, s = exp2((s - m) scale
  // log2 e), this thread's part of the row sums l (the quad's four parts are added at the end),
  // and alpha, the factor that takes o from the old maxima to the new (applied by rescale_o
  // before the next p.v). Register arithmetic only, no branch.
  template <bool MASK>
  __device__ __forceinline__ void softmax(int j, float (&s)[64], float (&alpha)[2]) {
    if (MASK) {
      const int col0 = j * BN + (threadIdx.x & 3) * 2;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = t.row0 + row + 8 * h;
        int limit = t.lk - 1;  // the last key this row sees
        if (CAUSAL) limit = min(limit, r / p.G + t.lk - t.lq);
#pragma unroll
        for (int jj = 0; jj < 16; ++jj)
#pragma unroll
          for (int e = 0; e < 2; ++e)
            if (col0 + 8 * jj + e > limit) s[4 * jj + 2 * h + e] = neg_inf();
      }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = m[h];
#pragma unroll
      for (int jj = 0; jj < 16; ++jj) mx = fmaxf(mx, fmaxf(s[4 * jj + 2 * h], s[4 * jj + 2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffff, mx, 2));
      // A row that has seen no key yet keeps m = -inf: exponentiate against 0 so nothing is NaN.
      const float base = mx == neg_inf() ? 0.f : mx * p.scale_log2;
      alpha[h] = sm90::ex2_ftz(m[h] * p.scale_log2 - base);
      m[h] = mx;
      float acc = 0.f;
#pragma unroll
      for (int jj = 0; jj < 16; ++jj)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float x = sm90::ex2_ftz(fmaf(s[4 * jj + 2 * h + e], p.scale_log2, -base));
          s[4 * jj + 2 * h + e] = x;
          acc += x;
        }
      l[h] = l[h] * alpha[h] + acc;
    }
  }

  // p = s in bf16: the accumulator fragment of 16 key columns is the A fragment of a 16-key step.
  __device__ __forceinline__ static void pack(const float (&s)[64], unsigned (&pr)[32]) {
#pragma unroll
    for (int i = 0; i < 32; ++i) pr[i] = pack_bf16(s[2 * i], s[2 * i + 1]);
  }

  // Keys past the sequence's end in its last V tile hold whatever follows it in memory (the next
  // sequence, padding, unwritten staging rows). p is 0 there, but 0 * NaN is NaN in the product,
  // so those rows of the tile are zeroed first (whole panel rows: the swizzle only permutes
  // 16-byte chunks within a row). Each warpgroup clears all of them itself before its product:
  // the other's stores write the same zeros, so no cross-warpgroup barrier is needed.
  __device__ __forceinline__ void clear_v_tail(int j) {
    const int valid = t.lk - j * BN;
    if (valid >= BN) return;
    const int st = stage(j);
    sm90::mbar_wait(bar_v(st), phase(j));
    const unsigned v_tile = smem + L::SMEM_V + st * L::TILE;
    const int chunks = (BN - valid) * (L::SW / 16);  // 16-byte chunks of a panel's cleared rows
    for (int i = threadIdx.x & 127; i < L::PANELS * chunks; i += 128)
      sm90::st_shared_zero16(v_tile + (i / chunks) * L::PANEL + valid * L::SW + (i % chunks) * 16);
    sm90::fence_proxy_async();
    sm90::named_barrier(1 + (threadIdx.x >> 7), 128);
  }

  __device__ __forceinline__ void rescale_o(const float (&alpha)[2]) {
#pragma unroll
    for (int jj = 0; jj < DP / 8; ++jj)
#pragma unroll
      for (int i = 0; i < 4; ++i) o[4 * jj + i] *= alpha[i >> 1];
  }

  // Step j: q.k of tile j, p.v of tile j - 1, wait for q.k only (K_j's stage is free), tile j's
  // softmax while p.v runs, wait (V_{j-1}'s stage is free), then p and the rescale of o
  // (FlashAttention-3's order: one p register set, written once p.v is done). No product is in
  // flight where control flow merges (ptxas would serialize them all), and MASK is a template
  // argument because ptxas waits for every product where branches merge.
  template <bool MASK>
  __device__ __forceinline__ void step(int j, float (&s)[64], unsigned (&pr)[32], float (&alpha)[2]) {
    turn_begin();
    issue_qk(j, s);
    issue_pv(j - 1, pr);
    turn_end();
    sm90::wgmma_wait<1>();
    release(bar_k_empty(stage(j)));
    if (PERSISTENT && j == t.n_tiles - 1) release(bar_q_empty());  // the item's last q.k is done
    sm90::fence_regs(s);
    softmax<MASK>(j, s, alpha);
    sm90::fence_regs(s);
    sm90::schedule_fence();  // the softmax stays before the wait (see sm90.cuh)
    sm90::wgmma_wait<0>();
    release(bar_v_empty(stage(j - 1)));
    sm90::fence_regs(o);
    pack(s, pr);
    rescale_o(alpha);
  }

  // The consumers' work item: tile 0's q.k and softmax, the steps, the last p.v, the store.
  __device__ __forceinline__ void consume(float (&s)[64], unsigned (&pr)[32], float (&alpha)[2]) {
    sm90::mbar_wait(bar_q(), items_before & 1);
    // Tile 0: q.k and softmax (o is 0: no rescale); its p.v comes in step 1.
    turn_begin();
    issue_qk(0, s);
    turn_end();
    sm90::wgmma_wait<0>();
    release(bar_k_empty(stage(0)));
    if (PERSISTENT && t.n_tiles == 1) release(bar_q_empty());
    sm90::fence_regs(s);
    if (t.full_tiles > 0)
      softmax<false>(0, s, alpha);
    else
      softmax<true>(0, s, alpha);
    pack(s, pr);
    int j = 1;
    for (const int unmasked = min(t.full_tiles, t.n_tiles); j < unmasked; ++j) step<false>(j, s, pr, alpha);
    for (; j < t.n_tiles; ++j) step<true>(j, s, pr, alpha);
    // The last tile's p.v.
    clear_v_tail(t.n_tiles - 1);
    turn_begin();
    issue_pv(t.n_tiles - 1, pr);
    turn_end();
    sm90::wgmma_wait<0>();
    if (PERSISTENT) release(bar_v_empty(stage(t.n_tiles - 1)));  // the stage serves the next item
    sm90::fence_regs(o);
    store();
  }

  __device__ __forceinline__ void store() {
    const int col0 = (threadIdx.x & 3) * 2;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = t.row0 + row + 8 * h;
      float sum = l[h];  // the quad's four parts of the row sum
      sum += __shfl_xor_sync(0xffffffff, sum, 1);
      sum += __shfl_xor_sync(0xffffffff, sum, 2);
      if (row + 8 * h >= p.rows || r >= t.lq * p.G) continue;
      const float inv = sum > 0.f ? 1.f / sum : 0.f;
      unsigned short* orow = p.out + (i64)(t.q_tok0 + r / p.G) * p.out_t + (i64)(t.hk * p.G + r % p.G) * p.out_h;
#pragma unroll
      for (int jj = 0; jj < DP / 8; ++jj)
        if (DP == p.d || 8 * jj < p.d)  // head sizes are multiples of 8: whole 8-column groups
          *reinterpret_cast<unsigned*>(orow + col0 + 8 * jj) =
              pack_bf16(o[4 * jj + 2 * h] * inv, o[4 * jj + 2 * h + 1] * inv);
    }
  }
};

template <bool CAUSAL, bool PINGPONG, bool PERSISTENT, int DP>
__global__ void __launch_bounds__(THREADS, 1) attention_fwd(const __grid_constant__ Params p) {
  extern __shared__ unsigned char smem_raw[];
  const unsigned smem = (sm90::smem_addr(smem_raw) + 1023u) & ~1023u;
  Attention<CAUSAL, PINGPONG, PERSISTENT, DP> at{p, smem, smem + Layout<DP>::SMEM_BARS};
  at.row = (threadIdx.x >> 7) * 64 + ((threadIdx.x >> 5) & 3) * 16 + ((threadIdx.x & 31) >> 2);
  if constexpr (!PERSISTENT) {  // one work item a CTA: (row tile, KV head, sequence) = blockIdx
    if (!at.place(blockIdx.x, blockIdx.y, blockIdx.z)) return;
    if (at.t.n_tiles == 0) {  // no visible key: zeros
      at.reset();
      if (threadIdx.x < CONSUMERS) at.store();
      return;
    }
  }

  if (threadIdx.x == 0) {
    sm90::tma_prefetch_map(&p.map_q);
    sm90::tma_prefetch_map(&p.map_k);
    sm90::tma_prefetch_map(&p.map_v);
    for (int i = 0; i < 1 + 2 * STAGES; ++i) sm90::mbar_init(at.bars + 8 * i, 1);  // full: the producer's arrival
    for (int i = 1 + 2 * STAGES; i < N_BARS; ++i) sm90::mbar_init(at.bars + 8 * i, CONSUMERS / 32);  // empty
    sm90::fence_barrier_init();
  }
  __syncthreads();
  if (threadIdx.x >= CONSUMERS) {
    sm90::setmaxnreg_dec<sm90::WS_PRODUCER_REGS>();
    if (threadIdx.x != CONSUMERS) return;
    if constexpr (!PERSISTENT) {
      at.produce();
    } else {  // items blockIdx.x, + gridDim.x, ...: the same walk as the consumers'
      for (int i = blockIdx.x; i < p.items; i += gridDim.x) {
        if (!at.place_item(i) || at.t.n_tiles == 0) continue;
        at.produce();
        at.tiles_before += at.t.n_tiles;
        ++at.items_before;
      }
    }
    return;
  }
  sm90::setmaxnreg_inc<sm90::WS_CONSUMER_REGS>();
  at.turns_start();
  float s[64];
  unsigned pr[32];
  float alpha[2];
  if constexpr (!PERSISTENT) {
    at.reset();
    at.consume(s, pr, alpha);
  } else {
    for (int i = blockIdx.x; i < p.items; i += gridDim.x) {
      if (!at.place_item(i)) continue;
      at.reset();
      if (at.t.n_tiles == 0) {  // no visible key: zeros
        at.store();
        continue;
      }
      at.consume(s, pr, alpha);
      at.tiles_before += at.t.n_tiles;
      ++at.items_before;
    }
  }
  at.turns_done();
}

}  // namespace attn
}  // namespace solbench
