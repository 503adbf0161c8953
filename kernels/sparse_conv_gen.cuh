// sparse_conv_gen.cuh -- skeleton of the per-layer generated sparse conv2d (SparseRT-style specialisation).
//
// edgec/kernels/sparse_codegen.py writes, for ONE layer (its nonzero weights, shapes, stride/padding/dilation
// and a tiling), a .cu file of the form
//     #define SCG_T __half            (or float)         activation type of x and y
//     #define SCG_C / SCG_H / SCG_W   input channels and size;  SCG_COUT / SCG_OH / SCG_OW: output
//     #define SCG_SH / SCG_SW / SCG_PH / SCG_PW          stride and padding
//     #define SCG_TH / SCG_TW         output tile of one block (one thread = one output pixel)
//     #define SCG_TH_IN / SCG_TW_IN   its haloed input tile ((TH - 1) * SH + (KH - 1) * DH + 1, same for W)
//     #define SCG_CC / SCG_CHUNKS     input channels staged in shared memory per step, number of steps
//     #define SCG_G / SCG_GROUPS      output channels per thread (accumulators in registers), number of groups
//     #define SCG_GPB                 groups per block: threads [g * TH * TW, (g + 1) * TH * TW) of a block run
//                                     group blockIdx.y * GPB + g on the same input tile (TH * TW % 32 == 0 when
//                                     GPB > 1, so every warp runs one group's code: no divergence)
//     __device__ __forceinline__ void scg_compute(int step, int group, const float* tile, float* acc) {...}
//     #include "sparse_conv_gen.cuh"
// where scg_compute is straight-line code: for every input channel of the step and every tap (r, s) that any
// nonzero of the group uses, ONE shared-memory load `v = tile[c * TH_IN * TW_IN + r * DH * TW_IN + s * DW]`
// followed by one FFMA per nonzero w[co, c, r, s] of the group, with w as an immediate:
//     acc[j] = fmaf(v, 0x1.5p-3f, acc[j]);
// So each input value is loaded once per tap and FMA'd into every output channel that uses it; the G output
// channels of a thread live in registers (acc[] is indexed by constants only); zero weights cost nothing.
//
// Computes y[n, co, oh, ow] = bias[co] + sum w[co, c, r, s] * x[n, c, oh * SH - PH + r * DH, ow * SW - PW + s * DW]
// (zero padding), x [N, C, H, W] and y [N, COUT, OH, OW] contiguous, fp32 accumulation, bias fp32 [COUT] or NULL.
//
// Launch: block = (SCG_TH * SCG_TW * SCG_GPB, 1, 1); grid = (ceil(OH / TH) * ceil(OW / TW), GROUPS / GPB, N).
// Per step the block stages x[n, step * CC : step * CC + CC, tile rows, tile cols] (zero outside the image) in
// shared memory as fp32 (one load + convert per element; a thread keeps one tile column when the block has at
// least TW_IN threads, so the per-element work is a row step, a bounds test, the load and the store), syncs, runs scg_compute, syncs. Loading the tile once
// for all GPB groups of the block is what keeps the staging cost small next to the FFMAs.
#ifndef EDGEC_CPU_EMU
#include <cuda_fp16.h>
#endif

