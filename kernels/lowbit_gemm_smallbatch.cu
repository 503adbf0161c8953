// lowbit_gemm_smallbatch.cu -- small-batch low-bit weight-only linear layer: y = x W^T (+ bias).
//
// Same maths and weight format as lowbit_gemv.cu (see lowbit_common.cuh), but each warp keeps
// 4 accumulators and applies every decoded weight word to 4 rows of x, so weights are read and
// decoded once per 4 activations. Meant for 2 <= M <= ~32 (decode-bound at larger M, where
// dequantizing once and calling cuBLAS wins).
//
// Entry points (name = lowbit_gemm_<activation dtype>_b<bits>):
//   lowbit_gemm_f32_b8 / _b4 / _b2 / _b1, lowbit_gemm_f16_b8 / _b4 / _b2 / _b1
//   args: (const T* x, const uint32* w, const float* scales, const float* bias_or_NULL, T* y,
//          int M, int N, int K, int words_per_row)
//
// Launch shape: block = (128, 1, 1) = 4 warps = 4 output rows; grid = (ceil(N / 4), ceil(M / 4), 1).
//
// Compile: nvcc -cubin -arch=sm_87 -Xptxas -v -I kernels kernels/lowbit_gemm_smallbatch.cu
#include "lowbit_common.cuh"

#define LB_MB 4

LOWBIT_ENTRY(lowbit_gemm_f32_b8, 8, LB_MB, float)
LOWBIT_ENTRY(lowbit_gemm_f32_b4, 4, LB_MB, float)
LOWBIT_ENTRY(lowbit_gemm_f32_b2, 2, LB_MB, float)
LOWBIT_ENTRY(lowbit_gemm_f32_b1, 1, LB_MB, float)
LOWBIT_ENTRY(lowbit_gemm_f16_b8, 8, LB_MB, __half)
LOWBIT_ENTRY(lowbit_gemm_f16_b4, 4, LB_MB, __half)
LOWBIT_ENTRY(lowbit_gemm_f16_b2, 2, LB_MB, __half)
LOWBIT_ENTRY(lowbit_gemm_f16_b1, 1, LB_MB, __half)
