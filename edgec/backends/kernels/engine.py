"""The ``kernels`` engine backend: the pruned / low-bit student on edgec's own CUDA kernels.

There is no separate engine file: the "engine" is the student ``.safetensors`` plus the conversion
settings (``engine.min_sparsity``, ``engine.kernel_bits``), which
:class:`edgec.backends.kernels.runner.KernelsRunner` applies when it loads the student. The
engine stage runs one real inference on the GPU and records which layers were swapped
(``SparseConv2d`` for convolutions with at least ``min_sparsity`` zero weights, ``LowBitLinear`` for
linear layers on a <= 8-bit grid, or quantized to ``kernel_bits``) and which were kept and why.

Example:
    >>> info = prepare_kernels_engine("runs/x/prune-ab12/student.safetensors", x[:1], min_sparsity=0.7)
    >>> info["swapped"]
    ['features.stage2.conv1', 'classifier']
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from edgec.backends.kernels.runner import KernelsRunner
from edgec.console import say

__all__ = ["prepare_kernels_engine", "runner_options"]


def runner_options(spec: Any) -> dict[str, Any]:
    """``KernelsRunner`` options from the recipe's engine section (:class:`~edgec.configs.EngineConfig`)."""
    return {"min_sparsity": spec.min_sparsity, "bits": spec.kernel_bits}


def prepare_kernels_engine(student: str | os.PathLike[str], sample: np.ndarray, *, device: str = "cuda",
                           min_sparsity: float = 0.5, bits: int | None = None,
                           cuda_graph: bool = False) -> dict[str, Any]:
    """Convert the student, run ``sample`` through it on ``device``, and describe the result.

    ``cuda_graph``: run the model as CUDA graphs (one per input shape; what Jetson's slower CPU wants).
    Returns ``{"swapped": [layer names], "kept": {name: reason}, "runner": KernelsRunner.describe()}``.
    """
    with KernelsRunner(student, device=device, min_sparsity=min_sparsity, bits=bits, cuda_graph=cuda_graph) as runner:
        runner.infer(sample)
        described = runner.describe()
    rows = described["kernels"]["layers"]
    swapped = [r["name"] for r in rows if r["action"] == "swapped"]
    kept = {r["name"]: r.get("reason", "") for r in rows if r["action"] != "swapped"}
    say(f"  kernels: {len(swapped)} of {len(rows)} conv/linear layers swapped for edgec's CUDA kernels"
        + (f" ({', '.join(swapped)})" if swapped else "; none is sparse or low-bit enough"))
    return {"swapped": swapped, "kept": kept, "runner": described}