__device__ __forceinline__ float scg_load(const float* p) { return *p; }
__device__ __forceinline__ float scg_load(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void scg_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void scg_store(__half* p, float v) { *p = __float2half(v); }

#define SCG_PIX (SCG_TH * SCG_TW)
#define SCG_THREADS (SCG_PIX * SCG_GPB)
#define SCG_TILE (SCG_TH_IN * SCG_TW_IN)
#define SCG_TILES_W ((SCG_OW + SCG_TW - 1) / SCG_TW)
#define SCG_COL_STEP (SCG_THREADS < SCG_TW_IN ? SCG_THREADS : SCG_TW_IN)
#define SCG_ROWS_PER_PASS (SCG_THREADS / SCG_COL_STEP)  // tile rows the block stages per pass
#define SCG_PASSES ((SCG_CC * SCG_TH_IN + SCG_ROWS_PER_PASS - 1) / SCG_ROWS_PER_PASS)

// Resident blocks asked of ptxas: few enough to allow ~168 registers per thread (32-64 accumulators plus hoisted
// loads). With the thread count alone, CUDA 13's ptxas capped small blocks at 32-40 registers on sm_90 and
// spilled the accumulators.
#define SCG_MIN_BLOCKS (SCG_THREADS * 168 >= 65536 ? 1 : 65536 / (SCG_THREADS * 168))

extern "C" __global__ void __launch_bounds__(SCG_THREADS, SCG_MIN_BLOCKS)
sparse_conv_gen(const SCG_T* __restrict__ x, const float* __restrict__ bias, SCG_T* __restrict__ y) {
  __shared__ float tile[SCG_CC * SCG_TILE];
  const int tid = threadIdx.x;
  const int gl = tid / SCG_PIX, p = tid - gl * SCG_PIX;  // group within the block, pixel within the tile
  const int ty = p / SCG_TW, tx = p - ty * SCG_TW;
  const int tile_y = blockIdx.x / SCG_TILES_W, tile_x = blockIdx.x - tile_y * SCG_TILES_W;
  const int group = blockIdx.y * SCG_GPB + gl, n = blockIdx.z;
  const int oh = tile_y * SCG_TH + ty, ow = tile_x * SCG_TW + tx;
  const int ih0 = tile_y * SCG_TH * SCG_SH - SCG_PH, iw0 = tile_x * SCG_TW * SCG_SW - SCG_PW;
  const SCG_T* xn = x + (size_t)n * SCG_C * SCG_H * SCG_W;
  const float* my_tile = tile + ty * SCG_SH * SCG_TW_IN + tx * SCG_SW;  // tap (0, 0) of channel 0

  // the tile column(s) this thread stages: one when the block has at least TW_IN threads
  const int lrow = tid / SCG_COL_STEP, lcol0 = tid - lrow * SCG_COL_STEP;
  const bool stager = lrow < SCG_ROWS_PER_PASS;

  float acc[SCG_G];
#pragma unroll
  for (int j = 0; j < SCG_G; ++j) acc[j] = 0.f;

  for (int step = 0; step < SCG_CHUNKS; ++step) {
    if (step > 0) __syncthreads();  // everyone is done reading the previous step's tile
    if (stager) {
      // fully unrolled (a compile-time pass count): every load of the step is in flight before the first store
#pragma unroll
      for (int pass = 0; pass < SCG_PASSES; ++pass) {
        const int rr = lrow + pass * SCG_ROWS_PER_PASS;  // rr = channel * TH_IN + row
        if (rr >= SCG_CC * SCG_TH_IN) break;
        const int cl = rr / SCG_TH_IN, r = rr - cl * SCG_TH_IN;
        const int c = step * SCG_CC + cl, ih = ih0 + r;
        const bool row_ok = c < SCG_C && (unsigned)ih < (unsigned)SCG_H;
#if SCG_THREADS >= SCG_TW_IN  // one column per thread: straight-line loads
        {
          const int lcol = lcol0;
#else
        for (int lcol = lcol0; lcol < SCG_TW_IN; lcol += SCG_COL_STEP) {
#endif
          const int iw = iw0 + lcol;
          float v = 0.f;
          if (row_ok && (unsigned)iw < (unsigned)SCG_W) v = scg_load(xn + ((size_t)c * SCG_H + ih) * SCG_W + iw);
          tile[rr * SCG_TW_IN + lcol] = v;
        }
      }
    }
    __syncthreads();
    if (group < SCG_GROUPS) scg_compute(step, group, my_tile, acc);
  }

  if (group < SCG_GROUPS && oh < SCG_OH && ow < SCG_OW) {
#pragma unroll
    for (int j = 0; j < SCG_G; ++j) {
      const int co = group * SCG_G + j;
      if (co < SCG_COUT) {
        const float b = bias != nullptr ? bias[co] : 0.f;
        scg_store(y + (((size_t)n * SCG_COUT + co) * SCG_OH + oh) * SCG_OW + ow, acc[j] + b);
      }
    }
  }
}
