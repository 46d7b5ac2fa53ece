// Block-scaled fp8 GEMM (W8A8, DeepSeek-V3 layout) on Hopper warpgroup MMAs: the CUDA backend of
// block_scaled_mm (kernels/cuda/block_fp8.py holds the contract and the launch).
//
//   out[m, n] = sum_kb a_scales[m, kb] * b_scales[n / 128, kb] * sum_{k in block kb} a[m, k] b[n, k]
//
// Why CUDA: each 128-wide K block's fp32 partial must be scaled before it joins the sum. Triton
// makes a product into a fresh accumulator synchronous, so there the tensor cores idle while
// the partial is rescaled. Here each warpgroup keeps two partial register sets: block i's
// products are issued into one while block i-1's partial, in the other, is scaled and added
// (wgmma.wait_group 1 leaves exactly the newer group in flight).
//
// Launch: persistent, one 256-thread CTA per SM (two warpgroups, 64 rows of a 128 x 128 output
// tile each), tiles in grouped order. A CTA walks the (tile, K block) pairs of its tiles as one
// stream, so the loads of its next tile overlap this tile's last products and its epilogue.
// Plain: thread 0 issues the TMA loads of both operands (128 x 128 bytes each, swizzled by the copy
// engine, zeros past M, N and K) into STAGES stages of 32 KB, STAGES - 2 blocks ahead: the
// stage it overwrites was last read by the products of block i - 2, which both warpgroups have
// waited for when they pass block i's barrier.
//
// WS (warp-specialized, an A/B variant): 384 threads, a producer warpgroup (24 registers) whose
// first thread issues the loads as soon as a stage's `empty` barrier says all 8 consumer warps
// retired the block that read it, and two consumer warpgroups (240 registers) that never meet at
// a CTA barrier: each runs its issue / retire stream on its own, as DeepGEMM's kernel does.
#include "common.cuh"
#include "sm90.cuh"

namespace solbench {
namespace fp8gemm {

constexpr int BM = 128, BN = 128, BK = 128;  // BK is the scale group along K, BN the group along N
constexpr int THREADS = 256;     // two warpgroups (WS: the consumers)
constexpr int WS_THREADS = 384;  // and a producer warpgroup (sm90.cuh: the register hand-over)
constexpr int TILE_BYTES = BM * BK;  // one operand tile of a stage (A and B alike: BM == BN)
constexpr int STAGE_BYTES = 2 * TILE_BYTES;

struct Params {
  sm90::TensorMap map_a;  // a [M, K] e4m3, boxes of 128 x 128
  sm90::TensorMap map_b;  // b [N, K] e4m3
  const float* sa;        // [M, ceil(K/128)], strides sa_m, sa_k
  const float* sb;        // [ceil(N/128), ceil(K/128)], strides sb_n, sb_k
  void* out;              // [M, N], rows ldo elements apart
  i64 ldo, sa_m, sa_k, sb_n, sb_k;
  int M, N, K;
  int group_m;
};
// The host fills this struct through ctypes (kernels/cuda/block_fp8.py _Params): same offsets.
static_assert(sizeof(Params) == 384, "Params layout changed: update _Params in block_fp8.py");

// Walks a CTA's (tile, K block) stream: tiles blockIdx.x, + gridDim.x, ... in grouped order
// (group_m row tiles share a column tile, so a wave reuses b from L2). The divisions run once a
// tile, not once a block.
struct Cursor {
  int tile, kb, m0, n0;

  __device__ __forceinline__ void seek(const Params& p, int t, int tiles_n) {
    tile = t;
    kb = 0;
    const int tiles_m = (p.M + BM - 1) / BM;
    if (t >= tiles_m * tiles_n) return;  // past the CTA's last tile: nothing to place (rows would be 0)
    const int in_group = p.group_m * tiles_n;
    const int first_m = (t / in_group) * p.group_m;
    const int rows = min(tiles_m - first_m, p.group_m);
    const int r = t % in_group;
    m0 = (first_m + r % rows) * BM;
    n0 = (r / rows) * BN;
  }
  __device__ __forceinline__ void next(const Params& p, int kblocks, int tiles_n) {
    if (++kb == kblocks) seek(p, tile + gridDim.x, tiles_n);
  }
};

// The fragment of an m64nN wgmma accumulator a thread holds: rows w*16 + lane/4 (h = 0) and
// + 8 (h = 1) of its warpgroup's 64; register 4j + 2h + e is column 8j + 2(lane % 4) + e.
template <typename OutT>
__device__ __forceinline__ void store_tile(const Params& p, int m0, int n0, const float (&acc)[64], int row) {
  typedef typename DType<OutT>::storage S;
  const int col0 = n0 + (threadIdx.x & 3) * 2;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = m0 + row + h * 8;
    if (r >= p.M) continue;
    S* orow = reinterpret_cast<S*>(p.out) + (i64)r * p.ldo;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int col = col0 + j * 8;
      if (col >= p.N) continue;  // N is even (the host checks), so col + 1 < N too
      const float x = acc[4 * j + 2 * h], y = acc[4 * j + 2 * h + 1];
      if constexpr (sizeof(S) == 4) {
        *reinterpret_cast<float2*>(orow + col) = make_float2(x, y);
      } else {
        *reinterpret_cast<unsigned*>(orow + col) = DType<OutT>::pack2(x, y);
      }
    }
  }
}

