"""edgec's CUDA kernels as functions on torch CUDA tensors (inference only, no autograd).

Each function checks its inputs, allocates the output with torch, and launches the kernel through
pycuda (:mod:`edgec.kernels.loader`). The launch geometry lives in the ``*_launch`` helpers, which
the CPU-emulation tests use too, so the emulated grid is the one the GPU runs.

Streams: the kernels launch through :func:`launch` (prepared functions, raw pointers) on
the shared stream of :func:`edgec.kernels.loader.shared_stream`: under :func:`kernel_stream` there
is nothing else per call; under any other torch stream the two streams are joined with events.
Every op here launches that way (nothing on the legacy NULL stream, so everything can be captured
in a CUDA graph). Devices: the kernels run on ``cuda:0`` (the context ``pycuda.autoprimaryctx``
shares with torch).

Example:
    >>> kernel = LowBitGemv(pack_lowbit(linear.weight, bits=4), linear.bias)   # once
    >>> y = kernel(x.cuda())                                              # x [B, K] -> y [B, N]
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from edgec.kernels.loader import KernelError, prepared_function, shared_stream
from edgec.kernels.packing import (CsrConv2dWeight, GemvWeight, LowBitWeight, _pair, conv2d_output_size,
                                   repack_gemv)

MMA_BITS = (8, 4, 2)  # widths with a tensor-core entry (lowbit_mma_gemm.cu)
MMA_MIN_ROWS = 4      # fp16 x with at least this many rows goes to the tensor-core kernel
MMA_ROWS = 16         # rows of x per tensor-core launch (one m16 tile)

if TYPE_CHECKING:
    import torch

Dim3 = tuple[int, int, int]

SC_THREADS = 128  # SC_THREADS in sparse_conv2d_csr.cu
I8_TILE = 32      # I8_TILE in int8_gemm_dp4a.cu
I8_QTHREADS = 256


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def sparse_conv2d_launch(n: int, cout: int, oh: int, ow: int) -> tuple[Dim3, Dim3]:
    """``(grid, block)`` of ``sparse_conv2d_csr_*``: one block per 128 output pixels of one (n, co)."""
    return (_cdiv(oh * ow, SC_THREADS), cout, n), (SC_THREADS, 1, 1)


LBG_THREADS, LBG_R = 128, 4  # lowbit_batched_gemv.cuh
LBG_MB = (1, 2, 4, 8)         # x rows per block with an entry point (f16 2-bit and f32 1-bit stop at 4)


def lowbit_launch(m: int, n: int, kvec: int, bits: int, half: bool = False) -> tuple[str, Dim3, Dim3, int, int]:
    """``(entry, grid, block, mb, kt)`` of ``lowbit_batched_gemv.cu`` for ``y[m, n]``, K = ``kvec`` vectors.

    ``kt`` (threads along K per row group) is the largest of 128/64/32 not above ``kvec``, so no
    thread idles on short rows; ``mb`` is the smallest entry's rows of x >= ``m`` (at most 8; larger
    ``m`` runs several blocks along y, each re-reading the weights).
    """
    top = 4 if (half and bits == 2) or (not half and bits == 1) else 8  # entries that would spill at 8
    mb = next((b for b in LBG_MB if b >= m and b <= top), top)
    kt = 128 if kvec >= 128 else 64 if kvec >= 64 else 32
    rows = LBG_R * (LBG_THREADS // kt)
    entry = f"lbgemv_{'f16' if half else 'f32'}_w{bits}_m{mb}"
    return entry, (_cdiv(n, rows), _cdiv(m, mb), 1), (LBG_THREADS, 1, 1), mb, kt


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
    launch("sparse_conv2d_csr", entry, SPARSE_ARGS, grid, block, x.data_ptr(), row_ptr.data_ptr(), col_idx.data_ptr(),
           values.data_ptr(), 0 if b is None else b.data_ptr(), y.data_ptr(), c, h, w, cout, kh, kw, oh, ow,
           sh, sw, ph, pw, dh, dw)
    return y


SPARSE_ARGS = "PPPPPP" + "i" * 14  # (x, row_ptr, col_idx, values, bias, y, C, H, W, Cout, KH, KW, OH, OW, s, p, d)
LOWBIT_ARGS = "PPPPPiiii"  # (x, w, scales, bias, y, M, N, kvec, kt)
MMA_ARGS = "PPPPPiii"      # (x, w, scales, bias, y, M, N, KV)


def launch(file: str, entry: str, arg_format: str, grid: Dim3, block: Dim3, *args: int | float) -> None:
    """Launch a prepared entry point on the shared stream, ordered with torch's current stream.

    Pointers are ints (``tensor.data_ptr()``, 0 for NULL). Under :func:`kernel_stream` (torch's
    current stream is the shared one) this is one ``prepared_async_call``; under another torch
    stream the shared stream first waits for it and it then waits for the kernel (events, no host
    sync), so the caching allocator's stream-ordered reuse stays safe.
    """
    fn = prepared_function(file, entry, arg_format)
    pstream, tstream = shared_stream()
    torch = _torch()
    cur = torch.cuda.current_stream()
    if cur.cuda_stream == tstream.cuda_stream:
        fn.prepared_async_call(grid, block, pstream, *args)
        return
    ev_in, ev_out = _join_events()
    ev_in.record(cur)
    tstream.wait_event(ev_in)
    fn.prepared_async_call(grid, block, pstream, *args)
    ev_out.record(tstream)
    cur.wait_event(ev_out)


_THREAD = threading.local()


def _join_events() -> tuple[Any, Any]:
    """Two reusable events of this thread (wait_stream would create one per call). Reuse is safe:
    a wait enqueues the event's state at that moment; per thread, because two threads recording
    one event between each other's record and wait would join the wrong streams."""
    events = getattr(_THREAD, "join_events", None)
    if events is None:
        torch = _torch()
        events = _THREAD.join_events = (torch.cuda.Event(), torch.cuda.Event())
    return events


