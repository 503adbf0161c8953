// int8_gemv_mmvq.cu -- W8A8 linear for few rows of x (m <= 16), llama.cpp-mmvq style, x quantized in-kernel.
//
//   y[m, n] = float(sum_k q(x[m, k]) * wq[n, k]) * (x_scale * w_scales[n]) + bias[n]
//   q(v)    = rint(clamp(v * inv_scale, -127, 127))      (inv_scale = 1 / x_scale, float32, computed by the host;
//                                                          rint = round half to even, as numpy.rint)
//
// Entry points (T = half or float activations, MB = x rows per block):
//   int8_mmvq_{f16,f32}_mb{1,2,4,8,16}(x, wq, w_scales, inv_scale, x_scale, bias, y, M, N, K, K16)
//   int8_quantize_{f16,f32}(x, xq, inv_scale, M, K, K16)   -- for the m > 16 path (torch._int_mm, cuBLASLt IMMA)
//
// Layouts (row-major, contiguous):
//   x  [M, K]   T;  y [M, N] T (fp32 accumulation and epilogue, rounded once at the store)
//   wq [N, K16] int8, each row zero-padded to K16 = ceil(K / 16) * 16 bytes, so every row starts on a 16-byte
//               boundary and a thread reads 16 weights with one 128-bit load (LDG.E.128)
//   w_scales [N] float32 (symmetric, per output channel); bias [N] float32 or NULL
//   xq [M, K16] int8 (int8_quantize_*: zero for K <= k < K16)
//   int32 accumulation: exact for K < 133,000 (127 * 127 * K < 2^31).
//
// Work split (llama.cpp ggml-cuda/mmvq.cu, with the x quantization fused instead of a separate launch):
//   block = 256 threads = 8 warps; a warp owns ROWS consecutive output rows (ROWS = 2 for MB <= 2, else 4), so a
//   block owns 8 * ROWS rows and MB rows of x: grid = (ceil(N / (8 * ROWS)), ceil(M / MB), 1).
//   K is walked in chunks of KC = 16384 / MB bytes. Per chunk the block quantizes x[m0:m0+MB, chunk] ONCE into
//   shared memory (16 KB, int8; 8 values per thread per step, 128-bit loads of x when aligned), then every warp
//   streams its rows' weights: lane L reads bytes [16 L, 16 L + 16) of each 512-byte stretch of each of its rows
//   (coalesced 128-bit loads, ROWS of them in flight per step, more with the unrolled loop), reads the matching 16
//   quantized x bytes of each of the MB rows from shared memory (one 128-bit LDS, reused for all ROWS rows) and
//   does 4 __dp4a per (row, x row). After the last chunk each (row, x row) sum is reduced across the warp with
//   5 xor-shuffles and one lane writes the scaled result.
//   So x is read from global memory once per block (not once per output row, the old kernels' cost), and is
//   quantized with a multiply, not a division.
//   Rows past N are clamped to N - 1 for the loads (no early exit: every thread reaches __syncthreads) and not
//   stored; rows of x past M are quantized as zeros and not stored.
//
// Compile: nvcc -cubin -arch=sm_90 -Xptxas -v -I kernels kernels/int8_gemv_mmvq.cu   (__dp4a: sm_61+)
#ifndef EDGEC_CPU_EMU
#include <cuda_fp16.h>
#include <stdint.h>
typedef int4 i8v_vec;  // 16 bytes: one LDG.E.128 / LDS.128
#else
struct alignas(16) i8v_vec { int x, y, z, w; };
#endif

#define I8V_THREADS 256
#define I8V_WARPS 8
#define I8V_XBYTES 16384  // shared-memory bytes of quantized x per block

template <int MB>
struct I8vRows { static constexpr int value = MB <= 2 ? 2 : 4; };

__device__ __forceinline__ int i8v_quant(float v, float inv_scale) {
  // clamp before rounding: same result as rounding first (the bounds are integers), keeps F2I in range
  return __float2int_rn(fminf(fmaxf(v * inv_scale, -127.f), 127.f));
}

__device__ __forceinline__ int i8v_pack4(int a, int b, int c, int d) {
  return (a & 0xff) | ((b & 0xff) << 8) | ((c & 0xff) << 16) | (int)((unsigned)(d & 0xff) << 24);
}

