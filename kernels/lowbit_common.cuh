// lowbit_common.cuh -- shared body of lowbit_gemv.cu and lowbit_gemm_smallbatch.cu.
//
// Computes   y[m, o] = scales[o] * sum_k q[o, k] * x[m, k]  (+ bias[o])      i.e. y = x W^T
// for weights W[o, k] = scales[o] * q[o, k] packed at BITS = 8, 4, 2 or 1 bits per weight.
//
// Weight format (edgec.kernels.packing.pack_lowbit writes it; its docstring is the spec):
//   words [N, words_per_row] uint32, words_per_row = ceil(K * BITS / 32); each row padded with zero
//   bits to a whole 32-bit word, so a row starts on a word boundary and rows are independent.
//   Element k of row o lives in word k / (32/BITS), bits [BITS*j, BITS*j + BITS), j = k % (32/BITS)
//   (LSB first; for BITS = 8 this is exactly the little-endian int8 array).
//   BITS = 8, 4, 2: the field is q in two's complement, |q| <= 2^(BITS-1) - 1 (2 bits = ternary).
//   BITS = 1: bit 1 -> q = +1, bit 0 -> q = -1 (BinaryConnect's +-alpha with alpha = scales[o]).
//   scales [N] float32 per output channel; bias [N] float32 or NULL. Accumulation is fp32.
// x [M, K], y [M, N] row-major, float or half (fp32 accumulation either way).
//
// Work split: one warp per output row o; lane l reads words l, l+32, ... of the row (a warp reads
// 128 contiguous bytes of weights per step: coalesced), decodes the 32/BITS weights of each word in
// registers and multiplies them with the matching x values (read through the read-only cache: every
// warp of the grid reuses them). The 32 partial sums are then combined with a __shfl_down_sync tree
// and lane 0 writes the result. MB rows of x are handled per warp (MB accumulators), so each weight
// word is fetched and decoded once per MB activations: MB = 1 is the batch-1 GEMV, MB = 4 the
// small-batch path.
//
// Launch shape: block = (LB_WARPS * 32, 1, 1); grid = (ceil(N / LB_WARPS), ceil(M / MB), 1).
// __launch_bounds__(128, 4): see sparse_conv2d_csr.cu (without the min-blocks hint ptxas capped sm_90
// at 32 registers and spilled).
#pragma once

#ifndef EDGEC_CPU_EMU
#include <cuda_fp16.h>
#endif

#define LB_WARPS 4

__device__ __forceinline__ float lb_load(const float* p) { return __ldg(p); }
__device__ __forceinline__ float lb_load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void lb_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void lb_store(__half* p, float v) { *p = __float2half(v); }

// Weight j (0-based, LSB first) of a packed word, as a float in {-qmax..qmax} (or +-1 for 1 bit).
template <int BITS>
__device__ __forceinline__ float lb_decode(unsigned word, int j) {
  if constexpr (BITS == 1) {
    return ((word >> j) & 1u) ? 1.f : -1.f;
  } else {
    // move the field to the top bits, then an arithmetic shift sign-extends it
    return (float)((int)(word << (32 - BITS * (j + 1))) >> (32 - BITS));
  }
}

template <int BITS, int MB, typename T>
__device__ void lowbit_rows(const T* __restrict__ x, const unsigned* __restrict__ w,
                            const float* __restrict__ scales, const float* __restrict__ bias,
                            T* __restrict__ y, int M, int N, int K, int words_per_row) {
  constexpr int EPW = 32 / BITS;  // weights per 32-bit word
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * LB_WARPS + (threadIdx.x >> 5);
  const int m0 = blockIdx.y * MB;
  if (row >= N) return;  // the whole warp leaves together; this kernel has no __syncthreads

  const unsigned* wr = w + (size_t)row * words_per_row;
  const T* xr[MB];
  bool live[MB];
#pragma unroll
  for (int m = 0; m < MB; ++m) {
    live[m] = m0 + m < M;
    xr[m] = x + (size_t)(live[m] ? m0 + m : 0) * K;  // dead rows alias row 0, never accumulated
  }
  float acc[MB];
#pragma unroll
  for (int m = 0; m < MB; ++m) acc[m] = 0.f;

  for (int wi = lane; wi < words_per_row; wi += 32) {
    const unsigned word = __ldg(wr + wi);
    const int k0 = wi * EPW;
    if (k0 + EPW <= K) {  // full word; unrolled by 8 so MB x 32 x-values are not all held live
#pragma unroll 8
      for (int j = 0; j < EPW; ++j) {
        const float q = lb_decode<BITS>(word, j);
#pragma unroll
        for (int m = 0; m < MB; ++m)
          if (live[m]) acc[m] = fmaf(q, lb_load(xr[m] + k0 + j), acc[m]);
      }
    } else {  // the row's last word: only K - k0 weights are real, the rest is padding
      for (int j = 0; j < K - k0; ++j) {
        const float q = lb_decode<BITS>(word, j);
#pragma unroll
        for (int m = 0; m < MB; ++m)
          if (live[m]) acc[m] = fmaf(q, lb_load(xr[m] + k0 + j), acc[m]);
      }
    }
  }

  const float scale = scales[row];
  const float b = bias != nullptr ? bias[row] : 0.f;
#pragma unroll
  for (int m = 0; m < MB; ++m) {
    float v = acc[m];
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    if (lane == 0 && live[m]) lb_store(y + (size_t)(m0 + m) * N + row, fmaf(v, scale, b));
  }
}

#define LOWBIT_ENTRY(NAME, BITS, MB, T)                                                       \
  extern "C" __global__ void __launch_bounds__(LB_WARPS * 32, 4)                               \
      NAME(const T* x, const unsigned* w, const float* scales, const float* bias, T* y, int M, \
           int N, int K, int words_per_row) {                                                 \
    lowbit_rows<BITS, MB, T>(x, w, scales, bias, y, M, N, K, words_per_row);                  \
  }
