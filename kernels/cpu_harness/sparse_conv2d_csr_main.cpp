// CPU driver for kernels/sparse_conv2d_csr.cu (built with -include cuda_cpu_emu.h).
// Inputs x.bin (f32, or f16 bits), row_ptr.bin, col_idx.bin, values.bin, [bias.bin]; output y.bin.
#include "../sparse_conv2d_csr.cu"
#include "harness_io.h"

template <class T>
static void run(const harness::Args& a, void (*kernel)(const T*, const int*, const int*, const float*,
                                                        const float*, T*, int, int, int, int, int, int,
                                                        int, int, int, int, int, int, int, int)) {
  const int N = a.i("N"), C = a.i("C"), H = a.i("H"), W = a.i("W"), Cout = a.i("Cout");
  const int KH = a.i("KH"), KW = a.i("KW"), OH = a.i("OH"), OW = a.i("OW"), nnz = a.i("nnz");
  auto x = harness::read<T>(a.dir, "x", size_t(N) * C * H * W);
  auto row_ptr = harness::read<int>(a.dir, "row_ptr", Cout + 1);
  auto col_idx = harness::read<int>(a.dir, "col_idx", nnz);
  auto values = harness::read<float>(a.dir, "values", nnz);
  std::vector<float> bias;
  if (a.i("has_bias")) bias = harness::read<float>(a.dir, "bias", Cout);
  const size_t ny = size_t(N) * Cout * OH * OW;
  std::vector<T> y(ny ? ny : 1);
  edgec_emu::launch(kernel, a.d3("grid"), a.d3("block"), x.data(), row_ptr.data(), col_idx.data(),
                    values.data(), bias.empty() ? nullptr : bias.data(), y.data(), C, H, W, Cout,
                    KH, KW, OH, OW, a.i("sh"), a.i("sw"), a.i("ph"), a.i("pw"), a.i("dh"), a.i("dw"));
  harness::write(a.dir, "y", y, ny);
}

int main(int argc, char** argv) {
  harness::Args a(argc, argv);
  if (a.entry == "sparse_conv2d_csr_f32") run<float>(a, sparse_conv2d_csr_f32);
  else if (a.entry == "sparse_conv2d_csr_f16") run<__half>(a, sparse_conv2d_csr_f16);
  else harness::fail("unknown entry " + a.entry);
  return 0;
}
