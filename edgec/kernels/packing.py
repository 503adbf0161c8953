"""Weight formats of edgec's CUDA kernels, and the conversions to and from them (plain numpy).

Each format is specified exactly here; the ``kernels/*.cu`` header comments point back to it.

**CSR conv weights** (:class:`CsrConv2dWeight`, for ``kernels/sparse_conv2d_csr.cu``): a dense
``[Cout, C, KH, KW]`` filter bank is seen as a ``[Cout, C*KH*KW]`` matrix (row = output channel,
column ``k = (c*KH + r)*KW + s``) and stored as CSR: ``row_ptr`` int32 ``[Cout+1]``, ``col_idx``
int32 ``[nnz]`` (increasing within a row), ``values`` float32 ``[nnz]``. Exact zeros are dropped;
a row may be empty (that output channel is just its bias).

**Low-bit weights** (:class:`LowBitWeight`, for ``lowbit_gemv.cu`` / ``lowbit_gemm_smallbatch.cu``):
``W[o, k] = scales[o] * q[o, k]`` with ``bits`` in 8, 4, 2, 1.
- bits 8/4/2: ``q`` is a signed integer in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]`` (symmetric;
  2 bits is therefore ternary {-1, 0, +1}), stored as a ``bits``-wide two's-complement field.
- bits 1: ``q`` is +1 or -1 (BinaryConnect's +-alpha, alpha = ``scales[o]``), stored as 1 / 0.
- ``words`` uint32 ``[N, words_per_row]``, ``words_per_row = ceil(K*bits/32)``: each row is
  padded with zero bits to a whole 32-bit word. Element ``k`` is in word ``k // (32//bits)`` at bit
  offset ``bits * (k % (32//bits))``, least significant bits first (for 8 bits the words are the
  little-endian bytes of the int8 row).
- ``scales`` float32 ``[N]``: one per output channel.

**Low-bit "gemv" weights** (:class:`GemvWeight`, for ``lowbit_batched_gemv.cu``): the same codes
re-laid for 128-bit loads and LOP3 dequantization; :func:`repack_gemv` is its spec.

**INT8 weights** (:class:`Int8Weight`, for ``int8_gemm_dp4a.cu``): symmetric per-output-channel
``W ~= scales[o] * q[o, k]``, ``q`` int8 in [-127, 127] (never -128, so products stay symmetric),
``q`` stored ``[N, K4]`` with ``K4 = ceil(K/4)*4``, zero-padded so each row is whole int32 words for
``__dp4a``. Activations use one per-tensor scale: ``xq = clip(rint(x / x_scale), -127, 127)``.

The ``*_reference`` functions compute each op from the packed format in numpy; the tests hold the
CUDA kernels (on a GPU, or emulated on the CPU) and torch's own ops to them.

Example:
    >>> w = np.random.randn(16, 64).astype(np.float32)
    >>> p = pack_lowbit(w, bits=4)
    >>> p.words.shape, p.words.dtype
    ((16, 8), dtype('uint32'))
    >>> y = lowbit_linear_reference(np.ones((1, 64), np.float32), p)   # [1, 16]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgec.errors import EdgecError

LOWBIT_WIDTHS = (8, 4, 2, 1)


class PackingError(EdgecError):
    """Weights or inputs that a kernel format cannot represent."""


def _np(a: Any, dtype: Any = np.float32) -> np.ndarray:
    """numpy copy-free view of a numpy array or a (CPU or CUDA) torch tensor."""
    if hasattr(a, "detach"):  # torch.Tensor, without importing torch here
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


# --------------------------------------------------------------------------- CSR (sparse conv)
@dataclass(frozen=True)
class CsrConv2dWeight:
    """CSR filter bank: row ``co`` holds the nonzeros of ``weight[co]`` flattened in (c, r, s) order."""

    row_ptr: np.ndarray  # int32 [Cout + 1]
    col_idx: np.ndarray  # int32 [nnz]
    values: np.ndarray   # float32 [nnz]
    shape: tuple[int, int, int, int]  # (Cout, C, KH, KW)

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    @property
    def sparsity(self) -> float:
        """Fraction of weights that are zero (1.0 = all zero)."""
        total = int(np.prod(self.shape))
        return 1.0 - self.nnz / total if total else 0.0


def pack_csr_conv2d(weight: Any) -> CsrConv2dWeight:
    """CSR of a ``[Cout, C, KH, KW]`` conv weight (numpy or torch); exact zeros are dropped.

    Example:
        >>> p = pack_csr_conv2d(conv.weight)        # conv: a pruned nn.Conv2d
        >>> np.array_equal(unpack_csr_conv2d(p), conv.weight.detach().numpy())
        True
    """
    w = _np(weight)
    if w.ndim != 4:
        raise PackingError(f"conv weight must be [Cout, C, KH, KW], got shape {w.shape}",
                           hint="pass nn.Conv2d.weight (groups=1)")
    if w.size >= 2**31:
        raise PackingError("conv weight has more than 2^31 elements", hint="int32 CSR indices cannot address it")
    cout = w.shape[0]
    flat = w.reshape(cout, -1)
    rows, cols = np.nonzero(flat)  # row-major order: rows ascending, cols ascending within a row
    row_ptr = np.zeros(cout + 1, np.int32)
    np.cumsum(np.bincount(rows, minlength=cout), out=row_ptr[1:])
    return CsrConv2dWeight(row_ptr=row_ptr, col_idx=cols.astype(np.int32),
                           values=flat[rows, cols].astype(np.float32),
                           shape=tuple(int(d) for d in w.shape))  # type: ignore[arg-type]


def unpack_csr_conv2d(packed: CsrConv2dWeight) -> np.ndarray:
    """The dense float32 ``[Cout, C, KH, KW]`` weight of a :class:`CsrConv2dWeight`."""
    cout = packed.shape[0]
    row_ptr = _np(packed.row_ptr, np.int64)
    dense = np.zeros((cout, int(np.prod(packed.shape[1:]))), np.float32)
    rows = np.repeat(np.arange(cout), np.diff(row_ptr))
    dense[rows, _np(packed.col_idx, np.int64)] = _np(packed.values)
    return dense.reshape(packed.shape)


def conv2d_output_size(h: int, w: int, kh: int, kw: int, stride: tuple[int, int],
                       padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """``(OH, OW)`` of a convolution, as torch computes it."""
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if oh <= 0 or ow <= 0:
        raise PackingError(f"a {kh}x{kw} kernel (dilation {dilation}, padding {padding}) does not fit "
                           f"a {h}x{w} input", hint="use a larger input or more padding")
    return oh, ow


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def sparse_conv2d_reference(x: np.ndarray, packed: CsrConv2dWeight, bias: np.ndarray | None = None, *,
                            stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                            dilation: int | tuple[int, int] = 1) -> np.ndarray:
    """``[N, C, H, W]`` -> ``[N, Cout, OH, OW]`` float32, gathering input taps nonzero by nonzero.

    Same loop order as the kernel (one output channel, one nonzero at a time, all pixels at once),
    computed in float64 and rounded once, so it is a tight reference for fp32 kernels.

    Example:
        >>> y = sparse_conv2d_reference(x, pack_csr_conv2d(w), b, stride=2, padding=1)
    """
    x = _np(x, np.float64)
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    cout, c, kh, kw = packed.shape
    if x.ndim != 4 or x.shape[1] != c:
        raise PackingError(f"input must be [N, {c}, H, W], got {x.shape}")
    n, _, h, w = x.shape
    oh, ow = conv2d_output_size(h, w, kh, kw, (sh, sw), (ph, pw), (dh, dw))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    y = np.zeros((n, cout, oh, ow), np.float64)
    row_ptr, col_idx = _np(packed.row_ptr, np.int64), _np(packed.col_idx, np.int64)
    values = _np(packed.values, np.float64)
    for co in range(cout):
        for j in range(row_ptr[co], row_ptr[co + 1]):
            ci, rs = divmod(int(col_idx[j]), kh * kw)
            r, s = divmod(rs, kw)
            # taps (oh*sh + r*dh, ow*sw + s*dw) of the padded input, for every output pixel
            y[:, co] += values[j] * xp[:, ci, r * dh: r * dh + sh * (oh - 1) + 1: sh,
                                       s * dw: s * dw + sw * (ow - 1) + 1: sw]
    if bias is not None:
        y += _np(bias, np.float64)[None, :, None, None]
    return y.astype(np.float32)


# --------------------------------------------------------------------------- low-bit weights
@dataclass(frozen=True)
class LowBitWeight:
    """Bit-packed ``[N, K]`` weight: ``W[o, k] = scales[o] * q[o, k]``; format in the module docstring."""

    words: np.ndarray   # uint32 [N, words_per_row]
    scales: np.ndarray  # float32 [N]
    bits: int
    in_features: int    # K

    @property
    def out_features(self) -> int:
        return int(self.words.shape[0])

    @property
    def words_per_row(self) -> int:
        return int(self.words.shape[1])


def words_per_row(in_features: int, bits: int) -> int:
    """32-bit words per packed row: ``ceil(K * bits / 32)``."""
    return (in_features * bits + 31) // 32


def _check_bits(bits: int) -> None:
    if bits not in LOWBIT_WIDTHS:
        raise PackingError(f"unsupported weight bit width {bits}", hint="use one of 8, 4, 2, 1")


def quantize_lowbit(weight: Any, bits: int, scales: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel quantization of ``[N, K]`` weights to ``(q int8 [N, K], scales [N])``.

    Without ``scales``: bits >= 2 use ``max|w_row| / qmax`` (qmax = 2**(bits-1) - 1); 1 bit uses
    ``mean|w_row|`` (the L2-optimal +-alpha) and ``q = +1 where w >= 0 else -1``. Pass the scales a
    quantization-aware training used to reproduce its grid exactly.

    Example:
        >>> q, s = quantize_lowbit(np.array([[0.5, -1.0, 0.25]]), bits=2)   # ternary
        >>> q.tolist(), s.tolist()
        ([[1, -1, 0]], [1.0])
    """
    _check_bits(bits)
    w = _np(weight)
    if w.ndim != 2:
        raise PackingError(f"linear weight must be [out_features, in_features], got shape {w.shape}")
    if bits == 1:
        s = np.abs(w).mean(axis=1) if scales is None else _np(scales)
        return np.where(w >= 0, 1, -1).astype(np.int8), s.astype(np.float32)
    qmax = 2 ** (bits - 1) - 1
    s = (np.abs(w).max(axis=1) / qmax if w.shape[1] else np.zeros(w.shape[0])) if scales is None else _np(scales)
    s = s.astype(np.float32)
    safe = np.where(s > 0, s, 1.0).astype(np.float32)[:, None]  # all-zero row: q = 0, scale 0
    q = np.clip(np.rint(w / safe), -qmax, qmax).astype(np.int8)
    return q, s


