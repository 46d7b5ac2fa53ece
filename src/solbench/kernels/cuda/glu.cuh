// The GLU family: out[r, c] = act(gate[r, c]) * (up[r, c] + up_shift), with optional clamping.
//
// Layouts: halves reads [gate | up] (vLLM / SGLang silu_and_mul); interleaved reads
// [g0, u0, g1, u1, ...] (gpt-oss). All math in fp32, one rounding to the output dtype.
// With a limit, the gate is clamped above at limit and up to [-limit, limit] first.
#pragma once
#include "common.cuh"

namespace solbench {

// Activation ids: the same numbers as the Triton kernel's ACT_MODES.
enum GluAct { kSilu = 0, kGelu = 1, kGeluTanh = 2, kRelu = 3 };

// Passed by value as the kernel's one parameter: the host fills the same layout with ctypes.
struct GluParams {
  const void* x;
  void* out;
  i64 rows;
  i64 d;           // output columns; x rows hold 2 * d values
  i64 x_stride;    // elements between rows of x
  i64 out_stride;  // elements between rows of out
  float alpha;     // silu / swish: g * sigmoid(alpha * g)
  float limit;     // used when HAS_LIMIT
  float up_shift;
};

__device__ __forceinline__ float sigmoid(float z) {
  // Under --use_fast_math expf and the division become ex2.approx and a fast reciprocal.
  return 1.0f / (1.0f + expf(-z));
}

template <int ACT>
__device__ __forceinline__ float activate(float g, float alpha) {
  if constexpr (ACT == kSilu) {
    return g * sigmoid(alpha * g);
  } else if constexpr (ACT == kGelu) {
    return 0.5f * g * (1.0f + erff(g * 0.70710678118654752f));
  } else if constexpr (ACT == kGeluTanh) {
    // 0.5 (1 + tanh z) == sigmoid(2 z): exact, and cheaper than tanhf.
    const float z = 0.79788456080286536f * (g + 0.044715f * g * g * g);
    return g * sigmoid(2.0f * z);
  } else {
    return g < 0.0f ? 0.0f : g;  // NaN stays NaN, as torch's relu
  }
}

template <int ACT, bool HAS_LIMIT>
__device__ __forceinline__ float glu_one(float g, float u, const GluParams& p) {
  if constexpr (HAS_LIMIT) {
    // Comparisons rather than fminf / fmaxf, so that a NaN input stays NaN as with torch.clamp.
    g = g > p.limit ? p.limit : g;
    u = u > p.limit ? p.limit : (u < -p.limit ? -p.limit : u);
  }
  return activate<ACT>(g, p.alpha) * (u + p.up_shift);
}

// Block (TX, TY): TY rows per block, TX threads across a row; each thread owns VEC consecutive
// outputs of its row. Grid (ceil(rows / TY), ceil(d / (VEC * TX))). The host picks VEC: 16 bytes
// when the pointers, the strides and d allow it, else the widest aligned width, down to scalar.
template <typename T, int ACT, bool INTERLEAVED, bool HAS_LIMIT, int VEC, bool PDL>
__global__ void __launch_bounds__(256) glu_kernel(const GluParams p) {
  typedef typename DType<T>::storage S;
  pdl_wait<PDL>();
  pdl_launch_dependents<PDL>();
  const i64 row = (i64)blockIdx.x * blockDim.y + threadIdx.y;
  const i64 col = ((i64)blockIdx.y * blockDim.x + threadIdx.x) * VEC;
  if (row >= p.rows || col >= p.d) return;
  const S* __restrict__ xr = static_cast<const S*>(p.x) + row * p.x_stride;
  S* __restrict__ outr = static_cast<S*>(p.out) + row * p.out_stride;
  float y[VEC];
  if constexpr (INTERLEAVED) {
    const Pack<S, VEC> a = load_vec<S, VEC>(xr + 2 * col);
    const Pack<S, VEC> b = load_vec<S, VEC>(xr + 2 * col + VEC);
#pragma unroll
    for (int i = 0; i < VEC; ++i) {
      // Pairs (g, u) lie at 2i, 2i + 1 of the 2 * VEC values a, b hold together.
      const S gs = (2 * i < VEC) ? a.e[2 * i] : b.e[2 * i - VEC];
      const S us = (2 * i + 1 < VEC) ? a.e[2 * i + 1] : b.e[2 * i + 1 - VEC];
      y[i] = glu_one<ACT, HAS_LIMIT>(DType<T>::to_float(gs), DType<T>::to_float(us), p);
    }
  } else {
    const Pack<S, VEC> g = load_vec<S, VEC>(xr + col);
    const Pack<S, VEC> u = load_vec<S, VEC>(xr + p.d + col);
#pragma unroll
    for (int i = 0; i < VEC; ++i)
      y[i] = glu_one<ACT, HAS_LIMIT>(DType<T>::to_float(g.e[i]), DType<T>::to_float(u.e[i]), p);
  }
  store_floats<T, VEC>(outr + col, y);
}

}  // namespace solbench
