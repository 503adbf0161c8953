// CPU driver for kernels/int8_gemm_dp4a.cu: quantize_int8_f32 then int8_gemm_dp4a, as ops.int8_linear.
// Inputs x.bin (f32 [M, K]), wq.bin (int8 [N, K4]), w_scales.bin, [bias.bin]; outputs xq.bin, y.bin.
#include "../int8_gemm_dp4a.cu"
#include "harness_io.h"

int main(int argc, char** argv) {
  harness::Args a(argc, argv);
  if (a.entry != "int8_gemm_dp4a") harness::fail("unknown entry " + a.entry);
  const int M = a.i("M"), N = a.i("N"), K = a.i("K"), K4 = a.i("K4");
  const float x_scale = a.f("x_scale");
  auto x = harness::read<float>(a.dir, "x", size_t(M) * K);
  // int8 rows as int32 words: allocate as int so the kernel's int reads are aligned
  std::vector<int> wq(size_t(N) * K4 / 4 + 1);
  {
    auto raw = harness::read<signed char>(a.dir, "wq", size_t(N) * K4);
    std::memcpy(wq.data(), raw.data(), size_t(N) * K4);
  }
  auto w_scales = harness::read<float>(a.dir, "w_scales", N);
  std::vector<float> bias;
  if (a.i("has_bias")) bias = harness::read<float>(a.dir, "bias", N);
  std::vector<int> xq(size_t(M) * K4 / 4 + 1);
  edgec_emu::launch(quantize_int8_f32, a.d3("qgrid"), a.d3("qblock"), x.data(),
                    reinterpret_cast<signed char*>(xq.data()), x_scale, M, K, K4);
  std::vector<float> y(size_t(M) * N ? size_t(M) * N : 1);
  edgec_emu::launch(int8_gemm_dp4a, a.d3("grid"), a.d3("block"), xq.data(), wq.data(),
                    w_scales.data(), x_scale, bias.empty() ? nullptr : bias.data(), y.data(), M, N,
                    K4 / 4);
  std::vector<signed char> xq_bytes(size_t(M) * K4 + 1);
  std::memcpy(xq_bytes.data(), xq.data(), size_t(M) * K4);
  harness::write(a.dir, "xq", xq_bytes, size_t(M) * K4);
  harness::write(a.dir, "y", y, size_t(M) * N);
}