def pack_lowbit_codes(q: np.ndarray, scales: Any, bits: int) -> LowBitWeight:
    """Pack integer codes ``q`` ``[N, K]`` (already on the grid) with their scales into words."""
    _check_bits(bits)
    q = np.asarray(q)
    n, k = q.shape
    qmax = 2 ** (bits - 1) - 1
    if bits == 1:
        if not np.isin(q, (-1, 1)).all():
            raise PackingError("1-bit codes must be +1 or -1")
        fields = (q > 0).astype(np.uint32)
    else:
        if np.abs(q.astype(np.int64)).max(initial=0) > qmax:
            raise PackingError(f"{bits}-bit codes must lie in [-{qmax}, {qmax}]")
        fields = q.astype(np.int64).astype(np.uint32) & np.uint32((1 << bits) - 1)  # two's complement
    epw, wpr = 32 // bits, words_per_row(k, bits)
    padded = np.zeros((n, wpr * epw), np.uint32)  # padding fields are zero bits
    padded[:, :k] = fields
    shifts = (np.arange(epw, dtype=np.uint32) * np.uint32(bits))[None, None, :]
    words = np.bitwise_or.reduce(padded.reshape(n, wpr, epw) << shifts, axis=2).astype(np.uint32)
    return LowBitWeight(words=words, scales=_np(scales).reshape(n), bits=bits, in_features=k)


