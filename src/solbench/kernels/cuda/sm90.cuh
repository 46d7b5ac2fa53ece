// Hopper (sm_90a) building blocks of solbench's JIT CUDA kernels: shared-memory addresses,
// mbarriers, TMA tile loads and warpgroup MMAs (wgmma) on operands in shared memory.
//
// Layout convention: an operand tile is stored in panels of SW-byte rows (SW = 128, 64 or 32), one
// row per M (or N) index when K-major, with the SW-byte swizzle (what a tensor map with
// CU_TENSOR_MAP_SWIZZLE_<SW>B writes and wgmma reads): 16-byte chunks permuted within a row by the
// row's index. Panels start on atom boundaries (8 rows, 8 * SW bytes), so a descriptor's start
// address can step along K inside a 128-byte row by adding the byte offset.
#pragma once

namespace solbench {
namespace sm90 {

__device__ __forceinline__ unsigned smem_addr(const void* p) {
  unsigned r;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
  return r;
}

// Shared-memory matrix descriptors. SW: the swizzle width in bytes (128, 64 or 32), which is
// also a row's bytes in one panel (what a tensor map with CU_TENSOR_MAP_SWIZZLE_<SW>B writes):
// a swizzle atom is 8 rows of SW bytes, so 8-row core groups are 8 * SW bytes apart (the stride
// byte offset). Tiles start on atom boundaries.
template <int SW>
__device__ __forceinline__ unsigned long long desc_swizzle_bits() {
  static_assert(SW == 128 || SW == 64 || SW == 32, "swizzle widths are 128, 64 or 32 bytes");
  return (unsigned long long)(SW == 128 ? 1 : SW == 64 ? 2 : 3) << 62;
}

// A K-major tile (the MMA's K dimension contiguous, one SW-byte row per M or N index); the
// leading offset is unused for swizzled K-major tiles.
template <int SW>
__device__ __forceinline__ unsigned long long desc_k_major(unsigned addr) {
  return (unsigned long long)((addr & 0x3FFFF) >> 4) | (1ull << 16) | ((unsigned long long)(8 * SW >> 4) << 32) |
         desc_swizzle_bits<SW>();
}
__device__ __forceinline__ unsigned long long desc_k_major_sw128(unsigned addr) { return desc_k_major<128>(addr); }

// An MN-major tile (the MMA's N or M dimension contiguous): panels of SW / 2 elements along MN
// `panel_bytes` apart (the leading byte offset), 8-row groups along K 8 * SW bytes apart.
template <int SW>
__device__ __forceinline__ unsigned long long desc_mn_major(unsigned addr, unsigned panel_bytes) {
  return (unsigned long long)((addr & 0x3FFFF) >> 4) | ((unsigned long long)((panel_bytes >> 4) & 0x3FFF) << 16) |
         ((unsigned long long)(8 * SW >> 4) << 32) | desc_swizzle_bits<SW>();
}
__device__ __forceinline__ unsigned long long desc_mn_major_sw128(unsigned addr, unsigned panel_bytes) {
  return desc_mn_major<128>(addr, panel_bytes);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;" ::"n"(N) : "memory"); }

// The compiler does not know that a wgmma writes its accumulators after the instruction issues:
// touching every register here, in order with the (volatile) wait, keeps reads of an
// accumulator after its wait and writes before the next issue.
template <int N>
__device__ __forceinline__ void fence_regs(float (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
template <int N>
__device__ __forceinline__ void fence_regs(unsigned (&d)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+r"(d[i])::"memory");
}

// ptxas moves register-only work past a wgmma wait freely (it does not model the products'
// latency: a softmax written before wait_group 0 was scheduled after it, with the tensor cores
// idle meanwhile). A CTA-scope fence is an instruction it does not move work across; the thread
// has no memory traffic of its own in flight there, so it costs a few cycles.
__device__ __forceinline__ void schedule_fence() { asm volatile("fence.acq_rel.cta;" ::: "memory"); }

// Warp-specialized register budgets (sm_90a): a warpgroup gives registers back to the pool
// (dec) or takes them (inc), all its warps executing the same instruction. A kernel launched with
// 384 threads gets 168 a thread; a producer warpgroup at 24 lets two consumers run at 240.
// The budgets of the warp-specialized kernels (384 threads: a producer warpgroup, two consumers).
constexpr int WS_PRODUCER_REGS = 24, WS_CONSUMER_REGS = 240;
static_assert(128 * WS_PRODUCER_REGS + 256 * WS_CONSUMER_REGS <= 384 * 168,
              "the consumers' allocation would wait forever for registers the pool does not have");
template <int REGS>
__device__ __forceinline__ void setmaxnreg_dec() { asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(REGS)); }
template <int REGS>
__device__ __forceinline__ void setmaxnreg_inc() { asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(REGS)); }
// Named barrier `id` (1..15; 0 is __syncthreads') over `threads` threads (a multiple of 32).
__device__ __forceinline__ void named_barrier(unsigned id, unsigned threads) {
  asm volatile("bar.sync %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
// 2^x, flushing subnormal results to zero: one MUFU.EX2 (exp2f adds a range check and two fixups
// for subnormal results, which a softmax never needs).
__device__ __forceinline__ float ex2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
// Arrive at named barrier `id` without waiting (the other side waits with named_barrier).
__device__ __forceinline__ void named_barrier_arrive(unsigned id, unsigned threads) {
  asm volatile("bar.arrive %0, %1;" ::"r"(id), "r"(threads) : "memory");
}
// Generic-proxy writes to shared memory (st.shared) made visible to the async proxy (wgmma, TMA).
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;" ::: "memory"); }
// 16 zero bytes at a shared address.
__device__ __forceinline__ void st_shared_zero16(unsigned addr) {
  asm volatile("st.shared.v4.u32 [%0], {%1, %1, %1, %1};" ::"r"(addr), "r"(0) : "memory");
}

// ---- mbarriers and TMA ------------------------------------------------------------------------

// A tensor map (CUtensorMap) as the host encodes it: 128 opaque bytes, 64-byte aligned. Passed
// inside a __grid_constant__ parameter struct, so TMA reads it from parameter space.
struct alignas(64) TensorMap {
  unsigned long long opaque[16];
};

__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
// Makes initialized barriers visible to the async proxy (TMA) before first use.
__device__ __forceinline__ void fence_barrier_init() {
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
// One arrival that also announces `bytes` of TMA traffic the phase must still receive.
__device__ __forceinline__ void mbar_arrive_expect_tx(unsigned bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
// One plain arrival (a consumer releasing a buffer).
__device__ __forceinline__ void mbar_arrive(unsigned bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
// One arrival from the calling warp (its lane 0), after the warp's work on a buffer is done: the
// empty barriers of the warp-specialized kernels count consumer warps.
__device__ __forceinline__ void warp_arrive(unsigned bar) {
  if ((threadIdx.x & 31) == 0) mbar_arrive(bar);
}
__device__ __forceinline__ bool mbar_try_wait(unsigned bar, unsigned parity) {
  unsigned done;
  asm volatile(
      "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(bar), "r"(parity)
      : "memory");
  return done != 0;
}
// Wait until the barrier's phase of parity `parity` has completed.
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
  while (!mbar_try_wait(bar, parity)) {
  }
}

// A 2-D box of `map` at element coordinates (x: the contiguous dimension, y) into shared memory
// at `dst`, completing `bytes` on barrier `bar`. Out-of-range elements arrive as zeros.
__device__ __forceinline__ void tma_load_2d(unsigned dst, const TensorMap* map, unsigned bar, int x, int y) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];" ::"r"(
          dst),
      "l"(map), "r"(bar), "r"(x), "r"(y)
      : "memory");
}
__device__ __forceinline__ void tma_load_3d(unsigned dst, const TensorMap* map, unsigned bar, int x, int y, int z) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5}], [%2];" ::"r"(
          dst),
      "l"(map), "r"(bar), "r"(x), "r"(y), "r"(z)
      : "memory");
}
__device__ __forceinline__ void tma_load_4d(unsigned dst, const TensorMap* map, unsigned bar, int x, int y, int z,
                                            int w) {
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, %6}], [%2];" ::"r"(
          dst),
      "l"(map), "r"(bar), "r"(x), "r"(y), "r"(z), "r"(w)
      : "memory");
}
__device__ __forceinline__ void tma_prefetch_map(const TensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(map) : "memory");
}