// 8 consecutive values of row `row` starting at column k (k + 8 <= K when `vec`), as float.
__device__ __forceinline__ void i8v_load8(const float* row, int k, int K, bool vec, float v[8]) {
  if (vec) {
    const float4 a = *reinterpret_cast<const float4*>(row + k);
    const float4 b = *reinterpret_cast<const float4*>(row + k + 4);
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = k + i < K ? row[k + i] : 0.f;
  }
}

__device__ __forceinline__ void i8v_load8(const __half* row, int k, int K, bool vec, float v[8]) {
  if (vec) {
    const i8v_vec raw = *reinterpret_cast<const i8v_vec*>(row + k);  // 8 halves, one 128-bit load
    const int words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
#ifdef EDGEC_CPU_EMU
      v[2 * i] = __half2float(__half{(uint16_t)(words[i] & 0xffff)});
      v[2 * i + 1] = __half2float(__half{(uint16_t)((unsigned)words[i] >> 16)});
#else
      const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&words[i]));
      v[2 * i] = f.x;
      v[2 * i + 1] = f.y;
#endif
    }
  } else {
#pragma unroll
    for (int i = 0; i < 8; ++i) v[i] = k + i < K ? __half2float(row[k + i]) : 0.f;
  }
}

__device__ __forceinline__ void i8v_store(float* p, float v) { *p = v; }
__device__ __forceinline__ void i8v_store(__half* p, float v) { *p = __float2half(v); }

// Can rows of x be read 16 bytes at a time? (row starts 16-byte aligned)
template <typename T>
__device__ __forceinline__ bool i8v_vectorizable(const T* x, int K) {
  return ((reinterpret_cast<uintptr_t>(x) | ((uintptr_t)K * sizeof(T))) & 15u) == 0;
}

template <typename T, int MB>
__device__ void int8_mmvq_impl(const T* __restrict__ x, const i8v_vec* __restrict__ wq,
                               const float* __restrict__ w_scales, float inv_scale, float x_scale,
                               const float* __restrict__ bias, T* __restrict__ y, int M, int N, int K,
                               int K16) {
  constexpr int ROWS = I8vRows<MB>::value;
  constexpr int KC = I8V_XBYTES / MB;  // bytes of K per chunk (a multiple of 512)
  constexpr int UNROLL = MB <= 2 ? 4 : 2;
  __shared__ i8v_vec xs[I8V_XBYTES / 16];  // [MB][KC] int8
  signed char* xs_bytes = reinterpret_cast<signed char*>(xs);

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int m0 = blockIdx.y * MB;
  const int n0 = (blockIdx.x * I8V_WARPS + warp) * ROWS;
  const bool vec = i8v_vectorizable(x, K);
  const int row_words = K16 >> 4;  // 16-byte words per weight row

  const i8v_vec* wrow[ROWS];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) wrow[r] = wq + (size_t)min(n0 + r, N - 1) * row_words;

  int acc[ROWS][MB];
#pragma unroll
  for (int r = 0; r < ROWS; ++r)
#pragma unroll
    for (int b = 0; b < MB; ++b) acc[r][b] = 0;

  for (int kc = 0; kc < K16; kc += KC) {
    const int kn = min(KC, K16 - kc);  // bytes in this chunk, a multiple of 16
    __syncthreads();                   // every warp is done with the previous chunk
#pragma unroll
    for (int b = 0; b < MB; ++b) {
      const int m = m0 + b;
      for (int kk = threadIdx.x * 8; kk < kn; kk += I8V_THREADS * 8) {
        float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        const int k = kc + kk;
        if (m < M && k < K) i8v_load8(x + (size_t)m * K, k, K, vec && k + 8 <= K, v);
        int2 q;
        q.x = i8v_pack4(i8v_quant(v[0], inv_scale), i8v_quant(v[1], inv_scale), i8v_quant(v[2], inv_scale),
                        i8v_quant(v[3], inv_scale));
        q.y = i8v_pack4(i8v_quant(v[4], inv_scale), i8v_quant(v[5], inv_scale), i8v_quant(v[6], inv_scale),
                        i8v_quant(v[7], inv_scale));
        *reinterpret_cast<int2*>(xs_bytes + b * KC + kk) = q;
      }
    }
    __syncthreads();
    // 2 x ROWS (4 x ROWS for MB <= 2, the memory-bound case) 128-bit weight loads in flight per thread
#pragma unroll(UNROLL)
    for (int kk = lane * 16; kk < kn; kk += 512) {
      i8v_vec w[ROWS];
#pragma unroll
      for (int r = 0; r < ROWS; ++r) w[r] = __ldg(wrow[r] + ((kc + kk) >> 4));
#pragma unroll
      for (int b = 0; b < MB; ++b) {
        const i8v_vec xv = xs[(b * KC + kk) >> 4];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
          int a = acc[r][b];
          a = __dp4a(w[r].x, xv.x, a);
          a = __dp4a(w[r].y, xv.y, a);
          a = __dp4a(w[r].z, xv.z, a);
          a = __dp4a(w[r].w, xv.w, a);
          acc[r][b] = a;
        }
      }
    }
  }

