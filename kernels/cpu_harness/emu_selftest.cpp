// Self-test of cuda_cpu_emu.h against CUDA's documented semantics (checked by
// tests/kernels/test_kernels_emulator.py):
//   shfl:  for each (op, delta/mask, width) a 64-thread kernel writes what every lane received
//          (2 warps, so cross-warp leaks show); lanes shuffle their own id * 10 + warp.
//   sync:  a shared-memory tree reduction with __syncthreads, with half the threads returning early
//          in some blocks (exited threads must not deadlock __syncthreads of the others).
//   half:  float -> half bits for the floats in in.bin, and half -> float for all 65536 patterns.
//   dp4a:  __dp4a on pairs of words from in.bin.
//   half2: for word triples (a, b, c) of in.bin: __hadd2, __hsub2, __hmul2, __hfma2 (as half2 bits)
//          and __byte_perm(a, b, c & 0x7777).
#include "harness_io.h"

__global__ void shfl_kernel(int op, int arg, int width, int* out) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int v = lane * 10 + warp;
  int r;
  if (op == 0) r = __shfl_down_sync(0xffffffffu, v, arg, width);
  else if (op == 1) r = __shfl_xor_sync(0xffffffffu, v, arg, width);
  else r = __shfl_sync(0xffffffffu, v, arg, width);
  out[blockIdx.x * blockDim.x + threadIdx.x] = r;
}

__global__ void sync_kernel(const int* in, int* out, int n) {
  __shared__ int buf[256];
  const int t = threadIdx.x;
  // odd blocks: threads >= 128 leave before any barrier (their buf slots are never read)
  if ((blockIdx.x & 1) && t >= 128) return;
  const int live = (blockIdx.x & 1) ? 128 : 256;
  buf[t] = (blockIdx.x * 256 + t < n) ? in[blockIdx.x * 256 + t] : 0;
  __syncthreads();
  for (int s = live / 2; s > 0; s >>= 1) {
    if (t < s) buf[t] += buf[t + s];
    __syncthreads();
  }
  if (t == 0) out[blockIdx.x] = buf[0];
}

int main(int argc, char** argv) {
  harness::Args a(argc, argv);
  if (a.entry == "shfl") {
    std::vector<int> out(128);
    edgec_emu::launch(shfl_kernel, dim3(2), dim3(64), a.i("op"), a.i("arg"), a.i("width"), out.data());
    harness::write(a.dir, "out", out, out.size());
  } else if (a.entry == "sync") {
    const int n = a.i("n"), blocks = (n + 255) / 256;
    auto in = harness::read<int>(a.dir, "in", n);
    std::vector<int> out(blocks);
    edgec_emu::launch(sync_kernel, dim3(blocks), dim3(256), in.data(), out.data(), n);
    harness::write(a.dir, "out", out, out.size());
  } else if (a.entry == "half") {
    const int n = a.i("n");
    auto in = harness::read<float>(a.dir, "in", n);
    std::vector<uint16_t> h(n);
    for (int i = 0; i < n; ++i) h[i] = __float2half(in[i]).bits;
    std::vector<float> f(65536);
    for (int i = 0; i < 65536; ++i) f[i] = __half2float(__half{uint16_t(i)});
    harness::write(a.dir, "h", h, h.size());
    harness::write(a.dir, "f", f, f.size());
  } else if (a.entry == "dp4a") {
    const int n = a.i("n");
    auto in = harness::read<int>(a.dir, "in", 3 * n);
    std::vector<int> out(n);
    for (int i = 0; i < n; ++i) out[i] = __dp4a(in[3 * i], in[3 * i + 1], in[3 * i + 2]);
    harness::write(a.dir, "out", out, out.size());
  } else if (a.entry == "half2") {
    const int n = a.i("n");
    auto in = harness::read<unsigned>(a.dir, "in", 3 * n);
    std::vector<unsigned> out(5 * size_t(n));
    auto h2 = [](unsigned u) { __half2 h; std::memcpy(&h, &u, 4); return h; };
    auto u32 = [](__half2 h) { unsigned u; std::memcpy(&u, &h, 4); return u; };
    for (int i = 0; i < n; ++i) {
      const __half2 x = h2(in[3 * i]), y = h2(in[3 * i + 1]), z = h2(in[3 * i + 2]);
      out[5 * i] = u32(__hadd2(x, y));
      out[5 * i + 1] = u32(__hsub2(x, y));
      out[5 * i + 2] = u32(__hmul2(x, y));
      out[5 * i + 3] = u32(__hfma2(x, y, z));
      out[5 * i + 4] = __byte_perm(in[3 * i], in[3 * i + 1], in[3 * i + 2] & 0x7777u);
    }
    harness::write(a.dir, "out", out, out.size());
  } else {
    harness::fail("unknown mode " + a.entry);
  }
}