// The 64 fp32 accumulator registers of an m64n128 warpgroup MMA: their operand list
// (read and written) and their place in the instruction text.
#define SM90_ACC64(d) \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]) \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]) \
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]) \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]) \
    "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]) \
    "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]) \
    "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]) \
    "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
#define SM90_ACC64_REGS "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"

// One m64n128k32 e4m3 x e4m3 -> fp32 warpgroup product, both operands from shared memory
// (K-major, 128-byte swizzle). scale_d 0: d = A B (the registers' old values are ignored).
__device__ __forceinline__ void wgmma_m64n128k32(float (&d)[64], unsigned long long desc_a,
                                                 unsigned long long desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
      SM90_ACC64_REGS ", %64, %65, p, 1, 1;\n}\n"
      : SM90_ACC64(d)
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// One m64n128k16 bf16 x bf16 -> fp32 warpgroup product, A and B from shared memory, both K-major
// (128-byte swizzle); scale_d 0: d = A B.
__device__ __forceinline__ void wgmma_m64n128k16_bf16_ss(float (&d)[64], unsigned long long desc_a,
                                                         unsigned long long desc_b, int scale_d) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      SM90_ACC64_REGS ", %64, %65, p, 1, 1, 0, 0;\n}\n"
      : SM90_ACC64(d)
      : "l"(desc_a), "l"(desc_b), "r"(scale_d));
}

// The same product with A from registers (a[0..3]: this thread's 8 bf16 of the 64 x 16 A tile, in
// the accumulator's fragment order) and B from shared memory MN-major (its N dimension contiguous,
// 128-byte swizzle): the P V step of attention, accumulating.
__device__ __forceinline__ void wgmma_m64n128k16_bf16_rs_tb(float (&d)[64], const unsigned (&a)[4],
                                                            unsigned long long desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      SM90_ACC64_REGS ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : SM90_ACC64(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
}

// The 40 accumulators of an m64n80 product (an 80-column tile: head sizes 72 and 80 padded).
#define SM90_ACC40(d) \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
    "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39])
#define SM90_ACC40_REGS "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39}"

// d += A B for an m64n80k16 bf16 product: A from registers, B MN-major from shared memory.
__device__ __forceinline__ void wgmma_m64n80k16_bf16_rs_tb(float (&d)[40], const unsigned (&a)[4],
                                                           unsigned long long desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n80k16.f32.bf16.bf16 "
      SM90_ACC40_REGS ", {%40, %41, %42, %43}, %44, p, 1, 1, 1;\n}\n"
      : SM90_ACC40(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
}

}  // namespace sm90
}  // namespace solbench
