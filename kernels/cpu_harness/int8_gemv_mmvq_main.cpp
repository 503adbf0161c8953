// CPU driver for kernels/int8_gemv_mmvq.cu (built with -include cuda_cpu_emu.h).
// int8_mmvq_*: inputs x.bin (f32, or f16 bits), wq.bin (int8 [N, K16]), w_scales.bin, [bias.bin]; output y.bin.
// int8_quantize_*: input x.bin; output xq.bin (int8 [M, K16]).
#include "../int8_gemv_mmvq.cu"
#include "harness_io.h"

template <class T>
using Mmvq = void (*)(const T*, const i8v_vec*, const float*, float, float, const float*, T*, int, int, int, int);

template <class T>
static void run_mmvq(const harness::Args& a, Mmvq<T> kernel) {
  const int M = a.i("M"), N = a.i("N"), K = a.i("K"), K16 = a.i("K16");
  auto x = harness::read<T>(a.dir, "x", size_t(M) * K);
  std::vector<i8v_vec> wq(size_t(N) * K16 / 16 + 1);  // 16-byte aligned rows, as on the GPU
  {
    auto raw = harness::read<signed char>(a.dir, "wq", size_t(N) * K16);
    std::memcpy(wq.data(), raw.data(), size_t(N) * K16);
  }
  auto w_scales = harness::read<float>(a.dir, "w_scales", N);
  std::vector<float> bias;
  if (a.i("has_bias")) bias = harness::read<float>(a.dir, "bias", N);
  std::vector<T> y(size_t(M) * N ? size_t(M) * N : 1);
  edgec_emu::launch(kernel, a.d3("grid"), a.d3("block"), x.data(), wq.data(), w_scales.data(), a.f("inv_scale"),
                    a.f("x_scale"), bias.empty() ? nullptr : bias.data(), y.data(), M, N, K, K16);
  harness::write(a.dir, "y", y, size_t(M) * N);
}

template <class T>
static void run_quantize(const harness::Args& a, void (*kernel)(const T*, signed char*, float, int, int, int)) {
  const int M = a.i("M"), K = a.i("K"), K16 = a.i("K16");
  auto x = harness::read<T>(a.dir, "x", size_t(M) * K);
  std::vector<int2> xq(size_t(M) * K16 / 8 + 1);  // 8-byte aligned, as the 64-bit stores need
  edgec_emu::launch(kernel, a.d3("grid"), a.d3("block"), x.data(), reinterpret_cast<signed char*>(xq.data()),
                    a.f("inv_scale"), M, K, K16);
  std::vector<signed char> bytes(size_t(M) * K16 + 1);
  std::memcpy(bytes.data(), xq.data(), size_t(M) * K16);
  harness::write(a.dir, "xq", bytes, size_t(M) * K16);
}

#define MMVQ(tname, T, MB) if (a.entry == "int8_mmvq_" #tname "_mb" #MB) return run_mmvq<T>(a, int8_mmvq_##tname##_mb##MB), 0;

int main(int argc, char** argv) {
  harness::Args a(argc, argv);
  MMVQ(f16, __half, 1) MMVQ(f16, __half, 2) MMVQ(f16, __half, 4) MMVQ(f16, __half, 8) MMVQ(f16, __half, 16)
  MMVQ(f32, float, 1) MMVQ(f32, float, 2) MMVQ(f32, float, 4) MMVQ(f32, float, 8) MMVQ(f32, float, 16)
  if (a.entry == "int8_quantize_f16") return run_quantize<__half>(a, int8_quantize_f16), 0;
  if (a.entry == "int8_quantize_f32") return run_quantize<float>(a, int8_quantize_f32), 0;
  harness::fail("unknown entry " + a.entry);
}
