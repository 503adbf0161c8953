"""Packing round trips, the exact bit layouts, and the numpy references against torch's own ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from edgec.errors import EdgecError
from edgec.kernels.packing import (PackingError, dequantize_int8, dequantize_lowbit, int8_activation_scale,
                                   int8_linear_reference, lowbit_linear_reference, pack_csr_conv2d, pack_lowbit,
                                   pack_lowbit_codes, quantize_int8_activation, quantize_int8_weight, quantize_lowbit,
                                   repack_gemv, sparse_conv2d_reference, unpack_csr_conv2d, unpack_gemv_codes,
                                   unpack_lowbit_codes, words_per_row)


def test_csr_round_trip_and_layout():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3, 3, 2)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0
    w[2] = 0  # an empty row
    p = pack_csr_conv2d(torch.from_numpy(w))
    np.testing.assert_array_equal(unpack_csr_conv2d(p), w)
    assert p.row_ptr.dtype == np.int32 and p.col_idx.dtype == np.int32 and p.values.dtype == np.float32
    assert p.row_ptr[0] == 0 and p.row_ptr[-1] == p.nnz == np.count_nonzero(w)
    assert p.row_ptr[3] == p.row_ptr[2]  # empty row
    assert p.sparsity == pytest.approx(1 - np.count_nonzero(w) / w.size)
    for co in range(6):  # col = (c*KH + r)*KW + s, increasing within the row
        cols = p.col_idx[p.row_ptr[co]:p.row_ptr[co + 1]]
        assert np.all(np.diff(cols) > 0)
        c, r, s = np.unravel_index(cols, (3, 3, 2))
        np.testing.assert_array_equal(w[co, c, r, s], p.values[p.row_ptr[co]:p.row_ptr[co + 1]])


@pytest.mark.parametrize("stride,padding,dilation", [(1, 0, 1), (2, 1, 1), ((2, 1), (1, 2), (1, 2)), (3, 2, 2)])
def test_sparse_conv_reference_matches_torch(stride, padding, dilation):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    w[rng.random(w.shape) < 0.6] = 0
    x = rng.standard_normal((2, 3, 10, 11)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    ref = sparse_conv2d_reference(x, pack_csr_conv2d(w), b, stride=stride, padding=padding, dilation=dilation)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride=stride,
                        padding=padding, dilation=dilation).numpy()
    np.testing.assert_allclose(ref, expected, rtol=1e-5, atol=1e-5)


def test_sparse_conv_reference_rejects_bad_input():
    p = pack_csr_conv2d(np.ones((2, 3, 5, 5), np.float32))
    with pytest.raises(PackingError):
        sparse_conv2d_reference(np.ones((1, 4, 8, 8), np.float32), p)  # wrong channel count
    with pytest.raises(EdgecError, match="does not fit"):
        sparse_conv2d_reference(np.ones((1, 3, 3, 3), np.float32), p)  # kernel larger than input


def test_bit_layout_is_lsb_first_two_complement():
    # 4 bits, K = 9: words_per_row = 2, second word holds 1 real field + 7 zero padding fields
    q = np.array([[1, -1, 2, -7, 0, 7, 3, -2, -3]], np.int8)
    p = pack_lowbit_codes(q, np.ones(1, np.float32), 4)
    assert p.words.shape == (1, 2) and p.words.dtype == np.uint32
    expected0 = sum((int(v) & 0xF) << (4 * j) for j, v in enumerate(q[0, :8]))
    assert int(p.words[0, 0]) == expected0
    assert int(p.words[0, 1]) == (-3 & 0xF)  # padding bits are zero
    # 8 bits: the words are the little-endian bytes of the int8 row
    q8 = np.arange(-6, 6, dtype=np.int8)[None, :]
    p8 = pack_lowbit_codes(q8, np.ones(1), 8)
    np.testing.assert_array_equal(p8.words.view(np.int8), q8)
    # 1 bit: +1 -> 1, -1 -> 0
    p1 = pack_lowbit_codes(np.array([[1, -1, -1, 1] + [1] * 30], np.int8), np.ones(1), 1)
    assert p1.words.shape == (1, 2) and int(p1.words[0, 0]) == (0b1001 | (0xFFFFFFF0 & 0xFFFFFFFF))
    assert int(p1.words[0, 1]) == 0b11


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
@pytest.mark.parametrize("k", [1, 31, 32, 33, 100])
def test_lowbit_round_trip(bits, k):
    rng = np.random.default_rng(bits + k)
    w = rng.standard_normal((5, k)).astype(np.float32)
    w[3] = 0
    q, s = quantize_lowbit(w, bits)
    p = pack_lowbit(w, bits)
    assert p.words.shape == (5, words_per_row(k, bits)) == (5, -(-k * bits // 32))
    np.testing.assert_array_equal(unpack_lowbit_codes(p), q)
    np.testing.assert_array_equal(dequantize_lowbit(p), q.astype(np.float32) * s[:, None])
    qmax = 2 ** (bits - 1) - 1
    if bits == 1:
        assert set(np.unique(q)) <= {-1, 1}
        np.testing.assert_allclose(s[:3], np.abs(w[:3]).mean(axis=1), rtol=1e-6)  # alpha = mean |w|
    else:
        assert np.abs(q).max() <= qmax and s[3] == 0 and not q[3].any()
        # quantization error is at most half a step per weight
        assert np.all(np.abs(dequantize_lowbit(p) - w) <= s[:, None] / 2 + 1e-6)
    # packing the unpacked codes gives the same words
    np.testing.assert_array_equal(pack_lowbit_codes(unpack_lowbit_codes(p), p.scales, bits).words, p.words)


def test_gemv_layout_is_even_odd_interleaved_offset_binary():
    # one row, K = 8 at 4 bits: codes 1..7, -7 -> offset binary u = q + 8
    q = np.array([[1, 2, 3, 4, 5, 6, 7, -7]], np.int8)
    g = repack_gemv(pack_lowbit_codes(q, np.ones(1, np.float32), 4))
    assert g.words.dtype == np.uint32 and g.words.shape == (16, 4) and g.kvec == 1 and g.padded_in_features == 32
    u = q[0].astype(np.uint32) + 8
    # even k in the low 16 bits (nibbles k0, k2, k4, k6), odd k in the high 16 bits (k1, k3, k5, k7)
    expected = sum(int(u[2 * p]) << (4 * p) | int(u[2 * p + 1]) << (16 + 4 * p) for p in range(4))
    assert int(g.words[0, 0]) == expected
    assert list(g.words[0, 1:]) == [0x88888888] * 3  # K padding: q = 0
    # 8 bits: bytes (k0, k2) low, (k1, k3) high; 1 bit: bit p = k 2p, bit 16 + p = k 2p + 1
    g8 = repack_gemv(pack_lowbit_codes(np.array([[1, -2, 3, -4]], np.int8), np.ones(1, np.float32), 8))
    assert int(g8.words[0, 0]) == (129 | 131 << 8 | 126 << 16 | 124 << 24)
    g1 = repack_gemv(pack_lowbit_codes(np.array([[1, -1, -1, 1]], np.int8), np.ones(1, np.float32), 1))
    assert int(g1.words[0, 0]) == (1 << 0 | 0 << 1 | 0 << 16 | 1 << 17)


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
@pytest.mark.parametrize("n,k", [(1, 1), (7, 100), (16, 128), (33, 1000)])
def test_gemv_round_trip(bits, n, k):
    p = pack_lowbit(np.random.default_rng(n * k + bits).standard_normal((n, k)), bits)
    g = repack_gemv(p)
    assert g.words.shape == (-(-n // 16) * 16, 4 * -(-k // (128 // bits)))
    np.testing.assert_array_equal(unpack_gemv_codes(g), unpack_lowbit_codes(p))
    np.testing.assert_array_equal(g.scales, p.scales)


def test_lowbit_rejects_bad_codes_and_widths():
    with pytest.raises(PackingError, match="one of 8, 4, 2, 1"):
        pack_lowbit(np.ones((2, 2)), bits=3)
    with pytest.raises(PackingError):
        pack_lowbit_codes(np.array([[2, 0]], np.int8), np.ones(1), 2)  # 2 bits is ternary
    with pytest.raises(PackingError):
        pack_lowbit_codes(np.array([[0, 1]], np.int8), np.ones(1), 1)  # 1 bit has no zero


def test_binaryconnect_weights_are_packed_exactly():
    # a BinaryConnect student's weights are already +-alpha per row: packing is lossless
    rng = np.random.default_rng(3)
    alpha = np.array([0.5, 0.125, 2.0], np.float32)
    w = np.where(rng.random((3, 40)) < 0.5, -1.0, 1.0).astype(np.float32) * alpha[:, None]
    np.testing.assert_array_equal(dequantize_lowbit(pack_lowbit(w, 1)), w)


@pytest.mark.parametrize("bits", [8, 4, 2, 1])
def test_lowbit_reference_matches_torch(bits):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((7, 45)).astype(np.float32)
    x = rng.standard_normal((3, 45)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    p = pack_lowbit(w, bits)
    expected = F.linear(torch.from_numpy(x), torch.from_numpy(dequantize_lowbit(p)), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(lowbit_linear_reference(x, p, b), expected, rtol=1e-5, atol=1e-5)


def test_int8_quantization_and_reference():
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 10)).astype(np.float32)
    w[1] = 0
    p = quantize_int8_weight(torch.from_numpy(w))
    assert p.q.shape == (6, 12) and not p.q[:, 10:].any()  # rows padded to K4 = 12 with zeros
    assert np.abs(p.q).max() == 127 and p.q.min() >= -127 and p.scales[1] == 0
    assert np.all(np.abs(dequantize_int8(p) - w) <= p.scales[:, None] / 2 + 1e-7)
    x = rng.standard_normal((4, 10)).astype(np.float32)
    s = int8_activation_scale(x)
    assert s == pytest.approx(np.abs(x).max() / 127)
    xq = quantize_int8_activation(x, s)
    assert xq.shape == (4, 12) and np.abs(xq).max() == 127
    # ties round to even, out-of-range values clip
    np.testing.assert_array_equal(quantize_int8_activation(np.array([[0.5, 1.5, 2.5, -2.5, 300, -300]]), 1.0)[0, :6],
                                  [0, 2, 2, -2, 127, -127])
    y = int8_linear_reference(x, p, s)
    expected = (xq[:, :10].astype(np.float64) * s) @ dequantize_int8(p).T.astype(np.float64)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    # and close to the float layer (W8A8 error)
    np.testing.assert_allclose(y, x @ w.T, atol=0.05)