def pack_lowbit(weight: Any, bits: int, scales: Any = None) -> LowBitWeight:
    """Quantize (:func:`quantize_lowbit`) and pack a ``[N, K]`` weight for the low-bit kernels.

    Example:
        >>> p = pack_lowbit(linear.weight, bits=1)     # BinaryConnect student: +-alpha per row
        >>> dequantize_lowbit(p).shape == tuple(linear.weight.shape)
        True
    """
    q, s = quantize_lowbit(weight, bits, scales)
    return pack_lowbit_codes(q, s, bits)


def unpack_lowbit_codes(packed: LowBitWeight) -> np.ndarray:
    """The integer codes ``q`` int8 ``[N, K]`` stored in ``packed.words``."""
    bits, k = packed.bits, packed.in_features
    words = _np(packed.words, np.int64).astype(np.uint32)  # accepts the int32 view torch buffers use
    epw = 32 // bits
    shifts = (np.arange(epw, dtype=np.uint32) * np.uint32(bits))[None, None, :]
    fields = ((words[:, :, None] >> shifts) & np.uint32((1 << bits) - 1)).reshape(words.shape[0], -1)[:, :k]
    if bits == 1:
        return np.where(fields == 1, 1, -1).astype(np.int8)
    signed = fields.astype(np.int64)
    signed -= (signed >> (bits - 1)) << bits  # sign-extend the two's-complement field
    return signed.astype(np.int8)