// What a block's retire needs from its issue: where it was and its two rows' scales.
struct Pending {
  Cursor at;
  float2 scale;
  int it;  // the block's index in the stream (its stage, for the WS release)
};

template <int STAGES, typename OutT, bool WS>
struct Mainloop {
  const Params& p;
  unsigned smem, bars;  // stage 0 and barrier 0 (shared addresses)
  int kblocks, tiles_n, its;
  int row;              // this thread's first output row within the tile (the second is + 8)
  Cursor consume, produce;
  float acc[64];

  __device__ __forceinline__ Mainloop(const Params& p_, unsigned smem_, int kblocks_, int tiles_n_, int its_)
      : p(p_), smem(smem_), bars(smem_ + STAGES * STAGE_BYTES), kblocks(kblocks_), tiles_n(tiles_n_), its(its_) {
    row = (threadIdx.x >> 7) * 64 + ((threadIdx.x >> 5) & 3) * 16 + ((threadIdx.x & 31) >> 2);
    consume.seek(p, blockIdx.x, tiles_n);
    produce = consume;
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = 0.f;
  }

  // A stage's full barrier (the TMA bytes landed) and, WS, its empty one (8 consumer warps retired
  // the block that read it).
  __device__ __forceinline__ unsigned full_bar(int it) const { return bars + (it % STAGES) * 8; }
  __device__ __forceinline__ unsigned empty_bar(int it) const { return bars + (STAGES + it % STAGES) * 8; }

  // The loading thread: the TMA loads of the next block of the produce cursor (block `it` of the
  // stream); WS: once the stage's previous block (it - STAGES) is retired.
  __device__ __forceinline__ void load(int it) {
    if (it >= its) return;
    if (WS && it >= STAGES) sm90::mbar_wait(empty_bar(it), (it / STAGES + 1) & 1);
    const unsigned stage = smem + (it % STAGES) * STAGE_BYTES, bar = full_bar(it);
    sm90::mbar_arrive_expect_tx(bar, STAGE_BYTES);
    sm90::tma_load_2d(stage, &p.map_a, bar, produce.kb * BK, produce.m0);
    sm90::tma_load_2d(stage + TILE_BYTES, &p.map_b, bar, produce.kb * BK, produce.n0);
    produce.next(p, kblocks, tiles_n);
  }

  // This thread's two rows' combined scales for the block at `c` (a row past M scales by 0).
  // The rows' scale pointers change once a tile; a block adds its K offset.
  const float *sa0, *sa1, *sb_row;
  __device__ __forceinline__ float2 scales(const Cursor& c) {
    if (c.kb == 0) {
      const int r0 = c.m0 + row, r1 = r0 + 8;
      sa0 = r0 < p.M ? p.sa + (i64)r0 * p.sa_m : nullptr;
      sa1 = r1 < p.M ? p.sa + (i64)r1 * p.sa_m : nullptr;
      sb_row = p.sb + (i64)(c.n0 / BN) * p.sb_n;
    }
    const i64 ka = (i64)c.kb * p.sa_k;
    const float sb = sb_row[(i64)c.kb * p.sb_k];
    const float s0 = sa0 ? sa0[ka] : 0.f, s1 = sa1 ? sa1[ka] : 0.f;
    return make_float2(s0 * sb, s1 * sb);
  }

