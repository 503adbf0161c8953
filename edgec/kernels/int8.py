"""W8A8 linear on the GPU: the mmvq kernel (``kernels/int8_gemv_mmvq.cu``) for m <= 16, cuBLASLt IMMA above.

``y[m, n] = (sum_k q(x[m, k]) * q_w[n, k]) * (x_scale * w_scale[n]) + bias[n]`` with
``q(v) = rint(clamp(v * (1 / x_scale), -127, 127))`` (a float32 multiply by the reciprocal, not a division:
see :func:`quantize_activation`), int32 accumulation, output in the input's dtype (fp16 or fp32).

* m <= 16 rows of x: one launch of ``int8_mmvq_{f16,f32}_mb{1,2,4,8,16}``, which quantizes x inside the kernel
  (once per block, into shared memory) and streams the int8 weights with 128-bit loads into ``__dp4a``.
* m > 16 with N a multiple of 8: ``int8_quantize_*`` (one launch) then ``torch._int_mm`` (cuBLASLt IMMA tensor
  cores; it requires m > 16 and K, N multiples of 8 -- K is padded to 16 here) and one fused torch epilogue
  (``addcmul``). Otherwise the mmvq kernel walks the rows 16 at a time (grid.y).

The weights are repacked once (:func:`device_weight`): rows zero-padded to ``K16 = ceil(K / 16) * 16`` bytes so
every row is 16-byte aligned for the 128-bit loads.

The op is :func:`edgec.kernels.ops.int8_linear`; this module has its launch geometry, weight layout and references.

Example:
    >>> w = device_weight(quantize_int8_weight(linear.weight), "cuda")
    >>> y = ops.int8_linear(x16, w, x_scale=int8_activation_scale(x_calibration), bias=linear.bias)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.kernels.loader import KernelError
from edgec.kernels.packing import Int8Weight

if TYPE_CHECKING:
    import torch

FILE = "int8_gemv_mmvq"
MMVQ_ARGS = "PPPffPPiiii"    # (x, wq, w_scales, inv_scale, x_scale, bias, y, M, N, K, K16)
QUANTIZE_ARGS = "PPfiii"     # (x, xq, inv_scale, M, K, K16)
THREADS = 256       # I8V_THREADS
WARPS = 8           # I8V_WARPS
MB_CHOICES = (1, 2, 4, 8, 16)
Dim3 = tuple[int, int, int]
Launch = Callable[..., None]  # ops.launch(file, entry, arg_format, grid, block, *args)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def pad16(k: int) -> int:
    """``K16``: K rounded up to a multiple of 16 bytes (one 128-bit load of int8 weights)."""
    return _cdiv(k, 16) * 16


def rows_per_warp(mb: int) -> int:
    """Output rows a warp owns in ``int8_mmvq_*_mb{mb}`` (``I8vRows`` in the .cu file)."""
    return 2 if mb <= 2 else 4


@functools.lru_cache(maxsize=256)
def mmvq_launch(m: int, n: int, half: bool) -> tuple[str, Dim3, Dim3]:
    """``(entry, grid, block)`` of the mmvq kernel for ``y [m, n]``: the smallest MB >= m (16 above 16)."""
    mb = next((c for c in MB_CHOICES if c >= m), 16)
    rows = WARPS * rows_per_warp(mb)
    entry = f"int8_mmvq_{'f16' if half else 'f32'}_mb{mb}"
    return entry, (_cdiv(n, rows), _cdiv(m, mb), 1), (THREADS, 1, 1)


def quantize_launch(m: int, k16: int, half: bool) -> tuple[str, Dim3, Dim3]:
    """``(entry, grid, block)`` of ``int8_quantize_*``: 8 values per thread, 256 threads per block."""
    return f"int8_quantize_{'f16' if half else 'f32'}", (_cdiv(k16, THREADS * 8), m, 1), (THREADS, 1, 1)


def use_int_mm(m: int, n: int) -> bool:
    """Whether ``torch._int_mm`` takes these rows: it needs m > 16 and N % 8 == 0 (K16 is a multiple of 8)."""
    return m > 16 and n % 8 == 0


def inverse_scale(x_scale: float) -> np.float32:
    """The float32 reciprocal the kernels multiply by (computed once, on the host)."""
    return np.float32(1.0) / np.float32(x_scale)


@functools.lru_cache(maxsize=64)
def _kernel_scales(x_scale: float) -> tuple[float, float]:
    """``(1 / x_scale, x_scale)`` as the float32 values the kernels get (numpy scalars cost ~1 us per call)."""
    return float(inverse_scale(x_scale)), float(np.float32(x_scale))


def quantize_activation(x: Any, x_scale: float) -> np.ndarray:
    """Reference of the kernels' x quantization: ``[M, K]`` float -> ``[M, K16]`` int8, zero-padded.

    ``rint(clamp(x * inv, -127, 127))`` in float32 with ``inv = float32(1) / float32(x_scale)``. It can differ from
    ``packing.quantize_int8_activation`` (which divides) by one step where ``x / x_scale`` lies within a rounding
    error of a half-integer.
    """
    x = np.asarray(x, dtype=np.float32)
    m, k = x.shape
    out = np.zeros((m, pad16(k)), np.int8)
    out[:, :k] = np.rint(np.clip(x * inverse_scale(x_scale), -127, 127))
    return out


def linear_reference(x: Any, q16: np.ndarray, scales: Any, x_scale: float, bias: Any = None) -> np.ndarray:
    """float32 ``[M, N]`` reference of the mmvq kernel, in its own order of float operations."""
    xq = quantize_activation(x, x_scale).astype(np.int64)
    acc = xq @ np.asarray(q16, np.int64).T
    y = acc.astype(np.float32) * (np.float32(x_scale) * np.asarray(scales, np.float32))[None, :]
    if bias is not None:
        y = y + np.asarray(bias, np.float32)[None, :]
    return y.astype(np.float32)


def pad_rows(q: np.ndarray, k: int) -> np.ndarray:
    """int8 ``[N, >= K]`` codes -> ``[N, K16]`` with the columns past K zero."""
    q = np.asarray(q, np.int8)
    out = np.zeros((q.shape[0], pad16(k)), np.int8)
    out[:, :k] = q[:, :k]
    return out


@dataclass(frozen=True)
class Int8DeviceWeight:
    """The weight as the kernels read it: ``q16 [N, K16]`` int8 and ``scales [N]`` float32 on the GPU."""

    q16: torch.Tensor
    scales: torch.Tensor
    in_features: int

    @property
    def out_features(self) -> int:
        return int(self.q16.shape[0])


def device_weight(packed: Int8Weight, device: Any = "cuda") -> Int8DeviceWeight:
    """Repack an :class:`~edgec.kernels.packing.Int8Weight` for the kernels (once per layer, not per call)."""
    import torch

    q = packed.q.detach().cpu().numpy() if isinstance(packed.q, torch.Tensor) else np.asarray(packed.q)
    scales = packed.scales.detach().cpu().numpy() if isinstance(packed.scales, torch.Tensor) else packed.scales
    q16 = torch.from_numpy(pad_rows(q, packed.in_features)).to(device)
    return Int8DeviceWeight(q16, torch.as_tensor(np.asarray(scales, np.float32)).to(device), packed.in_features)


def _ptr(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.data_ptr()


def run_linear(x: torch.Tensor, weight: Int8DeviceWeight, x_scale: float, bias: torch.Tensor | None,
               launch: Launch) -> torch.Tensor:
    """The op behind :func:`edgec.kernels.ops.int8_linear` (which checks the devices and passes its ``launch``:
    this module sits below ops). ``x [..., K]`` fp16/fp32 CUDA, ``bias`` float32 CUDA ``[N]`` or None; y in x's dtype.

    The kernels run on the shared kernel stream (``ops.launch``), ordered with torch's current stream.
    """
    import torch

    k, n = weight.in_features, weight.out_features
    if x.dtype not in (torch.float16, torch.float32):
        raise KernelError(f"int8_linear runs on fp16/fp32 inputs, got {x.dtype}", hint="cast the input to half")
    if x.shape[-1] != k:
        raise KernelError(f"int8_linear: input has {x.shape[-1]} features, the weight expects {k}")
    if not x_scale > 0:
        raise KernelError(f"int8_linear: x_scale must be positive, got {x_scale}",
                          hint="calibrate it with packing.int8_activation_scale")
    if bias is not None and (bias.dtype != torch.float32 or bias.numel() != n):
        raise KernelError(f"int8_linear: bias must be a float32 tensor of {n} values", hint="pass bias.float()")
    lead = x.shape[:-1]
    x2 = x.detach().reshape(-1, k).contiguous()
    m, half, k16 = x2.shape[0], x.dtype == torch.float16, pad16(k)
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return y.reshape(*lead, n)
    inv, xs = _kernel_scales(float(x_scale))
    if use_int_mm(m, n):
        entry, grid, block = quantize_launch(m, k16, half)
        xq = torch.empty((m, k16), dtype=torch.int8, device=x.device)
        launch(FILE, entry, QUANTIZE_ARGS, grid, block, _ptr(x2), _ptr(xq), inv, m, k, k16)
        acc = torch._int_mm(xq, weight.q16.t())  # [m, N] int32, cuBLASLt IMMA
        scale = weight.scales * xs
        out = torch.addcmul(bias if bias is not None else torch.zeros_like(scale), acc, scale)
        return out.to(x.dtype).reshape(*lead, n)
    entry, grid, block = mmvq_launch(m, n, half)
    launch(FILE, entry, MMVQ_ARGS, grid, block, _ptr(x2), _ptr(weight.q16), _ptr(weight.scales), inv, xs,
           _ptr(bias), _ptr(y), m, n, k, k16)
    return y.reshape(*lead, n)
