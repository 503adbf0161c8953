// lowbit_mma_gemm.cu -- weight-only low-bit linear layer y = x W^T (+ bias) for 1..16 rows of fp16 x on
// tensor cores: mma.sync.aligned.m16n8k16 (fp16 inputs, fp32 accumulation), weights dequantized in
// registers with the LOP3/PRMT magic numbers of lowbit_batched_gemv.cuh (Marlin's design, without its
// cp.async pipeline: each weight is used once here, so weights stream straight into registers with
// 128-bit loads, two in flight per warp and unrolled by 2). Same code for sm_80+ (sm_87 Jetson Orin, sm_90).
//
// Weight format "mma" (edgec.kernels.packing.repack_mma; a re-arrangement of the "gemv" words):
//   words [NP / 8, KV, 32, 4] uint32 (NP = N padded to 16, KV = ceil(kvec_gemv / 4)): for the n8 tile
//   n8, vector kv and lane l = g * 4 + t, word j is the gemv word of row n8 * 8 + g holding k0 = c*CK +
//   t*EPW .. + EPW - 1, c = 4 * kv + j, CK = 4 * EPW (EPW = 32 / BITS). Dequantized, that word gives the
//   lane's NP = 16/BITS half2 pairs (k0+2p, k0+2p+1); pairs (2i, 2i+1) are the B fragment {b0, b1} of
//   tile i (i < NP/2) of chunk c.
// The mma k-order is a permutation of the physical k: lane t's a0/a2 (rows g) and a1/a3 (rows g+8) of
//   tile i are the same pairs 2i, 2i+1 of x[row][k0 .. k0+EPW-1], loaded with one 64/128-bit load; as B
//   uses the same pairs, every product x[m][k] * W[n][k] is summed exactly once.
// x [M, KP] fp16 row-major, KP = KV * 4 * CK, zero-padded past K by the caller; 1 <= M <= 16 (rows >= M
//   are zeros in A). y [M, N] fp16; scales [N] fp32, bias [N] fp32 or NULL.
//
// Work split: block = 8 warps = one n16 slice (two n8 tiles per warp: every A fragment feeds two
//   mma); the warps split K (warp w takes kv = w, w + 8, ...: more loads in flight than the N / 16
//   blocks alone would give); the eight partial C tiles are summed in shared memory, scaled once per
//   output channel and stored.
// Launch: block (256, 1, 1), grid (NP / 16, 1, 1).
//
// Entry points: lbmma_f16_w8, lbmma_f16_w4, lbmma_f16_w2
//   args: (const __half* x, const uint4* w, const float* scales, const float* bias_or_NULL,
//          __half* y, int M, int N, int KV)
//
// Compile: nvcc -cubin -arch=sm_90 -Xptxas -v -I kernels kernels/lowbit_mma_gemm.cu
#include "lowbit_batched_gemv.cuh"

#define LBM_WARPS 8  // split K: more weight loads in flight per 16 output channels
#define LBM_NT 2  // n8 tiles per warp

// d += A (16x16, rows x k) * B (16x8, k x cols), fp16 in, fp32 accumulate, one warp.
__device__ __forceinline__ void lbm_mma(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
#ifdef __CUDA_ARCH__
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#else
  // Portable equivalent (CPU emulator): gather the fragments through shuffles, as the PTX ISA lays
  // them out: a0 (row g, k 2t..2t+1), a1 (row g+8, same k), a2 (row g, k 2t+8..), a3 (row g+8, k 2t+8..);
  // b0 (k 2t.., col g), b1 (k 2t+8.., col g); d0 (row g, col 2t), d1 (g, 2t+1), d2 (g+8, 2t), d3 (g+8, 2t+1).
  const unsigned lane = threadIdx.x & 31u, g = lane >> 2, t = lane & 3u;
  auto dot2 = [](unsigned u, unsigned v) {
    const float2 p = __half22float2(lbg_h2(u)), q = __half22float2(lbg_h2(v));
    return p.x * q.x + p.y * q.y;
  };
  for (unsigned tt = 0; tt < 4; ++tt) {
    const unsigned A0 = __shfl_sync(0xffffffffu, a[0], g * 4 + tt), A1 = __shfl_sync(0xffffffffu, a[1], g * 4 + tt);
    const unsigned A2 = __shfl_sync(0xffffffffu, a[2], g * 4 + tt), A3 = __shfl_sync(0xffffffffu, a[3], g * 4 + tt);
    const unsigned B0c0 = __shfl_sync(0xffffffffu, b0, 2 * t * 4 + tt), B1c0 = __shfl_sync(0xffffffffu, b1, 2 * t * 4 + tt);
    const unsigned B0c1 = __shfl_sync(0xffffffffu, b0, (2 * t + 1) * 4 + tt);
    const unsigned B1c1 = __shfl_sync(0xffffffffu, b1, (2 * t + 1) * 4 + tt);
    d[0] += dot2(A0, B0c0) + dot2(A2, B1c0);
    d[1] += dot2(A0, B0c1) + dot2(A2, B1c1);
    d[2] += dot2(A1, B0c0) + dot2(A3, B1c0);
    d[3] += dot2(A1, B0c1) + dot2(A3, B1c1);
  }
#endif
}

