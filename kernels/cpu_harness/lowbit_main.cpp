// CPU driver for kernels/lowbit_gemv.cu and kernels/lowbit_gemm_smallbatch.cu.
// Inputs x.bin (f32, or f16 bits), words.bin (uint32), scales.bin, [bias.bin]; output y.bin.
#include "../lowbit_gemv.cu"
#include "../lowbit_gemm_smallbatch.cu"
#include "harness_io.h"

template <class T>
using LowbitKernel = void (*)(const T*, const unsigned*, const float*, const float*, T*, int, int, int, int);

template <class T>
static void run(const harness::Args& a, LowbitKernel<T> kernel) {
  const int M = a.i("M"), N = a.i("N"), K = a.i("K"), wpr = a.i("wpr");
  auto x = harness::read<T>(a.dir, "x", size_t(M) * K);
  auto words = harness::read<unsigned>(a.dir, "words", size_t(N) * wpr);
  auto scales = harness::read<float>(a.dir, "scales", N);
  std::vector<float> bias;
  if (a.i("has_bias")) bias = harness::read<float>(a.dir, "bias", N);
  std::vector<T> y(size_t(M) * N ? size_t(M) * N : 1);
  edgec_emu::launch(kernel, a.d3("grid"), a.d3("block"), x.data(), words.data(), scales.data(),
                    bias.empty() ? nullptr : bias.data(), y.data(), M, N, K, wpr);
  harness::write(a.dir, "y", y, size_t(M) * N);
}

#define ENTRY(name, T) if (a.entry == #name) return run<T>(a, name), 0;

int main(int argc, char** argv) {
  harness::Args a(argc, argv);
  ENTRY(lowbit_gemv_f32_b8, float) ENTRY(lowbit_gemv_f32_b4, float)
  ENTRY(lowbit_gemv_f32_b2, float) ENTRY(lowbit_gemv_f32_b1, float)
  ENTRY(lowbit_gemv_f16_b8, __half) ENTRY(lowbit_gemv_f16_b4, __half)
  ENTRY(lowbit_gemv_f16_b2, __half) ENTRY(lowbit_gemv_f16_b1, __half)
  ENTRY(lowbit_gemm_f32_b8, float) ENTRY(lowbit_gemm_f32_b4, float)
  ENTRY(lowbit_gemm_f32_b2, float) ENTRY(lowbit_gemm_f32_b1, float)
  ENTRY(lowbit_gemm_f16_b8, __half) ENTRY(lowbit_gemm_f16_b4, __half)
  ENTRY(lowbit_gemm_f16_b2, __half) ENTRY(lowbit_gemm_f16_b1, __half)
  harness::fail("unknown entry " + a.entry);
}
