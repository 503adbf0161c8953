"""Drop-in ``nn.Module``s over edgec's kernels, and :func:`convert` to swap them into a student.

:class:`SparseConv2d` (CSR weights) and :class:`LowBitLinear` (8/4/2/1-bit packed weights) keep
their packed weights as buffers (so ``.to()``, ``state_dict`` and ``torch.save`` work). Their
``forward`` runs the CUDA kernel on CUDA tensors and, on CPU tensors, torch's dense op on the
weights unpacked from the very same buffers (so a converted model can be verified on a CPU and
the packed format is exercised either way). Inference only: no gradients flow through the kernels.

Example:
    >>> model, report = convert(pruned_student, min_sparsity=0.7)
    >>> [r["name"] for r in report if r["action"] == "swapped"]
    ['features.3', 'features.6']
"""

from __future__ import annotations

import copy
import weakref
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgec.kernels import ops, sparse_codegen
from edgec.kernels.loader import KernelError, shared_stream
from edgec.kernels.packing import (CsrConv2dWeight, GemvWeight, LowBitWeight, PackingError, dequantize_gemv,
                                   pack_csr_conv2d, pack_lowbit, pack_lowbit_codes, repack_gemv)


# SparseConv2d -> {(h, w, half, weight version, weight pointer): generated kernel}; outside the module so that
# deepcopy / pickling of a model never meets pycuda objects
_GENERATED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class SparseConv2d(nn.Module):
    """Conv2d with unstructured-sparse weights stored as CSR (groups=1, zero padding).

    On CUDA it runs a kernel generated for this layer (every nonzero an FFMA immediate; see
    :mod:`edgec.kernels.sparse_codegen`), falling back to the CSR kernel for very large layers.

    Example:
        >>> sc = SparseConv2d.from_conv(pruned_conv)
        >>> torch.allclose(sc(x), pruned_conv(x), atol=1e-5)
        True
    """

    def __init__(self, packed: CsrConv2dWeight, bias: torch.Tensor | None = None, *,
                 stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                 dilation: tuple[int, int] = (1, 1)):
        super().__init__()
        self.weight_shape = tuple(packed.shape)
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        self.register_buffer("row_ptr", torch.as_tensor(np.asarray(packed.row_ptr), dtype=torch.int32))
        self.register_buffer("col_idx", torch.as_tensor(np.asarray(packed.col_idx), dtype=torch.int32))
        self.register_buffer("values", torch.as_tensor(np.asarray(packed.values), dtype=torch.float32))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> SparseConv2d:
        """Pack a (pruned) ``nn.Conv2d``; raises :class:`PackingError` for what the kernel lacks."""
        if conv.groups != 1:
            raise PackingError(f"grouped/depthwise conv (groups={conv.groups}) is not supported by the CSR kernel")
        if conv.padding_mode != "zeros":
            raise PackingError(f"padding_mode={conv.padding_mode!r} is not supported (zeros only)")
        padding = conv.padding
        if isinstance(padding, str):  # 'valid' or 'same' (stride 1)
            if padding == "valid":
                padding = (0, 0)
            else:
                total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
                if any(t % 2 for t in total):
                    raise PackingError("padding='same' with an even effective kernel pads asymmetrically")
                padding = tuple(t // 2 for t in total)
        return cls(pack_csr_conv2d(conv.weight), conv.bias, stride=tuple(conv.stride),
                   padding=tuple(padding), dilation=tuple(conv.dilation))

    def packed(self) -> CsrConv2dWeight:
        """The weights as a :class:`CsrConv2dWeight` of this module's (device) tensors."""
        return CsrConv2dWeight(self.row_ptr, self.col_idx, self.values, self.weight_shape)  # type: ignore[arg-type]

    def dense_weight(self) -> torch.Tensor:
        """The dense ``[Cout, C, KH, KW]`` float32 weight rebuilt from the CSR buffers."""
        cout = self.weight_shape[0]
        rows = torch.repeat_interleave(torch.arange(cout, device=self.row_ptr.device),
                                       torch.diff(self.row_ptr.long()))
        dense = torch.zeros(cout, int(np.prod(self.weight_shape[1:])), device=self.values.device)
        dense[rows, self.col_idx.long()] = self.values
        return dense.view(self.weight_shape)

    # Above this many nonzeros the generated source (one FFMA per nonzero) takes long to compile: CSR kernel.
    CODEGEN_MAX_NNZ = 65536

    def generated(self, h: int, w: int, half: bool) -> sparse_codegen.SparseConvKernel | None:
        """The layer's generated kernel (:mod:`edgec.kernels.sparse_codegen`) for ``h x w`` fp16/fp32 inputs:
        made on first use, compiled once per layer and GPU (cubin cached on disk), kept per module; None for
        layers with more than ``CODEGEN_MAX_NNZ`` nonzeros (they run the CSR kernel)."""
        if int(self.values.numel()) > self.CODEGEN_MAX_NNZ:
            return None
        kernels = _GENERATED.setdefault(self, {})
        key = (h, w, half, self.values._version, self.values.data_ptr())  # weights edited in place: regenerate
        if key not in kernels:
            gen = sparse_codegen.generate(self.dense_weight().cpu().numpy(), h, w, stride=self.stride,
                                          padding=self.padding, dilation=self.dilation, half=half)
            kernels[key] = sparse_codegen.SparseConvKernel(gen)
        return kernels[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, Cout, OH, OW]
        if x.is_cuda:
            kernel = (self.generated(x.shape[2], x.shape[3], x.dtype == torch.float16)
                      if x.dim() == 4 and x.dtype in (torch.float16, torch.float32) else None)
            if kernel is not None:
                return kernel(x, self.bias)
            return ops.sparse_conv2d(x, self.packed(), self.bias, stride=self.stride, padding=self.padding,
                                     dilation=self.dilation)
        y = F.conv2d(x.float(), self.dense_weight(), self.bias, self.stride, self.padding, self.dilation)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        nnz, total = int(self.values.numel()), int(np.prod(self.weight_shape))
        return (f"{self.weight_shape}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"sparsity={1 - nnz / max(total, 1):.3f}")


class LowBitLinear(nn.Module):
    """Linear layer with weights packed at 8, 4, 2 or 1 bits and per-output-channel scales.

    The ``words`` buffer is the ``gemv`` format (:func:`~edgec.kernels.packing.repack_gemv`) the
    batched GEMV kernel reads. On CUDA the device pointers of ``words``/``scales``/``bias`` are
    cached (an :class:`~edgec.kernels.ops.LowBitGemv`, rebuilt only when the buffers move), so a
    forward is: check x, allocate y, one prepared launch.

    Example:
        >>> lb = LowBitLinear.from_linear(linear, bits=4)
        >>> lb(x).shape == linear(x).shape
        True
    """

    def __init__(self, packed: LowBitWeight | GemvWeight, bias: torch.Tensor | None = None):
        super().__init__()
        g = packed if isinstance(packed, GemvWeight) else repack_gemv(packed)
        self.bits, self.in_features, self.out_features = g.bits, g.in_features, g.out_features
        words = np.asarray(g.words)
        if words.dtype == np.uint32:
            words = words.view(np.int32)  # same bits; torch has little uint32 support
        self.register_buffer("words", torch.as_tensor(words, dtype=torch.int32))
        self.register_buffer("scales", torch.as_tensor(np.asarray(g.scales), dtype=torch.float32))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self._gemv: ops.LowBitGemv | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int, scales: Any = None) -> LowBitLinear:
        """Quantize (per-output-channel, symmetric; ``scales`` to reuse a QAT grid) and pack."""
        return cls(pack_lowbit(linear.weight, bits, scales), linear.bias)

    def packed(self) -> GemvWeight:
        """The weights as a :class:`GemvWeight` of this module's (device) tensors."""
        return GemvWeight(self.words, self.scales, self.bits, self.in_features, self.out_features)  # type: ignore[arg-type]

    def gemv(self) -> ops.LowBitGemv:
        """The cached kernel over this module's CUDA buffers (rebuilt if they moved)."""
        cached = self._gemv
        if (cached is None or cached.words.data_ptr() != self.words.data_ptr()
                or (self.bias is not None and cached.bias is not None and cached.bias.data_ptr() != self.bias.data_ptr())):
            cached = self._gemv = ops.LowBitGemv(self.packed(), self.bias, device=self.words.device)
        return cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [..., K] -> [..., N]
        if x.is_cuda:
            return self.gemv()(x)
        w = torch.from_numpy(dequantize_gemv(self.packed()))
        return F.linear(x.float(), w, None if self.bias is None else self.bias.float()).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}"


