// cuda_cpu_emu.h -- run unmodified edgec CUDA kernels on the CPU, to check their logic in CI.
//
// What it maps (only what edgec's kernels use):
//   __global__/__device__/__forceinline__/__launch_bounds__  -> plain C++ functions
//   threadIdx/blockIdx/blockDim/gridDim                      -> thread_local dim3 set per CPU thread
//   __shared__                                               -> `static` (one copy per kernel)
//   __syncthreads()                                          -> C++20 std::barrier over the block
//   __shfl_down_sync/__shfl_xor_sync/__shfl_sync             -> per-warp exchange slots + std::barrier
//   __dp4a, __popc, __float2int_rn, __ldg, __half + conversions, float4/float2/uint4/uint2,
//   __half2 + HADD2/HSUB2/HMUL2/HFMA2 + conversions, __byte_perm (PRMT)
// Inline PTX (lop3, mma, cp.async) cannot run here: kernels give such pieces an
// `#ifndef __CUDA_ARCH__` equivalent, and the gpu-marked tests check the PTX versions.
//
// Execution model: edgec_emu::launch(kernel, grid, block, args...) starts one std::thread per CUDA
// thread of a block; each thread walks the grid's blocks in order (x fastest, then y, then z) and
// all of them meet at an end-of-block barrier before the next block starts. So exactly one block
// is live at a time, which is what makes `static` a faithful stand-in for `__shared__` (CUDA gives
// every block its own copy; here the copy is reused by the next block, never shared by two live
// ones). Threads that `return` early drop out of the block's __syncthreads barrier and of their
// warp's shuffle barrier (arrive_and_drop), as exited threads do on the GPU.
//
// Shuffles are collective: every lane named in `mask` must reach the call, which must be the full
// active warp here (edgec's kernels only shuffle with all 32 lanes; the emulator aborts otherwise).
// blockDim.x*y*z must therefore be a multiple of 32 for kernels that shuffle.
//
// Use: g++ -std=c++20 -O2 -pthread -include kernels/cuda_cpu_emu.h driver.cpp   (or #include it
// before the .cu file). The .cu files guard their one CUDA-only include with #ifndef EDGEC_CPU_EMU.
#pragma once
#define EDGEC_CPU_EMU 1

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
using uint3 = dim3;
inline thread_local dim3 threadIdx{0, 0, 0}, blockIdx{0, 0, 0}, blockDim, gridDim;
constexpr int warpSize = 32;

struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(8) int2 { int x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };

namespace edgec_emu {

[[noreturn]] inline void die(const char* what) {
  std::fprintf(stderr, "cuda_cpu_emu: %s\n", what);
  std::abort();
}

// State of the launch in progress (one launch at a time per process).
struct LaunchState {
  unsigned nthreads = 0;
  std::unique_ptr<std::barrier<>> block_sync;                // __syncthreads of the live block
  std::vector<std::unique_ptr<std::barrier<>>> warp_sync;    // one per warp of the block
  std::vector<uint64_t> slots;                               // shuffle exchange, one per thread
  void reset_block() {
    block_sync = std::make_unique<std::barrier<>>(nthreads);
    for (size_t w = 0; w < warp_sync.size(); ++w) {
      unsigned lanes = std::min<unsigned>(32, nthreads - unsigned(w) * 32);
      warp_sync[w] = std::make_unique<std::barrier<>>(lanes);
    }
  }
};
inline LaunchState* g_state = nullptr;
inline thread_local unsigned t_tid = 0;  // linear thread id within the block

inline unsigned lane_id() { return t_tid & 31u; }
inline unsigned warp_id() { return t_tid >> 5; }

inline void check_mask(unsigned mask) {
  unsigned lanes = std::min<unsigned>(32, g_state->nthreads - warp_id() * 32);
  unsigned full = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
  if (mask != full) die("shuffle mask must name the whole active warp");
}

// Every lane publishes `v`, the warp meets, each lane reads lane `src`'s value, the warp meets
// again (so nobody overwrites a slot another lane has not read yet).
template <class T>
T exchange(T v, unsigned src_lane, bool take) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of an unsupported type");
  LaunchState& s = *g_state;
  uint64_t raw = 0;
  std::memcpy(&raw, &v, sizeof(T));
  s.slots[t_tid] = raw;
  s.warp_sync[warp_id()]->arrive_and_wait();
  T out = v;
  if (take) {
    unsigned src = warp_id() * 32 + src_lane;
    if (src >= s.nthreads) die("shuffle reads a lane outside the block");
    std::memcpy(&out, &s.slots[src], sizeof(T));
  }
  s.warp_sync[warp_id()]->arrive_and_wait();
  return out;
}

