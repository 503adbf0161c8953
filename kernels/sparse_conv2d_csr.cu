// sparse_conv2d_csr.cu -- 2-D convolution with unstructured-sparse (pruned) weights, direct gather.
//
// Computes   y[n, co, oh, ow] = bias[co] + sum_{(c,r,s) nonzero in row co} w[co,c,r,s] *
//                               x[n, c, oh*stride_h - pad_h + r*dil_h, ow*stride_w - pad_w + s*dil_w]
// with out-of-image taps reading zero (zero padding). groups = 1. No im2col buffer is ever built.
//
// Layouts (all contiguous, row-major):
//   x       [N, C, H, W]          float (sparse_conv2d_csr_f32) or half (sparse_conv2d_csr_f16)
//   y       [N, Cout, OH, OW]     same type as x
//   weights CSR over the flattened filter of each output channel (a row = one output channel):
//     row_ptr [Cout + 1] int32    nonzeros of row co are [row_ptr[co], row_ptr[co+1])
//     col_idx [nnz]      int32    k = (c * KH + r) * KW + s, strictly increasing within a row
//     values  [nnz]      float32  (fp32 even for the f16 variant: weights are few, precision free)
//   bias    [Cout] float32, or NULL for no bias. Accumulation is always fp32.
//
// Why CSR over (c, r, s) and not a conv-specific format: it is the standard, validated format
// (scipy-compatible), handles any sparsity pattern incl. empty rows, and the one costly part of
// using it -- turning k into (c, r, s) and then into an input offset -- is done ONCE per nonzero
// per block into shared memory (`s_off`, `s_dr`, `s_ds`), then reused by all SC_THREADS output
// pixels of the block. The inner loop is one shared-memory read, one bounds test and one FMA.
//
// Launch shape: block = (SC_THREADS, 1, 1); grid = (ceil(OH*OW / SC_THREADS), Cout, N).
//   One block = SC_THREADS consecutive output pixels of one (n, co) plane; one thread = one pixel,
//   so neighbouring threads read neighbouring input columns (coalesced for stride 1).
//   Nonzeros are staged through shared memory SC_THREADS at a time (any nnz per row works).
//   __launch_bounds__(128, 4): with the thread count alone, CUDA 13's ptxas capped sm_90 at 32
//   registers and spilled; asking for 4 resident blocks allows up to 128 (uses ~40-56).
//   Limits: N, Cout <= 65535 (grid y/z), C*H*W and OH*OW < 2^31, KH, KW <= 65535.
//
// Compile: nvcc -cubin -arch=sm_87 -Xptxas -v kernels/sparse_conv2d_csr.cu
//   (edgec.kernels.loader does this at run time, cached; CPU check: cpu_harness/ + tests/kernels).
#ifndef EDGEC_CPU_EMU
#include <cuda_fp16.h>
#endif

#define SC_THREADS 128

__device__ __forceinline__ float sc_load(const float* p) { return *p; }
__device__ __forceinline__ float sc_load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void sc_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void sc_store(__half* p, float v) { *p = __float2half(v); }

template <typename T>
__device__ void sparse_conv2d_csr_impl(const T* __restrict__ x, const int* __restrict__ row_ptr,
                                       const int* __restrict__ col_idx,
                                       const float* __restrict__ values,
                                       const float* __restrict__ bias, T* __restrict__ y,
                                       int C, int H, int W, int Cout, int KH, int KW, int OH,
                                       int OW, int stride_h, int stride_w, int pad_h, int pad_w,
                                       int dil_h, int dil_w) {
  __shared__ float s_val[SC_THREADS];
  __shared__ int s_off[SC_THREADS];  // c*H*W + r*dil_h*W + s*dil_w: offset of the tap in image n
  __shared__ int s_dr[SC_THREADS];   // r*dil_h, for the row bounds test
  __shared__ int s_ds[SC_THREADS];   // s*dil_w, for the column bounds test

  const int co = blockIdx.y;
  const int n = blockIdx.z;
  const int p = blockIdx.x * SC_THREADS + threadIdx.x;  // output pixel of this thread
  const bool active = p < OH * OW;
  const int oh = active ? p / OW : 0;
  const int ow = active ? p - oh * OW : 0;
  const int ih0 = oh * stride_h - pad_h;  // input row/col of tap (0, 0); may be negative
  const int iw0 = ow * stride_w - pad_w;
  const int base = ih0 * W + iw0;
  const T* xn = x + (size_t)n * C * H * W;
  const int khw = KH * KW;

  float acc = 0.f;
  const int begin = row_ptr[co], end = row_ptr[co + 1];
  // Every thread runs every chunk (no early return): all of them take part in __syncthreads.
  for (int chunk = begin; chunk < end; chunk += SC_THREADS) {
    const int j = chunk + threadIdx.x;
    if (j < end) {
      const int k = col_idx[j];
      const int c = k / khw;
      const int rs = k - c * khw;
      const int r = rs / KW;
      const int s = rs - r * KW;
      s_val[threadIdx.x] = values[j];
      s_dr[threadIdx.x] = r * dil_h;
      s_ds[threadIdx.x] = s * dil_w;
      s_off[threadIdx.x] = c * H * W + r * dil_h * W + s * dil_w;
    }
    __syncthreads();
    const int count = min(SC_THREADS, end - chunk);
    if (active) {
      for (int t = 0; t < count; ++t) {
        const int ih = ih0 + s_dr[t];
        const int iw = iw0 + s_ds[t];
        // one unsigned compare per axis covers both < 0 and >= size
        if ((unsigned)ih < (unsigned)H && (unsigned)iw < (unsigned)W)
          acc = fmaf(s_val[t], sc_load(xn + (base + s_off[t])), acc);
      }
    }
    __syncthreads();  // the next chunk overwrites the staged nonzeros
  }
  if (active) {
    if (bias != nullptr) acc += bias[co];
    sc_store(y + ((size_t)n * Cout + co) * OH * OW + p, acc);
  }
}

extern "C" __global__ void __launch_bounds__(SC_THREADS, 4)
sparse_conv2d_csr_f32(const float* x, const int* row_ptr, const int* col_idx, const float* values,
                      const float* bias, float* y, int C, int H, int W, int Cout, int KH, int KW,
                      int OH, int OW, int stride_h, int stride_w, int pad_h, int pad_w, int dil_h,
                      int dil_w) {
  sparse_conv2d_csr_impl<float>(x, row_ptr, col_idx, values, bias, y, C, H, W, Cout, KH, KW, OH,
                                OW, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w);
}

extern "C" __global__ void __launch_bounds__(SC_THREADS, 4)
sparse_conv2d_csr_f16(const __half* x, const int* row_ptr, const int* col_idx,
                      const float* values, const float* bias, __half* y, int C, int H, int W,
                      int Cout, int KH, int KW, int OH, int OW, int stride_h, int stride_w,
                      int pad_h, int pad_w, int dil_h, int dil_w) {
  sparse_conv2d_csr_impl<__half>(x, row_ptr, col_idx, values, bias, y, C, H, W, Cout, KH, KW, OH,
                                 OW, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w);
}
