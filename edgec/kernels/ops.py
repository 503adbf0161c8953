"""edgec's CUDA kernels as functions on torch CUDA tensors (inference only, no autograd).

Each function checks its inputs, allocates the output with torch, and launches the kernel through
pycuda (:mod:`edgec.kernels.loader`). The launch geometry lives in the ``*_launch`` helpers, which
the CPU-emulation tests use too, so the emulated grid is the one the GPU runs.

Streams: pycuda launches on the legacy default stream, which is torch's default stream. Under a
non-default torch stream (``with torch.cuda.stream(s)``) the launch is ordered both ways without
blocking the host: the default stream first waits for the current one, the kernel runs, then the
current stream waits for the default one; the tensors involved are ``record_stream``-ed so the
caching allocator cannot recycle them early. Devices: the kernels run on ``cuda:0`` (the context
``pycuda.autoprimaryctx`` shares with torch).

Example:
    >>> packed = pack_lowbit(linear.weight, bits=4)
    >>> y = lowbit_linear(x.cuda(), packed, bias=linear.bias.cuda())    # x [B, K] -> y [B, N]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.kernels.loader import KernelError, get_function
from edgec.kernels.packing import (CsrConv2dWeight, Int8Weight, LowBitWeight, _pair, conv2d_output_size,
                                   padded_k)

if TYPE_CHECKING:
    import torch

Dim3 = tuple[int, int, int]

SC_THREADS = 128  # SC_THREADS in sparse_conv2d_csr.cu
LB_WARPS = 4      # LB_WARPS in lowbit_common.cuh: output rows per block
LB_MB = 4         # LB_MB in lowbit_gemm_smallbatch.cu: x rows per warp
I8_TILE = 32      # I8_TILE in int8_gemm_dp4a.cu
I8_QTHREADS = 256


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def sparse_conv2d_launch(n: int, cout: int, oh: int, ow: int) -> tuple[Dim3, Dim3]:
    """``(grid, block)`` of ``sparse_conv2d_csr_*``: one block per 128 output pixels of one (n, co)."""
    return (_cdiv(oh * ow, SC_THREADS), cout, n), (SC_THREADS, 1, 1)


def lowbit_launch(m: int, n: int, bits: int, half: bool = False) -> tuple[str, str, Dim3, Dim3]:
    """``(file, entry, grid, block)`` for ``y[m, n]``: the GEMV kernel at m == 1, else small-batch."""
    dt = "f16" if half else "f32"
    if m == 1:
        return "lowbit_gemv", f"lowbit_gemv_{dt}_b{bits}", (_cdiv(n, LB_WARPS), 1, 1), (32 * LB_WARPS, 1, 1)
    return ("lowbit_gemm_smallbatch", f"lowbit_gemm_{dt}_b{bits}", (_cdiv(n, LB_WARPS), _cdiv(m, LB_MB), 1),
            (32 * LB_WARPS, 1, 1))


def int8_launch(m: int, n: int, k4: int) -> dict[str, Dim3]:
    """Grids and blocks of ``quantize_int8_f32`` (``qgrid``, ``qblock``) and ``int8_gemm_dp4a``."""
    return {"qgrid": (_cdiv(k4, I8_QTHREADS), m, 1), "qblock": (I8_QTHREADS, 1, 1),
            "grid": (_cdiv(n, I8_TILE), _cdiv(m, I8_TILE), 1), "block": (16, 16, 1)}


# --------------------------------------------------------------------------- torch plumbing
def _torch() -> Any:
    import torch

    return torch


def _check_input(x: torch.Tensor, dtypes: tuple[Any, ...], what: str) -> torch.Tensor:
    torch = _torch()
    if not isinstance(x, torch.Tensor) or not x.is_cuda:
        raise KernelError(f"{what} runs on CUDA tensors; got {type(x).__name__} on {getattr(x, 'device', 'cpu')}",
                          hint="move the input with .cuda() or use the module's CPU path")
    if x.device.index not in (None, 0):
        raise KernelError(f"{what}: edgec's kernels run on cuda:0, the input is on {x.device}",
                          hint="use cuda:0 or set CUDA_VISIBLE_DEVICES so the GPU you want is device 0")
    if x.dtype not in dtypes:
        raise KernelError(f"{what}: input dtype {x.dtype} is not supported",
                          hint=f"cast it to one of {', '.join(str(d) for d in dtypes)}")
    return x.detach().contiguous()


def _dev(a: Any, dtype: Any, device: Any) -> torch.Tensor:
    """A contiguous device tensor of ``a`` (numpy or torch); no copy when it is already there."""
    torch = _torch()
    if isinstance(a, np.ndarray):
        if a.dtype == np.uint32:  # torch has no general uint32 support: same bits as int32
            a = a.view(np.int32)
        a = torch.from_numpy(np.ascontiguousarray(a))
    return a.detach().to(device=device, dtype=dtype).contiguous()


def _ptr(t: torch.Tensor | None) -> Any:
    """A kernel argument: the tensor itself (pycuda reads ``__cuda_array_interface__``) or NULL."""
    return np.uintp(0) if t is None else t


@contextlib.contextmanager
def _on_default_stream(*tensors: torch.Tensor | None) -> Iterator[None]:
    torch = _torch()
    cur, default = torch.cuda.current_stream(), torch.cuda.default_stream()
    if cur == default:
        yield
        return
    default.wait_stream(cur)
    for t in tensors:
        if t is not None:
            t.record_stream(default)
    yield
    cur.wait_stream(default)


# --------------------------------------------------------------------------- ops
def sparse_conv2d(x: torch.Tensor, packed: CsrConv2dWeight, bias: Any = None, *,
                  stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                  dilation: int | tuple[int, int] = 1) -> torch.Tensor:
    """Conv2d (groups=1, zero padding) of ``x [N, C, H, W]`` (fp32/fp16, CUDA) with CSR weights.

    ``packed`` arrays may be numpy (copied to the GPU on each call) or CUDA tensors.

    Example:
        >>> y = sparse_conv2d(x, pack_csr_conv2d(conv.weight), conv.bias, stride=2, padding=1)
    """
    torch = _torch()
    x = _check_input(x, (torch.float32, torch.float16), "sparse_conv2d")
    cout, c, kh, kw = packed.shape
    if x.dim() != 4 or x.shape[1] != c:
        raise KernelError(f"sparse_conv2d: input must be [N, {c}, H, W], got {tuple(x.shape)}")
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    n, _, h, w = x.shape
    oh, ow = conv2d_output_size(h, w, kh, kw, (sh, sw), (ph, pw), (dh, dw))
    dev = x.device
    row_ptr, col_idx = _dev(packed.row_ptr, torch.int32, dev), _dev(packed.col_idx, torch.int32, dev)
    values = _dev(packed.values, torch.float32, dev)
    b = None if bias is None else _dev(bias, torch.float32, dev)
    y = torch.empty((n, cout, oh, ow), dtype=x.dtype, device=dev)
    if y.numel() == 0:
        return y
    entry = "sparse_conv2d_csr_f16" if x.dtype == torch.float16 else "sparse_conv2d_csr_f32"
    grid, block = sparse_conv2d_launch(n, cout, oh, ow)
    i32 = np.int32
    with _on_default_stream(x, row_ptr, col_idx, values, b, y):
        get_function("sparse_conv2d_csr", entry)(
            x, row_ptr, col_idx, values, _ptr(b), y, i32(c), i32(h), i32(w), i32(cout), i32(kh), i32(kw),
            i32(oh), i32(ow), i32(sh), i32(sw), i32(ph), i32(pw), i32(dh), i32(dw), grid=grid, block=block)
    return y


def lowbit_linear(x: torch.Tensor, packed: LowBitWeight, bias: Any = None) -> torch.Tensor:
    """``x [..., K] @ W^T (+ bias)`` with W packed at 8/4/2/1 bits; fp32/fp16 in and out, CUDA.

    Uses the one-warp-per-row GEMV kernel when ``x`` has one row, the 4-rows-per-warp kernel
    otherwise.

    Example:
        >>> y = lowbit_linear(x, pack_lowbit(linear.weight, bits=1))   # binary weights
    """
    torch = _torch()
    x = _check_input(x, (torch.float32, torch.float16), "lowbit_linear")
    k, n = packed.in_features, packed.out_features
    if x.shape[-1] != k:
        raise KernelError(f"lowbit_linear: input has {x.shape[-1]} features, the weight expects {k}")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    m = x2.shape[0]
    dev = x.device
    words, scales = _dev(packed.words, torch.int32, dev), _dev(packed.scales, torch.float32, dev)
    b = None if bias is None else _dev(bias, torch.float32, dev)
    y = torch.empty((m, n), dtype=x.dtype, device=dev)
    if m and n:
        file, entry, grid, block = lowbit_launch(m, n, packed.bits, half=x.dtype == torch.float16)
        with _on_default_stream(x2, words, scales, b, y):
            get_function(file, entry)(x2, words, scales, _ptr(b), y, np.int32(m), np.int32(n), np.int32(k),
                                      np.int32(packed.words_per_row), grid=grid, block=block)
    return y.reshape(*lead, n)


def int8_linear(x: torch.Tensor, packed: Int8Weight, x_scale: float, bias: Any = None) -> torch.Tensor:
    """W8A8 linear: quantize ``x [..., K]`` with ``x_scale`` on the GPU, ``__dp4a`` GEMM, fp32 out.

    Example:
        >>> p = quantize_int8_weight(linear.weight)
        >>> y = int8_linear(x, p, int8_activation_scale(x_calibration), linear.bias)
    """
    torch = _torch()
    x = _check_input(x, (torch.float32, torch.float16), "int8_linear").float()
    k, k4 = packed.in_features, padded_k(packed.in_features)
    if x.shape[-1] != k:
        raise KernelError(f"int8_linear: input has {x.shape[-1]} features, the weight expects {k}")
    if not x_scale > 0:
        raise KernelError(f"int8_linear: x_scale must be positive, got {x_scale}",
                          hint="calibrate it with packing.int8_activation_scale")
    lead = x.shape[:-1]
    x2 = x.reshape(-1, k)
    m, dev = x2.shape[0], x.device
    q, scales = _dev(packed.q, torch.int8, dev), _dev(packed.scales, torch.float32, dev)
    if tuple(q.shape) != (scales.shape[0], k4):
        raise KernelError(f"int8_linear: weight codes must be [N, {k4}] (rows padded to 4), got {tuple(q.shape)}")
    n = q.shape[0]
    b = None if bias is None else _dev(bias, torch.float32, dev)
    xq = torch.empty((m, k4), dtype=torch.int8, device=dev)
    y = torch.empty((m, n), dtype=torch.float32, device=dev)
    if m and n:
        g = int8_launch(m, n, k4)
        with _on_default_stream(x2, q, scales, b, xq, y):
            get_function("int8_gemm_dp4a", "quantize_int8_f32")(
                x2, xq, np.float32(x_scale), np.int32(m), np.int32(k), np.int32(k4), grid=g["qgrid"], block=g["qblock"])
            get_function("int8_gemm_dp4a", "int8_gemm_dp4a")(
                xq, q, scales, np.float32(x_scale), _ptr(b), y, np.int32(m), np.int32(n), np.int32(k4 // 4),
                grid=g["grid"], block=g["block"])
    return y.reshape(*lead, n)