// Launch `kernel` over `grid` x `block`; returns when every block has run.
template <class... KArgs, class... Args>
void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, Args... args) {
  LaunchState s;
  s.nthreads = block.x * block.y * block.z;
  if (s.nthreads == 0 || s.nthreads > 1024) die("block size must be 1..1024 threads");
  s.warp_sync.resize((s.nthreads + 31) / 32);
  s.slots.assign(s.nthreads, 0);
  s.reset_block();
  g_state = &s;
  // The completion step runs once, after every thread has finished the block and before any
  // starts the next one: the only moment the block's barriers can be replaced safely.
  auto next_block = [&s]() noexcept { s.reset_block(); };
  std::barrier end_of_block(s.nthreads, next_block);
  std::vector<std::thread> threads;
  threads.reserve(s.nthreads);
  for (unsigned t = 0; t < s.nthreads; ++t) {
    threads.emplace_back([&, t]() {
      t_tid = t;
      threadIdx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
      blockDim = block;
      gridDim = grid;
      for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
          for (unsigned bx = 0; bx < grid.x; ++bx) {
            blockIdx = dim3(bx, by, bz);
            kernel(args...);
            s.block_sync->arrive_and_drop();
            s.warp_sync[t / 32]->arrive_and_drop();
            end_of_block.arrive_and_wait();
          }
    });
  }
  for (auto& th : threads) th.join();
  g_state = nullptr;
}

// IEEE binary16 <-> binary32, round-to-nearest-even (what __float2half does).
inline uint16_t float_to_half_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  if (u >= 0x7f800000u) return uint16_t(sign | 0x7c00u | (u > 0x7f800000u ? 0x200u : 0u));
  if (u >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to infinity
  if (u < 0x38800000u) {                                  // half subnormal (or zero)
    float a;
    std::memcpy(&a, &u, 4);
    return uint16_t(sign | uint32_t(std::nearbyint(a * 16777216.0f)));  // units of 2^-24
  }
  u += 0xc8000fffu + ((u >> 13) & 1u);  // rebias exponent 127 -> 15, round half to even
  return uint16_t(sign | (u >> 13));
}
inline float half_bits_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    float v = std::ldexp(float(man), -24);
    std::memcpy(&u, &v, 4);
    u |= sign;
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 112u) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace edgec_emu

inline void __syncthreads() { edgec_emu::g_state->block_sync->arrive_and_wait(); }

template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  edgec_emu::check_mask(mask);
  const unsigned lane = edgec_emu::lane_id(), w = unsigned(width);
  const bool take = (lane % w) + delta < w;  // past the segment's end: keep own value
  return edgec_emu::exchange(v, lane + delta, take);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  edgec_emu::check_mask(mask);
  const unsigned lane = edgec_emu::lane_id(), w = unsigned(width);
  const unsigned src = lane ^ unsigned(lane_mask);
  // CUDA: a lane may read from an earlier width-group, but reading a later one returns its own value
  const bool take = src < (lane / w + 1) * w;
  return edgec_emu::exchange(v, src, take);
}
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  edgec_emu::check_mask(mask);
  const unsigned lane = edgec_emu::lane_id(), w = unsigned(width);
  return edgec_emu::exchange(v, (lane / w) * w + unsigned(src_lane) % w, true);
}

