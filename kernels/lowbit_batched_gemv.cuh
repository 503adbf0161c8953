// lowbit_batched_gemv.cuh -- body of lowbit_batched_gemv.cu: weight-only low-bit linear layer for
// 1..8 rows of x on CUDA cores (the design of TensorRT-LLM's weightOnlyBatchedGemv, Marlin's LOP3
// dequantization).
//
// Computes  y[m, o] = scales[o] * sum_k q[o, k] * x[m, k]  (+ bias[o])      i.e. y = x W^T
//
// Weight format "gemv" (edgec.kernels.packing.repack_gemv writes it; its docstring is the spec):
//   words [N, kvec] of 128-bit vectors (uint4), kvec = ceil(K / WPV), WPV = 128 / BITS weights per
//   vector; vector v of row o holds k in [v*WPV, (v+1)*WPV), its 32-bit word j holds the EPW = 32/BITS
//   weights k0 = v*WPV + j*EPW ...: the EVEN ones (k0, k0+2, ...) in the low 16 bits and the ODD ones
//   in the high 16 bits, each half as 16/BITS fields LSB first. So field p of both halves is the pair
//   (k0+2p, k0+2p+1): one half2 once dequantized, matching the half2 (x[k0+2p], x[k0+2p+1]).
//   BITS 8/4/2: the field is offset binary u = q + 2^(BITS-1) (q in [-(2^(BITS-1)-1), 2^(BITS-1)-1]),
//   so 0x6400 | (u << s) is the half 1024 + u*2^s and one HSUB2/HFMA2 gives q exactly (the LOP3
//   "magic number" of Marlin / FasterTransformer; BITS 8 builds 0x64|u with PRMT instead).
//   BITS 1: bit 1 -> q = +1, bit 0 -> q = -1; applied as a sign flip (XOR) of x where the bit is 1,
//   adds, and one subtraction of the word's sum (sum q x = -sum of the flipped x).
//   Weights past K are zero fields (x past K is zero too, see below).
// x [M, KP] row-major, KP = kvec * WPV: the caller pads each row with zeros past K (no tails here,
//   and every x row starts 16-byte aligned). y [M, N]. scales [N] fp32, bias [N] fp32 or NULL.
//
// Work split: a block has LBG_THREADS = 128 threads in row groups of KT threads (KT = 32, 64 or 128,
//   a launch argument, chosen so KT <= kvec); a group owns LBG_R = 4 consecutive output rows and its
//   threads stride over the K vectors: each iteration issues LBG_R independent 128-bit weight loads
//   (coalesced: a warp reads 512 contiguous bytes of a row), unrolled by 2 for fp16 x and MB <= 2. Each
//   32-bit word is dequantized once into half2 and reused for all MB rows of x; x comes in through
//   the read-only cache with 64/128-bit loads (it is tiny and every block reuses it from L1).
//   fp16 x: HFMA2 (HADD2 for 1 bit) into a half2 partial per word, added to fp32 accumulators per
//   word (so at most 16 products are summed in fp16). fp32 x: the same dequantized pairs, FFMA in fp32.
//   Reduction: warp shuffles, then shared memory across the warps of a group; the scale (and bias) is
//   applied once per output.
// Launch: block (128, 1, 1); grid (ceil(N / (LBG_R * 128 / KT)), ceil(M / MB), 1); MB rows of x per block.
// Registers: __launch_bounds__(128, 4) (<= 128 registers) for fp16 x and MB <= 2 (MB = 1 at 1 bit), (128, 2) otherwise (more
//   accumulators; those cases are closer to compute-bound, so fewer resident warps cost less).
#pragma once

#ifndef EDGEC_CPU_EMU
#include <cuda_fp16.h>
#endif

#define LBG_THREADS 128
#define LBG_R 4
#define LBG_ROW_PAD 16  // LBG_R * (LBG_THREADS / 32): the most rows one block covers