#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
#pragma unroll
    for (int b = 0; b < MB; ++b) {
      int v = acc[r][b];
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
      const int n = n0 + r, m = m0 + b;
      if (lane == ((r * MB + b) & 31) && n < N && m < M) {
        const float bn = bias != nullptr ? bias[n] : 0.f;
        i8v_store(y + (size_t)m * N + n, (float)v * (x_scale * w_scales[n]) + bn);
      }
    }
  }
}

#define I8V_ENTRY(T, tname, MB)                                                                            \
  extern "C" __global__ void __launch_bounds__(I8V_THREADS, 2) int8_mmvq_##tname##_mb##MB(                 \
      const T* x, const i8v_vec* wq, const float* w_scales, float inv_scale, float x_scale,                \
      const float* bias, T* y, int M, int N, int K, int K16) {                                             \
    int8_mmvq_impl<T, MB>(x, wq, w_scales, inv_scale, x_scale, bias, y, M, N, K, K16);                     \
  }

I8V_ENTRY(__half, f16, 1)
I8V_ENTRY(__half, f16, 2)
I8V_ENTRY(__half, f16, 4)
I8V_ENTRY(__half, f16, 8)
I8V_ENTRY(__half, f16, 16)
I8V_ENTRY(float, f32, 1)
I8V_ENTRY(float, f32, 2)
I8V_ENTRY(float, f32, 4)
I8V_ENTRY(float, f32, 8)
I8V_ENTRY(float, f32, 16)

// xq[m, k] = q(x[m, k]) for k < K, 0 for K <= k < K16. block = 256; grid = (ceil(K16 / 2048), M, 1): a thread
// quantizes 8 consecutive values and stores them as one 64-bit word.
template <typename T>
__device__ void int8_quantize_impl(const T* __restrict__ x, signed char* __restrict__ xq, float inv_scale,
                                   int M, int K, int K16) {
  const int k = (blockIdx.x * I8V_THREADS + threadIdx.x) * 8;
  const int m = blockIdx.y;
  if (k >= K16 || m >= M) return;
  float v[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  if (k < K) i8v_load8(x + (size_t)m * K, k, K, i8v_vectorizable(x, K) && k + 8 <= K, v);
  int2 q;
  q.x = i8v_pack4(i8v_quant(v[0], inv_scale), i8v_quant(v[1], inv_scale), i8v_quant(v[2], inv_scale),
                  i8v_quant(v[3], inv_scale));
  q.y = i8v_pack4(i8v_quant(v[4], inv_scale), i8v_quant(v[5], inv_scale), i8v_quant(v[6], inv_scale),
                  i8v_quant(v[7], inv_scale));
  *reinterpret_cast<int2*>(xq + (size_t)m * K16 + k) = q;
}

extern "C" __global__ void __launch_bounds__(I8V_THREADS) int8_quantize_f16(const __half* x, signed char* xq,
                                                                             float inv_scale, int M, int K,
                                                                             int K16) {
  int8_quantize_impl<__half>(x, xq, inv_scale, M, K, K16);
}

extern "C" __global__ void __launch_bounds__(I8V_THREADS) int8_quantize_f32(const float* x, signed char* xq,
                                                                             float inv_scale, int M, int K,
                                                                             int K16) {
  int8_quantize_impl<float>(x, xq, inv_scale, M, K, K16);
}
