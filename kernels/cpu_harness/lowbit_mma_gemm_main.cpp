// CPU driver for kernels/lowbit_mma_gemm.cu (built with -include cuda_cpu_emu.h; mma.sync runs as its
// portable shuffle equivalent). Inputs x.bin (f16 bits [M, KP]), words.bin (uint32 [NP/8, KV, 32, 4]),
// scales.bin, [bias.bin]; output y.bin (f16 bits [M, N]). Arguments: M N NP KV bits has_bias grid block.
#include "../lowbit_mma_gemm.cu"
#include "harness_io.h"

using MmaKernel = void (*)(const __half*, const uint4*, const float*, const float*, __half*, int, int, int);

static void run(const harness::Args& a, MmaKernel kernel) {
  const int M = a.i("M"), N = a.i("N"), NP = a.i("NP"), KV = a.i("KV"), bits = a.i("bits");
  const size_t kp = size_t(KV) * 16 * (32 / bits);
  auto x = harness::read<__half>(a.dir, "x", size_t(M) * kp);
  auto words = harness::read<uint4>(a.dir, "words", size_t(NP / 8) * KV * 32);
  auto scales = harness::read<float>(a.dir, "scales", N);
  std::vector<float> bias;
  if (a.i("has_bias")) bias = harness::read<float>(a.dir, "bias", N);
  std::vector<__half> y(size_t(M) * N ? size_t(M) * N : 1);
  edgec_emu::launch(kernel, a.d3("grid"), a.d3("block"), x.data(), words.data(), scales.data(),
                    bias.empty() ? nullptr : bias.data(), y.data(), M, N, KV);
  harness::write(a.dir, "y", y, size_t(M) * N);
}

int main(int argc, char** argv) {
  harness::Args a(argc, argv);
  if (a.entry == "lbmma_f16_w8") return run(a, lbmma_f16_w8), 0;
  if (a.entry == "lbmma_f16_w4") return run(a, lbmma_f16_w4), 0;
  if (a.entry == "lbmma_f16_w2") return run(a, lbmma_f16_w2), 0;
  harness::fail("unknown entry " + a.entry);
}