class CudaGraphed(nn.Module):
    """A module's forward captured once in a CUDA graph, replayed per call (one input shape/dtype).

    Capture runs on the kernels' shared stream (after ``warmup`` eager calls there, which load and
    prepare every kernel), so edgec's kernels and torch's ops land in one graph. ``forward`` copies
    ``x`` into the captured input and replays: the host cost no longer grows with the layer count
    (what Jetson's slower ARM cores need). The returned tensor is the graph's output buffer,
    overwritten by the next call: clone it to keep it.

    Example:
        >>> fast = CudaGraphed(converted_model.cuda().eval(), torch.randn(1, 3, 32, 32, device="cuda"))
        >>> y = fast(x)
    """

    def __init__(self, module: nn.Module, example: torch.Tensor, warmup: int = 2):
        super().__init__()
        if not example.is_cuda:
            raise KernelError("CudaGraphed needs a CUDA example input", hint="pass example.cuda()")
        self.module = module
        _, stream = shared_stream()
        self.static_in = example.detach().clone()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(warmup):
                module(self.static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph, stream=stream):
            self.static_out = module(self.static_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape != self.static_in.shape or x.dtype != self.static_in.dtype or x.device != self.static_in.device:
            raise KernelError(f"CudaGraphed was captured for {tuple(self.static_in.shape)} {self.static_in.dtype} "
                              f"on {self.static_in.device}, got {tuple(x.shape)} {x.dtype} on {x.device}",
                              hint="capture one CudaGraphed per input shape")
        self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out


class OnKernelStream(nn.Module):
    """Runs ``module`` on the kernels' shared stream: one stream join per call instead of two per kernel.

    The shared stream waits for the caller's stream, the whole forward runs there (torch ops and
    edgec's kernels in order, no per-launch events), then the caller's stream waits for it; tensor
    outputs are ``record_stream``-ed on the caller's stream for the caching allocator.
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args: Any) -> Any:
        if not any(isinstance(a, torch.Tensor) and a.is_cuda for a in args):
            return self.module(*args)
        cur, (_, stream) = torch.cuda.current_stream(), shared_stream()
        stream.wait_stream(cur)
        with torch.cuda.stream(stream):
            out = self.module(*args)
        cur.wait_stream(stream)
        for t in out if isinstance(out, (tuple, list)) else out.values() if isinstance(out, dict) else (out,):
            if isinstance(t, torch.Tensor) and t.is_cuda:
                t.record_stream(cur)
        return out


class GraphPerShape(nn.Module):
    """``module`` as CUDA graphs: one :class:`CudaGraphed` per input (shape, dtype), outputs cloned."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module
        self.graphs: dict[tuple[Any, ...], CudaGraphed] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_cuda:
            return self.module(x)
        key = (tuple(x.shape), x.dtype)
        if key not in self.graphs:
            self.graphs[key] = CudaGraphed(self.module, x)
        return self.graphs[key](x).clone()


def detect_lowbit(weight: Any, max_bits: int = 8, rtol: float = 1e-5) -> tuple[int, np.ndarray, np.ndarray] | None:
    """``(bits, q, scales)`` if ``weight [N, K]`` already lies exactly on a symmetric per-row grid.

    Rows of one magnitude (+-alpha, no zeros) are 1-bit (BinaryConnect); otherwise the step is the
    smallest nonzero magnitude of the row and every weight must be an integer multiple of it.
    Returns the smallest width in (1, 2, 4, 8) that holds every row, or None.

    Example:
        >>> detect_lowbit(np.array([[0.5, -0.5], [0.25, -0.25]]))[0]
        1
    """
    w = np.asarray(weight.detach().cpu().numpy() if hasattr(weight, "detach") else weight, np.float64)
    if w.ndim != 2 or w.size == 0:
        return None
    a = np.abs(w)
    nz = np.where(a > 0, a, np.inf)
    step = nz.min(axis=1)
    step[~np.isfinite(step)] = 0.0  # all-zero row
    if np.all((a > 0) & (np.abs(a - step[:, None]) <= rtol * step[:, None])):
        return 1, np.where(w >= 0, 1, -1).astype(np.int8), step.astype(np.float32)
    safe = np.where(step > 0, step, 1.0)[:, None]
    ratio = a / safe
    if not np.all(np.abs(ratio - np.rint(ratio)) <= rtol * np.maximum(ratio, 1)):
        return None
    need = int(np.rint(ratio).max())
    for bits in (2, 4, 8):
        if bits <= max_bits and need <= 2 ** (bits - 1) - 1:
            return bits, np.rint(w / safe).astype(np.int8), step.astype(np.float32)
    return None


class Converted(NamedTuple):
    model: nn.Module
    report: list[dict[str, Any]]


def convert(model: nn.Module, *, min_sparsity: float = 0.5, bits: int | None = None,
            inplace: bool = False) -> Converted:
    """Swap eligible layers of a pruned / quantized student for kernel-backed modules.

    ``nn.Conv2d`` with at least ``min_sparsity`` zero weights -> :class:`SparseConv2d`.
    ``nn.Linear`` -> :class:`LowBitLinear` at ``bits`` when given (quantizing), else only when its
    weights already lie on a <= 8-bit grid (a BinaryConnect / QAT student), at the detected width.
    Returns ``(model, report)``: one row per Conv2d/Linear with name, layer, action ("swapped" or
    "kept"), the module it became or the reason it was kept, sparsity and bits. The input model is
    copied unless ``inplace``.

    Example:
        >>> model, report = convert(student, bits=4)
        >>> report[0]
        {'name': 'fc1', 'layer': 'Linear', 'action': 'swapped', 'to': 'LowBitLinear', 'bits': 4, ...}
    """
    if not inplace:
        model = _copy_model(model)
    report: list[dict[str, Any]] = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        row: dict[str, Any] = {"name": name, "layer": type(module).__name__}
        new, reason = _replacement(module, row, min_sparsity, bits)
        if new is None:
            row.update(action="kept", reason=reason)
        else:
            new = new.to(module.weight.device)
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
            row.update(action="swapped", to=type(new).__name__)
        report.append(row)
    return Converted(model, report)


def _copy_model(model: nn.Module) -> nn.Module:
    """deepcopy that also works on pruned models (torch.nn.utils.prune): their ``weight`` is a
    plain non-leaf tensor attribute, which deepcopy refuses; it is copied detached (the pruning
    hook recomputes it on the next forward anyway)."""
    saved = [(m, k, v) for m in model.modules() for k, v in vars(m).items()
             if isinstance(v, torch.Tensor) and not v.is_leaf]
    try:
        for m, k, v in saved:
            object.__setattr__(m, k, v.detach())
        return copy.deepcopy(model)
    finally:
        for m, k, v in saved:
            object.__setattr__(m, k, v)


def _replacement(module: nn.Module, row: dict[str, Any], min_sparsity: float,
                 bits: int | None) -> tuple[nn.Module | None, str]:
    weight = module.weight.detach()
    if isinstance(module, nn.Conv2d):
        sparsity = float((weight == 0).float().mean()) if weight.numel() else 0.0
        row["sparsity"] = round(sparsity, 4)
        if sparsity < min_sparsity:
            return None, f"sparsity {sparsity:.3f} < min_sparsity {min_sparsity}: dense cuDNN is faster"
        try:
            return SparseConv2d.from_conv(module), ""
        except PackingError as exc:
            return None, exc.message
    if bits is not None:
        layer = LowBitLinear.from_linear(module, bits)
        row["bits"] = bits
        w_hat = torch.from_numpy(dequantize_gemv(layer.packed()))
        err = float((w_hat - weight.float().cpu()).norm() / weight.float().norm().clamp_min(1e-12))
        row["relative_weight_error"] = round(err, 5)
        return layer, ""
    found = detect_lowbit(weight)
    if found is None:
        return None, "weights are not on a <= 8-bit grid; pass bits= to quantize them"
    detected, q, scales = found
    row["bits"] = detected
    return LowBitLinear(pack_lowbit_codes(q, scales, detected), module.bias), ""
