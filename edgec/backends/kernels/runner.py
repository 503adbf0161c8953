"""Run an edgec student with its eligible layers swapped for edgec's CUDA kernels (``engine.backend: kernels``).

The student ``.safetensors`` is loaded through the model registry, then
:func:`edgec.kernels.convert` swaps sparse convolutions for ``SparseConv2d`` (CSR kernel) and
low-bit (or ``bits``-quantized) linear layers for ``LowBitLinear``; the swapped model runs on CUDA
torch tensors, the kernels through pycuda. ``describe()["kernels"]`` lists what was swapped.

On CUDA the whole forward runs on the kernels' shared stream (:class:`~edgec.kernels.modules.OnKernelStream`:
one stream join per call, none per kernel), or, with ``cuda_graph=True``, as one CUDA graph per input
shape (:class:`~edgec.kernels.modules.GraphPerShape`: the host cost no longer grows with the layer
count, what Jetson's slower ARM cores need).

On ``device="cpu"`` the swapped modules run their dense torch fallback on weights unpacked from
the very same packed buffers: useful to check a conversion without a GPU, not a kernel benchmark.

Example:
    >>> with KernelsRunner("runs/x/prune-ab12/student.safetensors", min_sparsity=0.7) as r:   # doctest: +SKIP
    ...     logits = r.infer(x)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgec.backends.torch.runner import TorchRunner
from edgec.errors import ModelError

__all__ = ["KernelsRunner"]


class KernelsRunner(TorchRunner):
    """An edgec ``.safetensors`` student, converted to kernel-backed modules, on ``device``.

    Example:
        >>> [r["name"] for r in KernelsRunner("student.safetensors", bits=4).report if r["action"] == "swapped"]  # doctest: +SKIP
        ['classifier.fc']
    """

    runtime = "kernels"

    def __init__(self, path: str | os.PathLike[str], device: str = "cuda", min_sparsity: float = 0.5,
                 bits: int | None = None, cuda_graph: bool = False):
        from edgec.kernels import convert
        from edgec.kernels.modules import GraphPerShape, OnKernelStream
        from edgec.models import load_model

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"model file not found: {self.path}", hint="check the path")
        model, spec = load_model(self.path)
        converted, self.report = convert(model, min_sparsity=min_sparsity, bits=bits)
        self.min_sparsity, self.bits, self.cuda_graph = min_sparsity, bits, cuda_graph
        if str(device).startswith("cuda"):
            converted = (GraphPerShape if cuda_graph else OnKernelStream)(converted.eval())
        super().__init__(converted, device=device, input_shape=spec.input_shape())

    def describe(self) -> dict[str, Any]:
        """The torch runner's description plus the conversion settings and per-layer report."""
        swapped = [r["name"] for r in self.report if r["action"] == "swapped"]
        return {**super().describe(), "runtime": self.runtime, "model": str(self.path),
                "kernels": {"min_sparsity": self.min_sparsity, "bits": self.bits, "cuda_graph": self.cuda_graph,
                            "swapped": swapped, "layers": self.report}}
