// lowbit_gemv.cu -- batch-1 (GEMV) low-bit weight-only linear layer: y = x W^T (+ bias).
//
// x [M, K] (M = 1 is the case this file is tuned for; any M works, one grid row per x row),
// W packed at 8/4/2/1 bits with a per-output-channel fp32 scale; y [M, N]. Exact format, work
// split and the shared body: lowbit_common.cuh (spec in edgec.kernels.packing.pack_lowbit).
//
// Entry points (name = lowbit_gemv_<activation dtype>_b<bits>):
//   lowbit_gemv_f32_b8 / _b4 / _b2 / _b1     x, y float
//   lowbit_gemv_f16_b8 / _b4 / _b2 / _b1     x, y half (fp32 accumulation)
//   args: (const T* x, const uint32* w, const float* scales, const float* bias_or_NULL, T* y,
//          int M, int N, int K, int words_per_row)
//
// Launch shape: block = (128, 1, 1) = 4 warps = 4 output rows; grid = (ceil(N / 4), M, 1).
//   One warp per output row, warp-shuffle reduction; no shared memory, no __syncthreads.
//
// Compile: nvcc -cubin -arch=sm_87 -Xptxas -v -I kernels kernels/lowbit_gemv.cu
#include "lowbit_common.cuh"

LOWBIT_ENTRY(lowbit_gemv_f32_b8, 8, 1, float)
LOWBIT_ENTRY(lowbit_gemv_f32_b4, 4, 1, float)
LOWBIT_ENTRY(lowbit_gemv_f32_b2, 2, 1, float)
LOWBIT_ENTRY(lowbit_gemv_f32_b1, 1, 1, float)
LOWBIT_ENTRY(lowbit_gemv_f16_b8, 8, 1, __half)
LOWBIT_ENTRY(lowbit_gemv_f16_b4, 4, 1, __half)
LOWBIT_ENTRY(lowbit_gemv_f16_b2, 2, 1, __half)
LOWBIT_ENTRY(lowbit_gemv_f16_b1, 1, 1, __half)