def dequantize_lowbit(packed: LowBitWeight) -> np.ndarray:
    """Float32 ``[N, K]`` weight ``scales[:, None] * q``."""
    return (unpack_lowbit_codes(packed).astype(np.float32) * _np(packed.scales)[:, None]).astype(np.float32)


def lowbit_linear_reference(x: Any, packed: LowBitWeight, bias: Any = None) -> np.ndarray:
    """``y = x @ W^T (+ bias)`` for ``x [..., K]`` and a packed weight; float32 ``[..., N]``.

    Accumulates ``q * x`` per row in float64, then scales, like the kernel (which scales once).
    """
    x = _np(x, np.float64)
    if x.shape[-1] != packed.in_features:
        raise PackingError(f"input has {x.shape[-1]} features, the weight expects {packed.in_features}")
    y = (x @ unpack_lowbit_codes(packed).T.astype(np.float64)) * _np(packed.scales, np.float64)
    if bias is not None:
        y = y + _np(bias, np.float64)
    return y.astype(np.float32)


# --------------------------------------------------------------------------- low-bit "gemv" format
GEMV_ROW_PAD = 16  # LBG_ROW_PAD in kernels/lowbit_batched_gemv.cuh: rows are padded to a multiple of it


@dataclass(frozen=True)
class GemvWeight:
    """A :class:`LowBitWeight` repacked for ``kernels/lowbit_batched_gemv.cu`` (see :func:`repack_gemv`)."""

    words: np.ndarray   # uint32 [NP, kvec * 4]: NP = N rounded up to GEMV_ROW_PAD, 4 words per 128-bit vector
    scales: np.ndarray  # float32 [N]
    bits: int
    in_features: int    # K
    out_features: int   # N

    @property
    def weights_per_vector(self) -> int:
        """WPV: weights per 128-bit vector (``128 // bits``)."""
        return 128 // self.bits

    @property
    def kvec(self) -> int:
        """128-bit vectors per row: ``ceil(K / WPV)``."""
        return int(self.words.shape[1]) // 4

    @property
    def padded_in_features(self) -> int:
        """KP = ``kvec * WPV``: the row length x must be zero-padded to."""
        return self.kvec * self.weights_per_vector


