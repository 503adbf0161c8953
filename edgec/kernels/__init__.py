"""edgec's custom CUDA kernels: packing formats, references, loader, ops and drop-in modules.

- :mod:`edgec.kernels.packing`: CSR / bit-packed / INT8 formats (numpy) and numpy reference ops.
- :mod:`edgec.kernels.loader`: nvcc/pycuda compilation, cubin cache, ``check_all`` (ptxas report).
- :mod:`edgec.kernels.ops`: ``sparse_conv2d``, ``lowbit_linear`` / ``LowBitGemv``, ``int8_linear`` on
  CUDA tensors; ``launch`` (prepared, on the shared stream) and ``kernel_stream()``.
- :mod:`edgec.kernels.modules`: ``SparseConv2d``, ``LowBitLinear``, ``CudaGraphed``, ``convert(model)``.

The sources are the top-level ``kernels/*.cu`` (a wheel ships them as ``edgec/kernels/cuda/``);
``kernels/cuda_cpu_emu.h`` runs them on the
CPU for the tests. Importing this package imports neither torch nor pycuda and does not touch
CUDA; names below are loaded on first use.

Example:
    >>> from edgec.kernels import check_all, convert
    >>> model, report = convert(student, min_sparsity=0.7, bits=4)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "packing": ("CsrConv2dWeight", "LowBitWeight", "GemvWeight", "Int8Weight", "PackingError", "pack_csr_conv2d",
                "unpack_csr_conv2d", "pack_lowbit", "quantize_lowbit", "unpack_lowbit_codes", "dequantize_lowbit",
                "repack_gemv", "repack_mma", "unpack_gemv_codes", "dequantize_gemv",
                "quantize_int8_weight", "dequantize_int8", "int8_activation_scale", "quantize_int8_activation",
                "sparse_conv2d_reference", "lowbit_linear_reference", "int8_linear_reference"),
    "loader": ("KernelError", "KERNEL_FILES", "check_all", "compile_cubin", "get_function", "kernel_dir",
               "prepared_function", "shared_stream"),
    "ops": ("sparse_conv2d", "lowbit_linear", "int8_linear", "LowBitGemv", "kernel_stream", "launch"),
    "modules": ("SparseConv2d", "LowBitLinear", "CudaGraphed", "convert", "detect_lowbit"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"edgec.kernels.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'edgec.kernels' has no attribute {name!r}")
