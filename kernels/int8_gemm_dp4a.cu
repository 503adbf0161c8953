// int8_gemm_dp4a.cu -- W8A8 INT8 linear layer with __dp4a: y = x_scale * w_scales[n] * (xq wq^T) + bias.
//
// Two entry points:
//   quantize_int8_f32(x, xq, x_scale, M, K, K4)
//     xq[m, k] = clamp(rint(x[m, k] / x_scale), -127, 127) for k < K, 0 for K <= k < K4
//     (symmetric per-tensor activation quantization, round half to even like numpy.rint).
//     x [M, K] float32; xq [M, K4] int8, K4 = ceil(K / 4) * 4.
//     Launch: block = (256, 1, 1); grid = (ceil(K4 / 256), M, 1).
//   int8_gemm_dp4a(xq, wq, w_scales, x_scale, bias, y, M, N, KW)
//     y[m, n] = float(sum_k xq[m, k] * wq[n, k]) * (x_scale * w_scales[n]) + bias[n]
//     xq [M, K4] int8 and wq [N, K4] int8, each row zero-padded to K4 so it is a whole number of
//     32-bit words (KW = K4 / 4): the kernel reads them as int32, 4 consecutive k per word, byte i
//     = element 4*word + i (little-endian, i.e. the plain int8 array). w_scales [N] float32
//     (per output channel, symmetric); bias [N] float32 or NULL; y [M, N] float32.
//     int32 accumulation: exact for K < 133,000 (127 * 127 * K < 2^31).
//     Launch: block = (16, 16, 1); grid = (ceil(N / 32), ceil(M / 32), 1).
//
// Work split of the GEMM: a block computes a 32 x 32 tile of y; each thread a 2 x 2 sub-tile
// (rows ty and ty + 16, columns tx and tx + 16). K is walked 16 words (64 int8) at a time: the
// block stages a 32 x 16-word tile of xq and of wq in shared memory (rows padded to 17 words so
// the column reads of Bs[tx][kk] hit 16 different banks), then each thread does 4 x 16 __dp4a.
// Out-of-range rows/words are staged as 0, so no thread returns early and all reach
// __syncthreads.
//
// __launch_bounds__(256, 2): an explicit occupancy target keeps ptxas from capping registers at 32
// (it did so, and spilled, for 128-thread kernels on sm_90 with CUDA 13).
//
// Compile: nvcc -cubin -arch=sm_87 -Xptxas -v kernels/int8_gemm_dp4a.cu   (__dp4a needs sm_61+)

#define I8_TILE 32   // output tile edge (rows of x and rows of w per block)
#define I8_BK 16     // int32 words of K per shared-memory stage
#define I8_T 16      // threads per block edge

extern "C" __global__ void __launch_bounds__(256, 2)
quantize_int8_f32(const float* __restrict__ x, signed char* __restrict__ xq, float x_scale, int M,
                  int K, int K4) {
  const int k = blockIdx.x * 256 + threadIdx.x;
  const int m = blockIdx.y;
  if (k >= K4 || m >= M) return;
  int q = 0;
  if (k < K) {
    // clamp before rounding: same result as rounding first (the bounds are integers) and keeps
    // the float -> int conversion in range
    const float v = fminf(fmaxf(x[(size_t)m * K + k] / x_scale, -127.f), 127.f);
    q = __float2int_rn(v);
  }
  xq[(size_t)m * K4 + k] = (signed char)q;
}

extern "C" __global__ void __launch_bounds__(I8_T * I8_T, 2)
int8_gemm_dp4a(const int* __restrict__ xq, const int* __restrict__ wq,
               const float* __restrict__ w_scales, float x_scale, const float* __restrict__ bias,
               float* __restrict__ y, int M, int N, int KW) {
  __shared__ int As[I8_TILE][I8_BK + 1];  // xq tile: 32 rows x 16 words (+1 pad)
  __shared__ int Bs[I8_TILE][I8_BK + 1];  // wq tile: 32 rows x 16 words (+1 pad)
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * I8_T + tx;
  const int m_base = blockIdx.y * I8_TILE, n_base = blockIdx.x * I8_TILE;
  int acc00 = 0, acc01 = 0, acc10 = 0, acc11 = 0;

  for (int k0 = 0; k0 < KW; k0 += I8_BK) {
    // 512 words per tile, 256 threads: two words each; consecutive threads read consecutive words
    for (int i = tid; i < I8_TILE * I8_BK; i += I8_T * I8_T) {
      const int r = i / I8_BK, kk = i - r * I8_BK;
      const int gk = k0 + kk;
      const int gm = m_base + r, gn = n_base + r;
      As[r][kk] = (gm < M && gk < KW) ? xq[(size_t)gm * KW + gk] : 0;
      Bs[r][kk] = (gn < N && gk < KW) ? wq[(size_t)gn * KW + gk] : 0;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < I8_BK; ++kk) {
      const int a0 = As[ty][kk], a1 = As[ty + 16][kk];
      const int b0 = Bs[tx][kk], b1 = Bs[tx + 16][kk];
      acc00 = __dp4a(a0, b0, acc00);
      acc01 = __dp4a(a0, b1, acc01);
      acc10 = __dp4a(a1, b0, acc10);
      acc11 = __dp4a(a1, b1, acc11);
    }
    __syncthreads();  // the next stage overwrites As/Bs
  }

  const int accs[2][2] = {{acc00, acc01}, {acc10, acc11}};
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int m = m_base + ty + 16 * i;
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int n = n_base + tx + 16 * j;
      if (m < M && n < N) {
        const float b = bias != nullptr ? bias[n] : 0.f;
        y[(size_t)m * N + n] = (float)accs[i][j] * (x_scale * w_scales[n]) + b;
      }
    }
  }
}