def _gemv_shifts(bits: int) -> np.ndarray:
    """Bit offset of element e (0 .. 32/bits - 1) of a word: even e in the low half, odd e in the high."""
    e = np.arange(32 // bits, dtype=np.uint32)
    return ((e % 2) * 16 + bits * (e // 2)).astype(np.uint32)


def repack_gemv(packed: LowBitWeight) -> GemvWeight:
    """The ``gemv`` format of the batched low-bit kernels (its exact spec; the kernel header points here).

    - Rows ``o < N`` of ``words`` (uint32 ``[NP, kvec*4]``, ``NP = ceil(N/16)*16``, extra rows
      unused): ``kvec = ceil(K / WPV)`` 128-bit vectors of ``WPV = 128 // bits`` weights; word ``j``
      (0..3) of vector ``v`` holds ``EPW = 32 // bits`` weights from ``k0 = v*WPV + j*EPW``.
    - Inside a word, element ``e`` (``k = k0 + e``) sits at bit ``16*(e % 2) + bits*(e // 2)``: even
      ``k`` in the low 16 bits, odd ``k`` in the high 16 bits, so field ``p`` of the two halves is the
      pair ``(k0+2p, k0+2p+1)``, one ``half2`` after dequantization.
    - bits 8/4/2: offset binary ``u = q + 2**(bits-1)``; bits 1: 1 for ``q = +1``, 0 for ``q = -1``.
      Past ``K`` (and in the extra rows) ``q = 0`` (1 bit: field 0); x is zero-padded there anyway.
    - ``scales`` float32 ``[N]`` as in :class:`LowBitWeight`.

    Example:
        >>> g = repack_gemv(pack_lowbit(w, bits=4))          # w [4096, 4096]
        >>> g.words.shape, g.kvec
        ((4096, 512), 128)
    """
    bits, k, n = packed.bits, packed.in_features, packed.out_features
    q = unpack_lowbit_codes(packed).astype(np.int64)
    wpv, epw = 128 // bits, 32 // bits
    kvec = -(-k // wpv)
    rows = -(-n // GEMV_ROW_PAD) * GEMV_ROW_PAD
    codes = np.zeros((rows, kvec * wpv), np.int64)
    codes[:n, :k] = q
    fields = (codes > 0) if bits == 1 else codes + (1 << (bits - 1))
    fields = fields.astype(np.uint32).reshape(rows, kvec * 4, epw)
    words = np.bitwise_or.reduce(fields << _gemv_shifts(bits)[None, None, :], axis=2).astype(np.uint32)
    return GemvWeight(words=words, scales=_np(packed.scales).reshape(n), bits=bits, in_features=k, out_features=n)


def unpack_gemv_codes(g: GemvWeight) -> np.ndarray:
    """The integer codes ``q`` int8 ``[N, K]`` of a :class:`GemvWeight` (inverse of :func:`repack_gemv`)."""
    bits, epw = g.bits, 32 // g.bits
    words = _np(g.words, np.int64).astype(np.uint32)[: g.out_features]
    fields = (words[:, :, None] >> _gemv_shifts(bits)[None, None, :]) & np.uint32((1 << bits) - 1)
    fields = fields.reshape(g.out_features, -1)[:, : g.in_features].astype(np.int64)
    q = np.where(fields == 1, 1, -1) if bits == 1 else fields - (1 << (bits - 1))
    return q.astype(np.int8)


def dequantize_gemv(g: GemvWeight) -> np.ndarray:
    """Float32 ``[N, K]`` weight ``scales[:, None] * q`` of a :class:`GemvWeight`."""
    return (unpack_gemv_codes(g).astype(np.float32) * _np(g.scales)[:, None]).astype(np.float32)


def repack_mma(g: GemvWeight) -> np.ndarray:
    """The ``mma`` arrangement (``kernels/lowbit_mma_gemm.cu``) of a :class:`GemvWeight`'s words.

    Same words, re-ordered for the tensor-core kernel: uint32 ``[NP/8, KV, 32, 4]`` with
    ``KV = ceil(kvec/4)``; entry ``[n8, kv, g*4 + t, j]`` is gemv word ``(4*kv + j)*4 + t`` of row
    ``n8*8 + g`` (rows past the gemv words' columns are zero words). x must then be zero-padded to
    ``KV * 16 * (32 // bits)`` columns. :func:`edgec.kernels.ops.mma_words` does the same on the GPU.
    """
    words = _np(g.words, np.int64).astype(np.uint32)
    rows, kvec = words.shape[0], words.shape[1] // 4
    kv = -(-kvec // 4)
    padded = np.zeros((rows, kv * 16), np.uint32)
    padded[:, : kvec * 4] = words
    return np.ascontiguousarray(padded.reshape(rows // 8, 8, kv, 4, 4).transpose(0, 2, 1, 4, 3)
                                .reshape(rows // 8, kv, 32, 4))


# --------------------------------------------------------------------------- INT8 (W8A8)
@dataclass(frozen=True)
class Int8Weight:
    """Per-output-channel symmetric INT8 weight, rows zero-padded to whole int32 words."""

    q: np.ndarray       # int8 [N, K4], K4 = ceil(K / 4) * 4
    scales: np.ndarray  # float32 [N]
    in_features: int    # K


def padded_k(in_features: int) -> int:
    """``K4``: K rounded up to a multiple of 4 (one ``__dp4a`` word)."""
    return (in_features + 3) // 4 * 4


def quantize_int8_weight(weight: Any) -> Int8Weight:
    """``scales = max|w_row| / 127``, ``q = clip(rint(w / scale), -127, 127)``, zero-padded to K4.

    Example:
        >>> p = quantize_int8_weight(linear.weight)     # [N, K] -> q [N, K4], scales [N]
    """
    w = _np(weight)
    if w.ndim != 2:
        raise PackingError(f"linear weight must be [out_features, in_features], got shape {w.shape}")
    n, k = w.shape
    s = (np.abs(w).max(axis=1) / 127.0 if k else np.zeros(n)).astype(np.float32)
    safe = np.where(s > 0, s, 1.0).astype(np.float32)[:, None]
    q = np.zeros((n, padded_k(k)), np.int8)
    q[:, :k] = np.clip(np.rint(w / safe), -127, 127)
    return Int8Weight(q=q, scales=s, in_features=k)


def dequantize_int8(packed: Int8Weight) -> np.ndarray:
    """Float32 ``[N, K]`` weight ``scales[:, None] * q``."""
    q = _np(packed.q, np.float32)[:, :packed.in_features]
    return (q * _np(packed.scales)[:, None]).astype(np.float32)


def int8_activation_scale(x: Any) -> float:
    """Per-tensor symmetric scale ``max|x| / 127`` from calibration data (1.0 for all-zero data)."""
    m = float(np.abs(_np(x)).max(initial=0.0))
    return m / 127.0 if m > 0 else 1.0


def quantize_int8_activation(x: Any, x_scale: float) -> np.ndarray:
    """``[M, K]`` float -> ``[M, K4]`` int8: ``clip(rint(x / x_scale), -127, 127)``, zero-padded.

    Divides in float32 and rounds half to even, exactly as ``quantize_int8_f32`` does.
    """
    x = _np(x)
    m, k = x.shape
    v = np.clip(x / np.float32(x_scale), -127, 127)
    out = np.zeros((m, padded_k(k)), np.int8)
    out[:, :k] = np.rint(v)
    return out


def int8_linear_reference(x: Any, packed: Int8Weight, x_scale: float, bias: Any = None) -> np.ndarray:
    """W8A8 ``y = x_scale * scales[n] * (xq . q[n]) (+ bias)`` for ``x [M, K]``; float32 ``[M, N]``.

    The integer dot products are exact (int64); the float epilogue uses the kernel's float32 order.
    """
    xq = quantize_int8_activation(x, x_scale).astype(np.int64)
    acc = xq @ _np(packed.q, np.int64).T
    y = acc.astype(np.float32) * (np.float32(x_scale) * _np(packed.scales))[None, :]
    if bias is not None:
        y = y + _np(bias)[None, :]
    return y.astype(np.float32)