  // Block `it`: wait for its stage (plain: then let thread 0 refill the stage of block it - 2),
  // and issue the block's products into `part`.
  __device__ __forceinline__ void issue(int it, float (&part)[64], Pending& pend) {
    pend.at = consume;
    pend.it = it;
    pend.scale = scales(consume);  // global loads, consumed a block later
    consume.next(p, kblocks, tiles_n);
    sm90::mbar_wait(full_bar(it), (it / STAGES) & 1);
    if constexpr (!WS) {
      __syncthreads();  // both warpgroups are past block it - 2's products
      if (threadIdx.x == 0) load(it + STAGES - 2);
    }
    __syncwarp();  // the warp reconverges (after thread 0's load, or the wait's retry loop) before
                   // the .sync.aligned wgmma instructions
    const unsigned stage = smem + (it % STAGES) * STAGE_BYTES;
    const unsigned a_tile = stage + (threadIdx.x >> 7) * (64 * BK);
    sm90::fence_regs(part);
    sm90::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BK / 32; ++kk)
      sm90::wgmma_m64n128k32(part, sm90::desc_k_major_sw128(a_tile + kk * 32),
                             sm90::desc_k_major_sw128(stage + TILE_BYTES + kk * 32), kk > 0);
    sm90::wgmma_commit();
  }

  // The block in `part`, the older of the (at most) two groups in flight: wait for it (WAIT: how
  // many groups may stay in flight), scale and add it, and store the tile after its last block.
  template <int WAIT>
  __device__ __forceinline__ void retire(float (&part)[64], const Pending& pend) {
    sm90::wgmma_wait<WAIT>();
    if (WS) sm90::warp_arrive(empty_bar(pend.it));  // its stage is free
    sm90::fence_regs(part);
    // In-place FMAs (asm ties each sum to its own register): with plain C++ ptxas left half
    // of the sums in the partial's registers and moved them back, 32 moves a block.
#pragma unroll
    for (int i = 0; i < 64; ++i)
      asm("fma.rn.f32 %0, %1, %2, %0;" : "+f"(acc[i]) : "f"(part[i]), "f"(i & 2 ? pend.scale.y : pend.scale.x));
    if (pend.at.kb == kblocks - 1) {
      store_tile<OutT>(p, pend.at.m0, pend.at.n0, acc, row);
#pragma unroll
      for (int i = 0; i < 64; ++i) asm("mov.b32 %0, 0;" : "=f"(acc[i]));
    }
  }
};

template <int STAGES, typename OutT, bool WS>
__global__ void __launch_bounds__(WS ? WS_THREADS : THREADS, 1) block_fp8_gemm(const __grid_constant__ Params p) {
  static_assert(STAGES >= 3, "loads run STAGES - 2 blocks ahead");
  extern __shared__ unsigned char smem_raw[];
  // Stages on 1024-byte boundaries (the swizzle atom), then one 8-byte barrier a stage; the host
  // asks for 1 KB of slack.
  const unsigned smem = (sm90::smem_addr(smem_raw) + 1023u) & ~1023u;
  const int kblocks = (p.K + BK - 1) / BK;
  const int tiles_n = (p.N + BN - 1) / BN;
  const int tiles = ((p.M + BM - 1) / BM) * tiles_n;
  if ((int)blockIdx.x >= tiles) return;
  const int its = ((tiles - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x) * kblocks;

  Mainloop<STAGES, OutT, WS> ml(p, smem, kblocks, tiles_n, its);
  if (threadIdx.x == 0) {
    sm90::tma_prefetch_map(&p.map_a);
    sm90::tma_prefetch_map(&p.map_b);
    for (int s = 0; s < STAGES; ++s) sm90::mbar_init(ml.full_bar(s), 1);
    if (WS)
      for (int s = 0; s < STAGES; ++s) sm90::mbar_init(ml.empty_bar(s), THREADS / 32);
    sm90::fence_barrier_init();
  }
  __syncthreads();
  if constexpr (WS) {
    if (threadIdx.x >= THREADS) {  // the producer warpgroup: its first thread loads every block
      sm90::setmaxnreg_dec<sm90::WS_PRODUCER_REGS>();
      if (threadIdx.x == THREADS)
        for (int it = 0; it < its; ++it) ml.load(it);
      return;
    }
    sm90::setmaxnreg_inc<sm90::WS_CONSUMER_REGS>();
  } else if (threadIdx.x == 0) {
    for (int j = 0; j < STAGES - 2; ++j) ml.load(j);
  }

  float part0[64], part1[64];
  Pending pend0, pend1;
  // Blocks alternate between the two partial sets, two blocks an iteration, so each set stays
  // in fixed registers; the first issue is peeled, so every retire in the loop waits for exactly
  // the older group (ptxas serializes the MMAs when it cannot prove that).
  ml.issue(0, part0, pend0);
  int it = 1;
  for (; it + 1 < its; it += 2) {
    ml.issue(it, part1, pend1);
    ml.template retire<1>(part0, pend0);
    ml.issue(it + 1, part0, pend0);
    ml.template retire<1>(part1, pend1);
  }
  if (it < its) {
    ml.issue(it, part1, pend1);
    ml.template retire<1>(part0, pend0);
    ml.template retire<0>(part1, pend1);
  } else {
    ml.template retire<0>(part0, pend0);
  }
}

}  // namespace fp8gemm
}  // namespace solbench