template <int BITS>
__device__ void lbm_body(const __half* __restrict__ x, const uint4* __restrict__ w, const float* __restrict__ scales,
                         const float* __restrict__ bias, __half* __restrict__ y, int M, int N, int KV) {
  constexpr int EPW = 32 / BITS, NP = EPW / 2, CK = 4 * EPW;
  __shared__ float red[LBM_WARPS][LBM_NT][4][32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const int n8 = blockIdx.x * LBM_NT;  // first n8 tile of this block
  const size_t kp = (size_t)KV * 4 * CK;
  // rows g and g + 8 of x (A fragments); rows >= M read as zeros
  const bool lo_ok = g < M, hi_ok = g + 8 < M;
  const __half* xlo = x + (size_t)(lo_ok ? g : 0) * kp + t * EPW;
  const __half* xhi = x + (size_t)(hi_ok ? g + 8 : 0) * kp + t * EPW;
  float acc[LBM_NT][4];
#pragma unroll
  for (int i = 0; i < LBM_NT; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.f;

#pragma unroll 2
  for (int kv = warp; kv < KV; kv += LBM_WARPS) {
    uint4 wv[LBM_NT];
#pragma unroll
    for (int i = 0; i < LBM_NT; ++i) wv[i] = __ldg(w + ((size_t)(n8 + i) * KV + kv) * 32 + lane);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const size_t k0 = (size_t)(4 * kv + j) * CK;
      unsigned xl[NP], xh[NP];
      if (lo_ok) lbg_load_x<NP>(xlo + k0, xl);
      else
#pragma unroll
        for (int p = 0; p < NP; ++p) xl[p] = 0u;
      if (hi_ok) lbg_load_x<NP>(xhi + k0, xh);
      else
#pragma unroll
        for (int p = 0; p < NP; ++p) xh[p] = 0u;
#pragma unroll
      for (int i = 0; i < LBM_NT; ++i) {
        const unsigned word = j == 0 ? wv[i].x : j == 1 ? wv[i].y : j == 2 ? wv[i].z : wv[i].w;
        __half2 dq[NP];
        lbg_dequant<BITS>(word, dq);
#pragma unroll
        for (int tile = 0; tile < NP / 2; ++tile) {
          const unsigned a[4] = {xl[2 * tile], xh[2 * tile], xl[2 * tile + 1], xh[2 * tile + 1]};
          lbm_mma(acc[i], a, lbg_u32(dq[2 * tile]), lbg_u32(dq[2 * tile + 1]));
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < LBM_NT; ++i)
#pragma unroll
    for (int c = 0; c < 4; ++c) red[warp][i][c][lane] = acc[i][c];
  __syncthreads();
  // thread -> (tile i, C register c, lane): 2 * 4 * 32 = 256 outputs over 128 threads
  for (int o = tid; o < LBM_NT * 4 * 32; o += LBM_WARPS * 32) {
    const int i = o / 128, c = (o / 32) % 4, l = o % 32;
    const int m = (l >> 2) + (c >= 2 ? 8 : 0), n = (n8 + i) * 8 + 2 * (l & 3) + (c & 1);
    if (m >= M || n >= N) continue;
    float s = 0.f;
#pragma unroll
    for (int wi = 0; wi < LBM_WARPS; ++wi) s += red[wi][i][c][l];
    y[(size_t)m * N + n] = __float2half_rn(fmaf(s, scales[n], bias != nullptr ? bias[n] : 0.f));
  }
}

#define LBM_ENTRY(NAME, BITS)                                                                        \
  extern "C" __global__ void __launch_bounds__(LBM_WARPS * 32, 2)                                     \
      NAME(const __half* x, const uint4* w, const float* scales, const float* bias, __half* y, int M, \
           int N, int KV) {                                                                          \
    lbm_body<BITS>(x, w, scales, bias, y, M, N, KV);                                                 \
  }

LBM_ENTRY(lbmma_f16_w8, 8)
LBM_ENTRY(lbmma_f16_w4, 4)
LBM_ENTRY(lbmma_f16_w2, 2)
