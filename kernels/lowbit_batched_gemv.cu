// lowbit_batched_gemv.cu -- weight-only low-bit linear layer y = x W^T (+ bias) for 1..8 rows of x
// per block, on CUDA cores. Weights in the "gemv" format (128-bit vectors, even/odd interleaved,
// offset binary); maths, format, work split and launch shape: lowbit_batched_gemv.cuh (spec in
// edgec.kernels.packing.repack_gemv). Any M works: blocks along y take MB rows of x each.
//
// Entry points: lbgemv_<x dtype>_w<bits>_m<MB>, x dtype f16 (HFMA2, fp32 per-word accumulation) or
// f32 (FFMA), bits 8/4/2/1, MB = 1, 2, 4, 8 (ops picks the
// smallest MB >= M, up to 8; M = 3 runs MB = 4 with one row masked; f16 2-bit and f32 1-bit stop at MB = 4).
//   args: (const T* x [M, KP], const uint4* w [N, kvec], const float* scales [N],
//          const float* bias_or_NULL [N], T* y [M, N], int M, int N, int kvec, int kt)
//
// Compile: nvcc -cubin -arch=sm_90 -Xptxas -v -I kernels kernels/lowbit_batched_gemv.cu
#include "lowbit_batched_gemv.cuh"

#define LBG_ALL_MB(DT, T, BITS)                                                                   \
  LBG_ENTRY(lbgemv_##DT##_w##BITS##_m1, BITS, 1, T) LBG_ENTRY(lbgemv_##DT##_w##BITS##_m2, BITS, 2, T) \
  LBG_ENTRY(lbgemv_##DT##_w##BITS##_m4, BITS, 4, T) LBG_ENTRY(lbgemv_##DT##_w##BITS##_m8, BITS, 8, T)

LBG_ALL_MB(f16, __half, 8)
LBG_ALL_MB(f16, __half, 4)
// 2 bits: no MB = 8 (its 8 dequantized pairs per word and row spill there); M > 4 runs MB = 4 blocks
LBG_ENTRY(lbgemv_f16_w2_m1, 2, 1, __half) LBG_ENTRY(lbgemv_f16_w2_m2, 2, 2, __half)
LBG_ENTRY(lbgemv_f16_w2_m4, 2, 4, __half)
LBG_ALL_MB(f16, __half, 1)
LBG_ALL_MB(f32, float, 8)
LBG_ALL_MB(f32, float, 4)
LBG_ALL_MB(f32, float, 2)
// fp32 1-bit: no MB = 8 (32 fp32 x values per word and row of x spill there); M > 4 runs MB = 4 blocks
LBG_ENTRY(lbgemv_f32_w1_m1, 1, 1, float) LBG_ENTRY(lbgemv_f32_w1_m2, 1, 2, float)
LBG_ENTRY(lbgemv_f32_w1_m4, 1, 4, float)