// Signed 4 x int8 dot product plus accumulator, as __dp4a(int, int, int) on sm_61+.
inline int __dp4a(int a, int b, int c) {
  for (int i = 0; i < 4; ++i)
    c += int(int8_t(uint32_t(a) >> (8 * i))) * int(int8_t(uint32_t(b) >> (8 * i)));
  return c;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __float2int_rn(float x) { return int(std::nearbyint(x)); }  // default FE_TONEAREST
template <class T>
inline T __ldg(const T* p) { return *p; }

struct __half {
  uint16_t bits;
};
inline float __half2float(__half h) { return edgec_emu::half_bits_to_float(h.bits); }
inline __half __float2half(float f) { return __half{edgec_emu::float_to_half_bits(f)}; }
inline __half __float2half_rn(float f) { return __float2half(f); }

// __half2: two halves in one 32-bit word, .x in the low 16 bits (as in CUDA). The arithmetic rounds
// once to half (nearest even), as HADD2/HMUL2/HFMA2 do: computed in double (exact for halves of
// moderate range: products of two halves and their sums with a third), then rounded to the half grid.
struct alignas(4) __half2 {
  __half x, y;
};
inline __half2 __float2half2_rn(float f) { return __half2{__float2half(f), __float2half(f)}; }
inline __half2 __floats2half2_rn(float a, float b) { return __half2{__float2half(a), __float2half(b)}; }
inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
namespace edgec_emu {
inline __half h_round(double v) {  // one round-to-nearest-even of a double to binary16
  if (!std::isfinite(v) || v == 0.0) return __float2half(float(v));
  int e;
  std::frexp(std::fabs(v), &e);                              // |v| in [2^(e-1), 2^e)
  const double quantum = std::ldexp(1.0, std::max(e - 1, -14) - 10);  // half spacing there (subnormal: 2^-24)
  return __float2half(float(std::nearbyint(v / quantum) * quantum));  // exact half (or inf past 65504)
}
}  // namespace edgec_emu
inline __half2 __hadd2(__half2 a, __half2 b) {
  return {edgec_emu::h_round(double(__half2float(a.x)) + __half2float(b.x)),
          edgec_emu::h_round(double(__half2float(a.y)) + __half2float(b.y))};
}
inline __half2 __hsub2(__half2 a, __half2 b) {
  return {edgec_emu::h_round(double(__half2float(a.x)) - __half2float(b.x)),
          edgec_emu::h_round(double(__half2float(a.y)) - __half2float(b.y))};
}
inline __half2 __hmul2(__half2 a, __half2 b) {
  return {edgec_emu::h_round(double(__half2float(a.x)) * __half2float(b.x)),
          edgec_emu::h_round(double(__half2float(a.y)) * __half2float(b.y))};
}
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) {
  return {edgec_emu::h_round(double(__half2float(a.x)) * __half2float(b.x) + __half2float(c.x)),
          edgec_emu::h_round(double(__half2float(a.y)) * __half2float(b.y) + __half2float(c.y))};
}

// Byte permute (PRMT): result byte i = byte s_i of the 8-byte value {y, x} (x = bytes 0-3), where
// s_i is nibble i of s (low 3 bits; the sign-replicate mode is not emulated and aborts).
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const uint64_t v = (uint64_t(y) << 32) | x;
  unsigned out = 0;
  for (int i = 0; i < 4; ++i) {
    const unsigned sel = (s >> (4 * i)) & 0xfu;
    if (sel & 8u) edgec_emu::die("__byte_perm sign-replicate mode is not emulated");
    out |= unsigned((v >> (8 * sel)) & 0xffu) << (8 * i);
  }
  return out;
}

using std::max;
using std::min;