// --------------------------------------------------------------------------- bit tricks (PTX on the GPU)
// One LOP3: bit i of LUT is the result for (a, b, c) bits = (i >> 2, (i >> 1) & 1, i & 1), e.g. 0xEA =
// (a & b) | c, 0x6A = (a & b) ^ c. The CPU emulator evaluates the same truth table.
template <unsigned LUT>
__device__ __forceinline__ unsigned lbg_lop3(unsigned a, unsigned b, unsigned c) {
#ifdef __CUDA_ARCH__
  unsigned d;
  asm("lop3.b32 %0, %1, %2, %3, %4;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c), "n"(LUT));
  return d;
#else
  unsigned d = 0;
  for (unsigned i = 0; i < 8; ++i)
    if (LUT >> i & 1u) d |= ((i & 4u) ? a : ~a) & ((i & 2u) ? b : ~b) & ((i & 1u) ? c : ~c);
  return d;
#endif
}
__device__ __forceinline__ unsigned lbg_and_or(unsigned a, unsigned b, unsigned c) { return lbg_lop3<0xEAu>(a, b, c); }
__device__ __forceinline__ unsigned lbg_and_xor(unsigned a, unsigned b, unsigned c) { return lbg_lop3<0x6Au>(a, b, c); }

__device__ __forceinline__ __half2 lbg_h2(unsigned u) {
  __half2 h;
  memcpy(&h, &u, 4);
  return h;
}
__device__ __forceinline__ unsigned lbg_u32(__half2 h) {
  unsigned u;
  memcpy(&u, &h, 4);
  return u;
}

// Word -> NP = 16/BITS half2 pairs (k0+2p, k0+2p+1) holding q exactly (BITS 8, 4, 2).
template <int BITS>
__device__ __forceinline__ void lbg_dequant(unsigned q, __half2 (&d)[16 / BITS]) {
  if constexpr (BITS == 8) {
    const __half2 zero = lbg_h2(0x64806480u);  // 1024 + 128
    d[0] = __hsub2(lbg_h2(__byte_perm(q, 0x64646464u, 0x5250u)), zero);
    d[1] = __hsub2(lbg_h2(__byte_perm(q, 0x64646464u, 0x5351u)), zero);
  } else {
    constexpr int NP = 16 / BITS, HALF = 8 / BITS;  // pairs per word, pairs per byte-shift
    constexpr unsigned FIELD = (1u << BITS) - 1u;
    constexpr float ZP = float(1 << (BITS - 1));
#pragma unroll
    for (int p = 0; p < NP; ++p) {
      const int s = BITS * (p % HALF);  // field offset inside its byte pair: 0 .. 8 - BITS
      const unsigned src = p < HALF ? q : q >> 8;
      const unsigned mask = (FIELD << s) | (FIELD << (s + 16));
      const __half2 h = lbg_h2(lbg_and_or(src, mask, 0x64006400u));  // 1024 + u * 2^s, both halves
      if (s == 0) {
        d[p] = __hsub2(h, __float2half2_rn(1024.f + ZP));
      } else {
        const float inv = 1.f / float(1 << s);
        d[p] = __hfma2(h, __float2half2_rn(inv), __float2half2_rn(-(1024.f * inv + ZP)));
      }
    }
  }
}

// --------------------------------------------------------------------------- x loads
// NU 32-bit units of x (NU halves pairs, or NU floats) starting at p, with 64/128-bit loads.
template <int NU>
__device__ __forceinline__ void lbg_load_x(const void* p, unsigned (&u)[NU]) {
  if constexpr (NU % 4 == 0) {
#pragma unroll
    for (int i = 0; i < NU / 4; ++i) {
      const uint4 v = __ldg(reinterpret_cast<const uint4*>(p) + i);
      u[4 * i] = v.x, u[4 * i + 1] = v.y, u[4 * i + 2] = v.z, u[4 * i + 3] = v.w;
    }
  } else {
    static_assert(NU == 2, "x loads are 64 or 128 bits");
    const uint2 v = __ldg(reinterpret_cast<const uint2*>(p));
    u[0] = v.x, u[1] = v.y;
  }
}

__device__ __forceinline__ float lbg_bits2f(unsigned u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

// --------------------------------------------------------------------------- one word x all rows of x
// acc[r][b] += sum over the EPW weights of word w[r] times x[b] (k0 ... k0 + EPW - 1).
template <int BITS, int MB, typename T>
__device__ __forceinline__ void lbg_word(const unsigned (&w)[LBG_R], const T* const (&xr)[MB], size_t k0,
                                         float (&acc)[LBG_R][MB]) {
  constexpr int EPW = 32 / BITS, NP = EPW / 2;
  if constexpr (sizeof(T) == 2) {  // fp16 x: half2 math, fp32 per-word accumulation
    __half2 dq[LBG_R][BITS == 1 ? 1 : NP];
    if constexpr (BITS != 1) {
#pragma unroll
      for (int r = 0; r < LBG_R; ++r) lbg_dequant<BITS>(w[r], dq[r]);
    }
#pragma unroll
    for (int b = 0; b < MB; ++b) {
      unsigned xu[NP];
      lbg_load_x<NP>(xr[b] + k0, xu);
#pragma unroll
      for (int r = 0; r < LBG_R; ++r) {
        __half2 h;
        if constexpr (BITS == 1) {
          // flip the sign of x where the bit is 1 (q = +1): h = -(sum q x); no NOT of the word, which
          // the compiler would otherwise fold into every shift as an extra LOP3
          h = lbg_h2(lbg_and_xor(w[r] << 15, 0x80008000u, xu[0]));
#pragma unroll
          for (int p = 1; p < NP; ++p) h = __hadd2(h, lbg_h2(lbg_and_xor(w[r] << (15 - p), 0x80008000u, xu[p])));
        } else {
          h = __hmul2(dq[r][0], lbg_h2(xu[0]));
#pragma unroll
          for (int p = 1; p < NP; ++p) h = __hfma2(dq[r][p], lbg_h2(xu[p]), h);
        }
        const float2 f = __half22float2(h);
        if constexpr (BITS == 1) acc[r][b] -= f.x + f.y;
        else acc[r][b] += f.x + f.y;
      }
    }
  } else {  // fp32 x: exact dequantized weights, FFMA
    unsigned xu[EPW];
#pragma unroll
    for (int b = 0; b < MB; ++b) {
      lbg_load_x<EPW>(xr[b] + k0, xu);
#pragma unroll
      for (int r = 0; r < LBG_R; ++r) {
        float a = acc[r][b];
        if constexpr (BITS == 1) {  // as for fp16: sign flips where the bit is 1, then subtract
#pragma unroll
          for (int p = 0; p < NP; ++p) {
            a -= lbg_bits2f(lbg_and_xor(w[r] << (31 - p), 0x80000000u, xu[2 * p]));
            a -= lbg_bits2f(lbg_and_xor(w[r] << (15 - p), 0x80000000u, xu[2 * p + 1]));
          }
        } else {
          __half2 dq[NP];
          lbg_dequant<BITS>(w[r], dq);
#pragma unroll
          for (int p = 0; p < NP; ++p) {
            const float2 q = __half22float2(dq[p]);
            a = fmaf(q.x, lbg_bits2f(xu[2 * p]), a);
            a = fmaf(q.y, lbg_bits2f(xu[2 * p + 1]), a);
          }
        }
        acc[r][b] = a;
      }
    }
  }
}

__device__ __forceinline__ void lbg_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void lbg_store(__half* p, float v) { *p = __float2half_rn(v); }

template <int BITS, int MB, typename T>
__device__ void lbg_body(const T* __restrict__ x, const uint4* __restrict__ w, const float* __restrict__ scales,
                         const float* __restrict__ bias, T* __restrict__ y, int M, int N, int kvec, int kt) {
  constexpr int EPW = 32 / BITS, WPV = 4 * EPW;
  __shared__ float red[LBG_THREADS / 32][LBG_R][MB];
  const int tid = threadIdx.x, groups = LBG_THREADS / kt;
  const int g = tid / kt, t = tid % kt;
  const int row0 = (blockIdx.x * groups + g) * LBG_R;
  const int m0 = blockIdx.y * MB;
  const size_t kp = (size_t)kvec * WPV;

  // words has rows padded to a multiple of LBG_ROW_PAD (repack_gemv): every row a block touches exists
  const uint4* wr = w + (size_t)row0 * kvec;
  const T* xr[MB];
#pragma unroll
  for (int b = 0; b < MB; ++b) xr[b] = x + (size_t)min(m0 + b, M - 1) * kp;  // rows past M: discarded
  float acc[LBG_R][MB];
#pragma unroll
  for (int r = 0; r < LBG_R; ++r)
#pragma unroll
    for (int b = 0; b < MB; ++b) acc[r][b] = 0.f;

#pragma unroll((MB <= 2 && sizeof(T) == 2) ? 2 : 1)
  for (int v = t; v < kvec; v += kt) {
    uint4 wv[LBG_R];
#pragma unroll
    for (int r = 0; r < LBG_R; ++r) wv[r] = __ldg(wr + (size_t)r * kvec + v);  // LBG_R loads in flight
    const size_t k = (size_t)v * WPV;
    unsigned w0[LBG_R], w1[LBG_R], w2[LBG_R], w3[LBG_R];
#pragma unroll
    for (int r = 0; r < LBG_R; ++r) w0[r] = wv[r].x, w1[r] = wv[r].y, w2[r] = wv[r].z, w3[r] = wv[r].w;
    lbg_word<BITS, MB, T>(w0, xr, k, acc);
    lbg_word<BITS, MB, T>(w1, xr, k + EPW, acc);
    lbg_word<BITS, MB, T>(w2, xr, k + 2 * EPW, acc);
    lbg_word<BITS, MB, T>(w3, xr, k + 3 * EPW, acc);
  }

  const int lane = tid & 31, warp = tid >> 5;
#pragma unroll
  for (int r = 0; r < LBG_R; ++r)
#pragma unroll
    for (int b = 0; b < MB; ++b) {
      float s = acc[r][b];
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
      if (lane == 0) red[warp][r][b] = s;
    }
  __syncthreads();
  // one thread per (group, row, batch row): add the partials of the group's warps, scale, store
  const int warps_per_group = kt / 32;
  for (int i = tid; i < groups * LBG_R * MB; i += LBG_THREADS) {
    const int gi = i / (LBG_R * MB), r = (i / MB) % LBG_R, b = i % MB;
    const int row = (blockIdx.x * groups + gi) * LBG_R + r, m = m0 + b;
    if (row >= N || m >= M) continue;
    float s = 0.f;
    for (int wi = 0; wi < warps_per_group; ++wi) s += red[gi * warps_per_group + wi][r][b];
    lbg_store(y + (size_t)m * N + row, fmaf(s, scales[row], bias != nullptr ? bias[row] : 0.f));
  }
}

// 4 resident blocks (<= 128 registers) where that fits without spills: fp16 x, MB = 1, or MB = 2 below 1 bit
#define LBG_MIN_BLOCKS(BITS, MB, T) ((sizeof(T) == 2 && ((MB) == 1 || ((MB) == 2 && (BITS) != 1))) ? 4 : 2)

#define LBG_ENTRY(NAME, BITS, MB, T)                                                           \
  extern "C" __global__ void __launch_bounds__(LBG_THREADS, LBG_MIN_BLOCKS(BITS, MB, T))         \
      NAME(const T* x, const uint4* w, const float* scales, const float* bias, T* y, int M, int N, \
           int kvec, int kt) {                                                                 \
    lbg_body<BITS, MB, T>(x, w, scales, bias, y, M, N, kvec, kt);                             \
  }
