// CPU driver for kernels/lowbit_batched_gemv.cu (built with -include cuda_cpu_emu.h).
// Inputs x.bin ([M, KP] f32, or f16 bits), words.bin (uint32 [NP, kvec*4]), scales.bin, [bias.bin];
// output y.bin [M, N]. Arguments: M N NP kvec kt has_bias grid block.
#include "../lowbit_batched_gemv.cu"
#include "harness_io.h"

template <class T>
using LbgKernel = void (*)(const T*, const uint4*, const float*, const float*, T*, int, int, int, int);

template <class T>
static void run(const harness::Args& a, LbgKernel<T> kernel, int bits) {
  const int M = a.i("M"), N = a.i("N"), NP = a.i("NP"), kvec = a.i("kvec"), kt = a.i("kt");
  const size_t kp = size_t(kvec) * (128 / bits);
  auto x = harness::read<T>(a.dir, "x", size_t(M) * kp);
  auto words = harness::read<uint4>(a.dir, "words", size_t(NP) * kvec);
  auto scales = harness::read<float>(a.dir, "scales", N);
  std::vector<float> bias;
  if (a.i("has_bias")) bias = harness::read<float>(a.dir, "bias", N);
  std::vector<T> y(size_t(M) * N ? size_t(M) * N : 1);
  edgec_emu::launch(kernel, a.d3("grid"), a.d3("block"), x.data(), words.data(), scales.data(),
                    bias.empty() ? nullptr : bias.data(), y.data(), M, N, kvec, kt);
  harness::write(a.dir, "y", y, size_t(M) * N);
}

#define ENTRY(DT, T, BITS, MB) \
  if (a.entry == "lbgemv_" #DT "_w" #BITS "_m" #MB) return run<T>(a, lbgemv_##DT##_w##BITS##_m##MB, BITS), 0;
#define ENTRIES(DT, T, BITS) ENTRY(DT, T, BITS, 1) ENTRY(DT, T, BITS, 2) ENTRY(DT, T, BITS, 4)

int main(int argc, char** argv) {
  harness::Args a(argc, argv);
  ENTRIES(f16, __half, 8) ENTRIES(f16, __half, 4) ENTRIES(f16, __half, 2) ENTRIES(f16, __half, 1)
  ENTRY(f16, __half, 8, 8) ENTRY(f16, __half, 4, 8) ENTRY(f16, __half, 1, 8)
  ENTRIES(f32, float, 8) ENTRIES(f32, float, 4) ENTRIES(f32, float, 2) ENTRIES(f32, float, 1)
  ENTRY(f32, float, 8, 8) ENTRY(f32, float, 4, 8) ENTRY(f32, float, 2, 8)
  harness::fail("unknown entry " + a.entry);
}
