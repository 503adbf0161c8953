"""The CPU emulation header itself (kernels/cuda_cpu_emu.h) against CUDA's documented semantics.

If these hold, a kernel that passes on the emulator has correct indexing, synchronisation and
warp-level data flow; what the emulator cannot show (timing, memory model subtleties beyond
__syncthreads, performance) is left to the GPU tests.
"""

from __future__ import annotations

import numpy as np
import pytest


def _expected_shuffle(op: int, arg: int, width: int) -> np.ndarray:
    out = np.zeros(128, np.int32)
    for block in range(2):
        for t in range(64):
            lane, warp = t % 32, t // 32
            if op == 0:    # __shfl_down_sync: no wrap past the width-segment's end
                src = lane + arg if (lane % width) + arg < width else lane
            elif op == 1:  # __shfl_xor_sync: later width-groups are out of reach
                src = lane ^ arg
                src = src if src < (lane // width + 1) * width else lane
            else:          # __shfl_sync: srcLane modulo width, inside the caller's segment
                src = (lane // width) * width + arg % width
            out[block * 64 + t] = src * 10 + warp
    return out


@pytest.mark.parametrize("op,arg,width", [(0, 1, 32), (0, 16, 32), (0, 3, 16), (0, 5, 8),
                                          (1, 1, 32), (1, 16, 32), (1, 4, 8), (1, 12, 8),
                                          (2, 0, 32), (2, 7, 32), (2, 37, 16), (2, 3, 4)])
def test_warp_shuffles_match_cuda_semantics(emu, op, arg, width):
    out = emu.run("selftest", "shfl", {}, {"out": (np.int32, 128)}, op=op, arg=arg, width=width)["out"]
    np.testing.assert_array_equal(out, _expected_shuffle(op, arg, width))


def test_syncthreads_reduction_with_early_exits(emu):
    rng = np.random.default_rng(1)
    n = 256 * 5 - 17  # 5 blocks, the last one partial; odd blocks lose half their threads early
    x = rng.integers(-1000, 1000, n).astype(np.int32)
    out = emu.run("selftest", "sync", {"in": x}, {"out": (np.int32, 5)}, n=n)["out"]
    padded = np.zeros(256 * 5, np.int64)
    padded[:n] = x
    blocks = padded.reshape(5, 256)
    expected = [blocks[b, :128].sum() if b % 2 else blocks[b].sum() for b in range(5)]
    np.testing.assert_array_equal(out, expected)


def test_half_conversions_match_ieee_round_to_nearest_even(emu):
    rng = np.random.default_rng(2)
    positive = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)  # finite halves
    halfway = ((positive[:-1] + positive[1:]) / 2).astype(np.float32)[::3]  # exact ties: round to even
    halfway = np.concatenate([halfway, -halfway])
    nudged = np.nextafter(halfway, np.float32(np.inf))  # just off the ties
    special = np.array([0.0, -0.0, 65504.0, 65519.996, 65520.0, 1e9, -1e9, 5.96e-8, 2.98e-8, 2.99e-8,
                        6.1e-5, np.inf, -np.inf, 1.0 + 2**-11, 1.0 + 3 * 2**-11], np.float32)
    floats = np.concatenate([special, halfway, nudged, rng.standard_normal(4000).astype(np.float32) * 300,
                             (rng.random(2000) * 1e-4).astype(np.float32)])
    out = emu.run("selftest", "half", {"in": floats}, {"h": (np.uint16, floats.size), "f": (np.float32, 65536)},
                  n=floats.size)
    with np.errstate(over="ignore"):  # 1e9 -> inf is the point
        expected = floats.astype(np.float16).view(np.uint16)
    np.testing.assert_array_equal(out["h"], expected)
    all_halves = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    nan = np.isnan(all_halves)
    assert np.isnan(out["f"][nan]).all()
    np.testing.assert_array_equal(out["f"][~nan].view(np.uint32), all_halves[~nan].view(np.uint32))


def test_dp4a_is_a_signed_byte_dot_product(emu):
    rng = np.random.default_rng(3)
    n = 500
    words = rng.integers(-(2**31), 2**31, (n, 3), dtype=np.int64).astype(np.int32)
    words[:, 2] = rng.integers(-(2**20), 2**20, n)
    out = emu.run("selftest", "dp4a", {"in": words}, {"out": (np.int32, n)}, n=n)["out"]
    a = words[:, 0:1].copy().view(np.int8).astype(np.int64)  # little-endian: byte i = bits 8i..8i+7
    b = words[:, 1:2].copy().view(np.int8).astype(np.int64)
    np.testing.assert_array_equal(out, (a * b).sum(axis=1) + words[:, 2])


def test_half2_arithmetic_rounds_once_and_byte_perm_selects_bytes(emu):
    rng = np.random.default_rng(5)
    n = 4000
    # halves of moderate range (|v| in [2^-6, 2^6]), so the float64 reference is exact before rounding
    vals = (rng.choice([-1, 1], (n, 3, 2)) * np.exp2(rng.uniform(-6, 6, (n, 3, 2)))).astype(np.float16)
    words = vals.view(np.uint32).reshape(n, 3)  # .x (low 16 bits) = element 0
    out = emu.run("selftest", "half2", {"in": words}, {"out": (np.uint32, 5 * n)}, n=n)["out"].reshape(n, 5)
    a, b, c = (vals[:, i].astype(np.float64) for i in range(3))
    for col, ref in enumerate((a + b, a - b, a * b, a * b + c)):
        np.testing.assert_array_equal(np.ascontiguousarray(out[:, col]).view(np.uint16).reshape(n, 2),
                                      ref.astype(np.float16).view(np.uint16), err_msg=f"op {col}")
    both = np.ascontiguousarray(words[:, :2]).view(np.uint8).reshape(n, 8)  # bytes 0-3: a, 4-7: b
    sel = (words[:, 2:3] >> (4 * np.arange(4, dtype=np.uint32))) & 7
    expected = np.ascontiguousarray(np.take_along_axis(both, sel.astype(np.int64), 1)).view(np.uint32)[:, 0]
    np.testing.assert_array_equal(out[:, 4], expected)
