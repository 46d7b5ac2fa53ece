// Shared device helpers of solbench's JIT CUDA kernels: dtype tags with fp32 conversion,
// vector loads and stores, and programmatic dependent launch (PDL).
//
// No CUDA toolkit header is included: the bf16 / fp16 conversions are single PTX instructions,
// so NVRTC compiles these sources with nothing but its own built-ins (the nvrtc wheel ships no
// cuda_fp16.h / cuda_bf16.h).
#pragma once

namespace solbench {

typedef long long i64;

// ---- dtypes: a tag per torch dtype, its storage type and its fp32 conversions -------------------
struct bf16 {};
struct fp16 {};
struct fp32 {};

template <typename T> struct DType;

template <> struct DType<bf16> {
  typedef unsigned short storage;
  // bf16 is the top half of an fp32: widening is exact and is a shift.
  static __device__ __forceinline__ float to_float(storage s) { return __uint_as_float(((unsigned)s) << 16); }
  static __device__ __forceinline__ storage from_float(float f) {
    storage s;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(s) : "f"(f));  // round to nearest even, NaN kept (sm_80+)
    return s;
  }
  // Two values in one instruction: lo from a, hi from b.
  static __device__ __forceinline__ unsigned pack2(float a, float b) {
    unsigned r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(b), "f"(a));
    return r;
  }
};

template <> struct DType<fp16> {
  typedef unsigned short storage;
  static __device__ __forceinline__ float to_float(storage s) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(s));
    return f;
  }
  static __device__ __forceinline__ storage from_float(float f) {
    storage s;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(s) : "f"(f));
    return s;
  }
  static __device__ __forceinline__ unsigned pack2(float a, float b) {
    unsigned r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(b), "f"(a));
    return r;
  }
};

template <> struct DType<fp32> {
  typedef float storage;
  static __device__ __forceinline__ float to_float(storage s) { return s; }
  static __device__ __forceinline__ storage from_float(float f) { return f; }
};

// ---- vectors: VEC elements moved by one load / store of VEC * sizeof(storage) bytes --------------
template <int BYTES> struct RawVec;
template <> struct RawVec<16> { typedef uint4 type; };
template <> struct RawVec<8> { typedef uint2 type; };
template <> struct RawVec<4> { typedef unsigned type; };
template <> struct RawVec<2> { typedef unsigned short type; };

template <typename S, int VEC> union Pack {
  typedef typename RawVec<sizeof(S) * VEC>::type raw_t;
  raw_t raw;
  S e[VEC];
};

// The caller guarantees alignment to the vector's size (the host picks VEC from the pointers
// and strides): the load / store is then one instruction. Loads go through the read-only path
// (ld.global.nc): inputs never alias the output (the host checks).
template <typename S, int VEC>
__device__ __forceinline__ Pack<S, VEC> load_vec(const S* __restrict__ p) {
  Pack<S, VEC> v;
  v.raw = __ldg(reinterpret_cast<const typename Pack<S, VEC>::raw_t*>(p));
  return v;
}

template <typename S, int VEC>
__device__ __forceinline__ void store_vec(S* __restrict__ p, const Pack<S, VEC>& v) {
  *reinterpret_cast<typename Pack<S, VEC>::raw_t*>(p) = v.raw;
}

// Round VEC fp32 values to T and store them as one vector; 16-bit types convert in pairs.
template <typename T, int VEC>
__device__ __forceinline__ void store_floats(typename DType<T>::storage* __restrict__ p, const float (&y)[VEC]) {
  typedef typename DType<T>::storage S;
  Pack<S, VEC> v;
  if constexpr (sizeof(S) == 2 && VEC % 2 == 0) {
    unsigned* w = reinterpret_cast<unsigned*>(v.e);
#pragma unroll
    for (int i = 0; i < VEC / 2; ++i) w[i] = DType<T>::pack2(y[2 * i], y[2 * i + 1]);
  } else {
#pragma unroll
    for (int i = 0; i < VEC; ++i) v.e[i] = DType<T>::from_float(y[i]);
  }
  store_vec<S, VEC>(p, v);
}

// ---- programmatic dependent launch (sm_90+) -------------------------------------------------------
// A kernel launched with the programmatic-serialization attribute may start before its
// predecessor has finished: it must wait before touching global memory (reads and writes alike).
template <bool PDL> __device__ __forceinline__ void pdl_wait() {
  if constexpr (PDL) asm volatile("griddepcontrol.wait;" ::: "memory");
}
// Lets the next PDL kernel in the stream be scheduled once every block of this one has got here;
// that kernel's own pdl_wait still waits for this grid to complete and flush its writes.
template <bool PDL> __device__ __forceinline__ void pdl_launch_dependents() {
  if constexpr (PDL) asm volatile("griddepcontrol.launch_dependents;" :::);
}

}  // namespace solbench
