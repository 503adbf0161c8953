"""The unmodified CUDA kernels, run on the CPU emulator, against the numpy references.

Shapes are chosen to hit the awkward paths: tails that are not multiples of 32/8/4, more than one
block per plane, more nonzeros per row than one shared-memory chunk, empty and all-zero rows,
batch > 1, stride/padding/dilation. The launch geometry is the one ``edgec.kernels.ops`` uses.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from edgec.kernels.ops import int8_launch, lowbit_launch, mma_launch, sparse_conv2d_launch
from edgec.kernels.packing import (CsrConv2dWeight, conv2d_output_size, int8_linear_reference, pack_csr_conv2d,
                                   pack_lowbit, padded_k, quantize_int8_activation, quantize_int8_weight, repack_gemv, repack_mma,
                                   sparse_conv2d_reference, unpack_lowbit_codes)


def _sparse_weight(rng, shape, sparsity, empty_rows=()):
    w = rng.standard_normal(shape).astype(np.float32)
    w[rng.random(shape) < sparsity] = 0.0
    for r in empty_rows:
        w[r] = 0.0
    return w


# (N, C, H, W, Cout, KH, KW, stride, padding, dilation, sparsity, bias)
CONV_CASES = {
    "3x3-pad1-bias-empty-row": (2, 3, 7, 9, 5, 3, 3, (1, 1), (1, 1), (1, 1), 0.7, True),
    "strided-dilated-asym": (1, 4, 11, 10, 6, 3, 3, (2, 1), (1, 2), (1, 2), 0.6, True),
    "chunks-and-blocks": (2, 20, 13, 13, 3, 3, 3, (1, 1), (1, 1), (1, 1), 0.15, False),  # ~150 nnz/row, 169 px
    "5x3-stride3-nopad": (3, 2, 17, 8, 4, 5, 3, (3, 3), (0, 0), (1, 1), 0.5, True),
    "1x1-fully-sparse": (2, 5, 4, 6, 3, 1, 1, (1, 1), (0, 0), (1, 1), 1.0, False),
    "pad-exceeds-kernel": (1, 2, 3, 3, 2, 2, 2, (2, 2), (3, 3), (2, 2), 0.3, True),
}


# every case in fp32; the fp16 variant (same code, other I/O type) on a subset
CONV_PARAMS = [(case, "f32") for case in CONV_CASES] + [
    (case, "f16") for case in ("3x3-pad1-bias-empty-row", "chunks-and-blocks", "pad-exceeds-kernel")]


@pytest.mark.parametrize("case,dtype", CONV_PARAMS, ids=[f"{c}-{d}" for c, d in CONV_PARAMS])
def test_sparse_conv2d_csr_matches_reference(emu, case, dtype):
    n, c, h, w, cout, kh, kw, stride, padding, dilation, sparsity, with_bias = CONV_CASES[case]
    rng = np.random.default_rng(zlib.crc32(case.encode()))
    weight = _sparse_weight(rng, (cout, c, kh, kw), sparsity, empty_rows=(1,) if cout > 2 else ())
    packed = pack_csr_conv2d(weight)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    if dtype == "f16":
        x = x.astype(np.float16).astype(np.float32)  # the kernel sees exactly these values
    bias = rng.standard_normal(cout).astype(np.float32) if with_bias else None
    oh, ow = conv2d_output_size(h, w, kh, kw, stride, padding, dilation)
    grid, block = sparse_conv2d_launch(n, cout, oh, ow)
    inputs = {"x": x.astype(np.float16) if dtype == "f16" else x, "row_ptr": packed.row_ptr,
              "col_idx": packed.col_idx, "values": packed.values}
    if bias is not None:
        inputs["bias"] = bias
    out_dtype = np.float16 if dtype == "f16" else np.float32
    y = emu.run("sparse_conv2d_csr", f"sparse_conv2d_csr_{dtype}", inputs, {"y": (out_dtype, n * cout * oh * ow)},
                N=n, C=c, H=h, W=w, Cout=cout, KH=kh, KW=kw, OH=oh, OW=ow, nnz=packed.nnz,
                sh=stride[0], sw=stride[1], ph=padding[0], pw=padding[1], dh=dilation[0], dw=dilation[1],
                has_bias=int(bias is not None), grid=grid, block=block)["y"]
    y = y.astype(np.float32).reshape(n, cout, oh, ow)
    kw_args = {"stride": stride, "padding": padding, "dilation": dilation}
    ref = sparse_conv2d_reference(x, packed, bias, **kw_args)
    # error bound: fp32 accumulation over |x|*|w| (+ fp16 output rounding for the f16 variant)
    abs_packed = CsrConv2dWeight(packed.row_ptr, packed.col_idx, np.abs(packed.values), packed.shape)
    bound = sparse_conv2d_reference(np.abs(x), abs_packed, None if bias is None else np.abs(bias), **kw_args)
    tol = 2e-6 * bound + 1e-6 + (1e-3 * np.abs(ref) if dtype == "f16" else 0)
    assert np.all(np.abs(y - ref) <= tol), f"max error {np.abs(y - ref).max()}"
    if cout > 2:  # the emptied output channel is exactly its bias
        np.testing.assert_array_equal(y[:, 1], np.broadcast_to(0.0 if bias is None else bias[1], y[:, 1].shape)
                                      .astype(out_dtype).astype(np.float32))
    if sparsity == 1.0:
        assert not y.any()


# (M, N, K): K tails inside a 128-bit vector, 1 / 2 / 4 warps per row group (kt 32 / 64 / 128),
# rows past N in the last block, M past the block's rows (masked), several blocks along y
LOWBIT_SHAPES = [(1, 7, 100), (1, 13, 257), (1, 4, 1), (2, 5, 33), (3, 9, 1100), (5, 6, 64), (9, 20, 2100)]


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
@pytest.mark.parametrize("shape", LOWBIT_SHAPES, ids=[f"M{m}-N{n}-K{k}" for m, n, k in LOWBIT_SHAPES])
def test_lowbit_kernels_match_reference(emu, bits, shape):
    _run_lowbit(emu, bits, shape, "f32", with_bias=shape[0] % 2 == 1)


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
@pytest.mark.parametrize("shape", [(1, 6, 70), (3, 5, 45), (1, 17, 4100), (6, 9, 300)],
                         ids=["gemv", "m4", "kt128", "m8"])
def test_lowbit_kernels_fp16_activations(emu, bits, shape):
    _run_lowbit(emu, bits, shape, "f16", with_bias=True)


def test_lowbit_launch_shapes():
    assert lowbit_launch(1, 4096, 128, 4, half=True) == ("lbgemv_f16_w4_m1", (1024, 1, 1), (128, 1, 1), 1, 128)
    assert lowbit_launch(1, 11008, 32, 1, half=True)[1:] == ((688, 1, 1), (128, 1, 1), 1, 32)  # 16 rows / block
    assert lowbit_launch(3, 10, 64, 8)[0] == "lbgemv_f32_w8_m4" and lowbit_launch(3, 10, 64, 8)[4] == 64
    assert lowbit_launch(16, 10, 8, 4)[1:4] == ((1, 2, 1), (128, 1, 1), 8)
    assert lowbit_launch(6, 10, 8, 2, half=True)[0] == "lbgemv_f16_w2_m4"  # no f16 2-bit MB = 8


def _run_lowbit(emu, bits, shape, dtype, with_bias):
    m, n, k = shape
    rng = np.random.default_rng(bits * 1000 + m * 100 + n + k)
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[n // 2] = 0.0  # an all-zero output channel: scale 0 (bits >= 2) / alpha 0 (1 bit)
    packed = pack_lowbit(w, bits)
    g = repack_gemv(packed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    if dtype == "f16":
        x = x.astype(np.float16).astype(np.float32)
    xp = np.zeros((m, g.padded_in_features), np.float32)
    xp[:, :k] = x  # the zero padding ops adds
    bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
    entry, grid, block, mb, kt = lowbit_launch(m, n, g.kvec, bits, half=dtype == "f16")
    inputs = {"x": xp.astype(np.float16) if dtype == "f16" else xp, "words": g.words, "scales": g.scales}
    if bias is not None:
        inputs["bias"] = bias
    out_dtype = np.float16 if dtype == "f16" else np.float32
    y = emu.run("lowbit", entry, inputs, {"y": (out_dtype, m * n)}, M=m, N=n, NP=g.words.shape[0], kvec=g.kvec,
                kt=kt, has_bias=int(bias is not None), grid=grid, block=block)["y"].astype(np.float32).reshape(m, n)
    q = unpack_lowbit_codes(packed).astype(np.float64)
    ref = (x.astype(np.float64) @ q.T) * packed.scales + (0 if bias is None else bias)
    bound = (np.abs(x) @ np.abs(q).T) * packed.scales + (0 if bias is None else np.abs(bias))
    # fp16: products and sums of <= 16 terms in fp16 (HFMA2), then fp32; fp16 output rounding
    tol = (2e-6 * bound + 1e-6) if dtype == "f32" else (2e-3 * bound + 1e-3 * np.abs(ref) + 1e-3)
    assert np.all(np.abs(y - ref) <= tol), f"max error {np.abs(y - ref).max()}"
    np.testing.assert_allclose(y[:, n // 2], 0.0 if bias is None else bias[n // 2], rtol=1e-3)


# (M, N, K): one row / a full m16 tile / rows 8..15 partly live; K tails, several blocks along N
MMA_SHAPES = [(1, 7, 300), (16, 20, 1100), (9, 33, 64), (4, 16, 2100)]


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("shape", MMA_SHAPES, ids=[f"M{m}-N{n}-K{k}" for m, n, k in MMA_SHAPES])
def test_lowbit_tensor_core_kernel_matches_reference(emu, bits, shape):
    """mma.sync runs as its portable shuffle equivalent: checks the fragment mapping, packing, reduction."""
    m, n, k = shape
    rng = np.random.default_rng(bits * 31 + m * 7 + n + k)
    w = rng.standard_normal((n, k)).astype(np.float32)
    w[n // 2] = 0.0
    packed = pack_lowbit(w, bits)
    g = repack_gemv(packed)
    words = repack_mma(g)
    kv = words.shape[1]
    x = rng.standard_normal((m, k)).astype(np.float16).astype(np.float32)
    xp = np.zeros((m, kv * 16 * (32 // bits)), np.float32)
    xp[:, :k] = x
    bias = rng.standard_normal(n).astype(np.float32)
    grid, block = mma_launch(words.shape[0] * 8)
    y = emu.run("lowbit_mma", f"lbmma_f16_w{bits}", {"x": xp.astype(np.float16), "words": words,
                                                      "scales": g.scales, "bias": bias},
                {"y": (np.float16, m * n)}, M=m, N=n, NP=words.shape[0] * 8, KV=kv, bits=bits, has_bias=1,
                grid=grid, block=block)["y"].astype(np.float32).reshape(m, n)
    q = unpack_lowbit_codes(packed).astype(np.float64)
    ref = (x.astype(np.float64) @ q.T) * packed.scales + bias
    bound = (np.abs(x) @ np.abs(q).T) * packed.scales + np.abs(bias)
    assert np.all(np.abs(y - ref) <= 1e-5 * bound + 1e-3 * np.abs(ref) + 1e-3), f"max error {np.abs(y - ref).max()}"
    np.testing.assert_allclose(y[:, n // 2], bias[n // 2], rtol=1e-3)


# (M, N, K): one tile; K tail + two K stages + several tiles each way; wide N
INT8_SHAPES = [(1, 1, 1), (3, 5, 7), (33, 35, 70), (2, 40, 130), (40, 3, 64)]


@pytest.mark.parametrize("shape", INT8_SHAPES, ids=[f"M{m}-N{n}-K{k}" for m, n, k in INT8_SHAPES])
def test_int8_dp4a_matches_reference(emu, shape):
    m, n, k = shape
    rng = np.random.default_rng(m * 7 + n * 3 + k)
    w = rng.standard_normal((n, k)).astype(np.float32)
    if n > 2:
        w[2] = 0.0
    packed = quantize_int8_weight(w)
    x = rng.standard_normal((m, k)).astype(np.float32) * 2
    x_scale = 0.02
    x.flat[: min(x.size, 6)] = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 100.0])[: min(x.size, 6)] * x_scale  # ties, clip
    bias = rng.standard_normal(n).astype(np.float32) if m % 2 else None
    k4 = padded_k(k)
    inputs = {"x": x, "wq": packed.q, "w_scales": packed.scales}
    if bias is not None:
        inputs["bias"] = bias
    out = emu.run("int8_gemm_dp4a", "int8_gemm_dp4a", inputs, {"xq": (np.int8, m * k4), "y": (np.float32, m * n)},
                  M=m, N=n, K=k, K4=k4, x_scale=repr(float(np.float32(x_scale))), has_bias=int(bias is not None),
                  **int8_launch(m, n, k4))
    np.testing.assert_array_equal(out["xq"].reshape(m, k4), quantize_int8_activation(x, x_scale))
    ref = int8_linear_reference(x, packed, x_scale, bias)
    np.testing.assert_allclose(out["y"].reshape(m, n), ref, rtol=1e-6, atol=1e-6)