def kernel_stream() -> Any:
    """``torch.cuda.stream(...)`` context over the kernels' shared stream: torch and the kernels on one
    stream, no joins per launch (the fast path; also the stream to capture CUDA graphs on).

    Example:
        >>> with kernel_stream():
        ...     y = model(x)
    """
    return _torch().cuda.stream(shared_stream()[1])


def mma_launch(n_padded: int) -> tuple[Dim3, Dim3]:
    """``(grid, block)`` of ``lbmma_f16_w*``: one block of 8 warps (splitting K) per 16 output channels."""
    return (n_padded // 16, 1, 1), (256, 1, 1)


def mma_words(words: torch.Tensor, kvec: int) -> tuple[torch.Tensor, int]:
    """``(words, KV)`` of the ``mma`` arrangement (:func:`~edgec.kernels.packing.repack_mma`), on words' device."""
    torch = _torch()
    rows, kv = words.shape[0], _cdiv(kvec, 4)
    w = torch.nn.functional.pad(words, (0, kv * 16 - kvec * 4))
    return w.view(rows // 8, 8, kv, 4, 4).permute(0, 2, 1, 4, 3).reshape(rows // 8, kv, 32, 4), kv


class LowBitGemv:
    """Device-resident ``gemv`` weights with their pointers cached: ``__call__(x) -> y`` launches directly.

    Built once (by :class:`~edgec.kernels.modules.LowBitLinear` or here from a packed weight); per call
    it only checks ``x``, allocates ``y`` and launches (no weight conversion, no
    ``__cuda_array_interface__``). fp16 x with >= ``MMA_MIN_ROWS`` rows (8/4/2 bits) runs the
    tensor-core kernel on the ``mma`` arrangement of the same words, built on the GPU at its first
    use and kept (it doubles the layer's weight memory).

    Example:
        >>> k = LowBitGemv(repack_gemv(pack_lowbit(w, 4)), bias, device="cuda")
        >>> y = k(x)          # x [..., K] fp16/fp32 CUDA -> y [..., N]
    """

    def __init__(self, packed: GemvWeight | LowBitWeight, bias: Any = None, device: Any = "cuda"):
        torch = _torch()
        g = packed if isinstance(packed, GemvWeight) else repack_gemv(packed)
        self.bits, self.k, self.n = g.bits, g.in_features, g.out_features
        self.kvec, self.kp = g.kvec, g.padded_in_features
        self.words = _dev(g.words, torch.int32, device)
        self.scales = _dev(g.scales, torch.float32, device)
        self.bias = None if bias is None else _dev(bias, torch.float32, device)
        self._ptrs = (self.words.data_ptr(), self.scales.data_ptr(), 0 if self.bias is None else self.bias.data_ptr())
        self._plans: dict[tuple[int, bool], tuple[str, Dim3, Dim3, int]] = {}
        self._mma: tuple[torch.Tensor, int] | None = None

    def plan(self, m: int, half: bool) -> tuple[str, Dim3, Dim3, int]:
        """``(entry, grid, block, kt)`` for ``m`` rows of x (cached per (m, dtype))."""
        key = (m, half)
        if key not in self._plans:
            entry, grid, block, _, kt = lowbit_launch(m, self.n, self.kvec, self.bits, half)
            self._plans[key] = (entry, grid, block, kt)
        return self._plans[key]

    def uses_mma(self, m: int, half: bool) -> bool:
        """Whether ``m`` rows of x run on the tensor-core kernel."""
        return half and self.bits in MMA_BITS and m >= MMA_MIN_ROWS

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        torch = _torch()
        x = _check_input(x, (torch.float32, torch.float16), "lowbit_linear")
        if x.shape[-1] != self.k:
            raise KernelError(f"lowbit_linear: input has {x.shape[-1]} features, the weight expects {self.k}")
        flat = x.dim() == 2  # the common case: no reshapes (each costs ~2 us of host time)
        x2 = x if flat else x.reshape(-1, self.k)
        m, half = x2.shape[0], x.dtype == torch.float16
        mma = self.uses_mma(m, half)
        if mma and self._mma is None:
            self._mma = mma_words(self.words, self.kvec)
        kp = self._mma[1] * 16 * (32 // self.bits) if mma and self._mma else self.kp
        if kp != self.k:  # rows zero-padded to whole 128-bit weight vectors
            x2 = torch.nn.functional.pad(x2, (0, kp - self.k))
        elif x2.data_ptr() % 16:  # 128-bit loads need 16-byte aligned rows
            x2 = x2.clone()
        y = torch.empty((m, self.n), dtype=x.dtype, device=x.device)
        if m and self.n:
            w, s, b = self._ptrs
            if mma:
                words, kv = self._mma  # type: ignore[misc]
                grid, block = mma_launch(words.shape[0] * 8)
                for r0 in range(0, m, MMA_ROWS):  # one m16 tile per launch
                    rows = min(MMA_ROWS, m - r0)
                    launch("lowbit_mma_gemm", f"lbmma_f16_w{self.bits}", MMA_ARGS, grid, block,
                           x2[r0:].data_ptr(), words.data_ptr(), s, b, y[r0:].data_ptr(), rows, self.n, kv)
            else:
                entry, grid, block, kt = self.plan(m, half)
                launch("lowbit_batched_gemv", entry, LOWBIT_ARGS, grid, block,
                       x2.data_ptr(), w, s, b, y.data_ptr(), m, self.n, self.kvec, kt)
        return y if flat else y.view(*x.shape[:-1], self.n)


def lowbit_linear(x: torch.Tensor, packed: GemvWeight | LowBitWeight | LowBitGemv, bias: Any = None) -> torch.Tensor:
    """``x [..., K] @ W^T (+ bias)`` with W at 8/4/2/1 bits; fp32/fp16 in and out, CUDA.

    ``packed`` is best a :class:`LowBitGemv` (built once; ``bias`` is then its own); a
    :class:`GemvWeight` or :class:`LowBitWeight` is repacked and copied to the GPU on every call.
    fp16 x: HFMA2 with fp32 accumulation per 32-bit weight word; fp32 x: fp32 throughout.

    Example:
        >>> y = lowbit_linear(x, LowBitGemv(pack_lowbit(linear.weight, bits=1), linear.bias))
    """
    if isinstance(packed, LowBitGemv):
        if bias is not None:
            raise KernelError("lowbit_linear: a LowBitGemv carries its own bias", hint="pass bias when building it")
        return packed(x)
    if not getattr(x, "is_cuda", False):
        _check_input(x, (), "lowbit_linear")  # raises the CUDA-tensor error
    return LowBitGemv(packed, bias, device=x.device)(x)


def int8_linear(x: torch.Tensor, packed: Any, x_scale: float, bias: Any = None) -> torch.Tensor:
    """W8A8 linear ``x [..., K] -> y [..., N]`` (fp16/fp32, y in x's dtype): the mmvq kernel with x quantized
    inside it for m <= 16 rows, cuBLASLt IMMA (``torch._int_mm``) above; see :mod:`edgec.kernels.int8`.

    ``packed`` is an :class:`Int8Weight` (repacked to 16-byte rows and copied to the GPU on every call) or,
    the fast path, an :class:`edgec.kernels.int8.Int8DeviceWeight` made once by ``int8.device_weight``.

    Example:
        >>> w = int8.device_weight(quantize_int8_weight(linear.weight), "cuda")
        >>> y = int8_linear(x, w, int8_activation_scale(x_calibration), linear.bias)
    """
    from edgec.kernels import int8

    torch = _torch()
    x = _check_input(x, (torch.float32, torch.float16), "int8_linear")
    weight = packed if isinstance(packed, int8.Int8DeviceWeight) else int8.device_weight(packed, x.device)
    b = None if bias is None else _dev(bias, torch.float32, x.device)
    return int8.run_linear(x, weight, x_scale, b, launch)
