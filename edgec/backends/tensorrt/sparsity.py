"""Which weights of an ONNX model are 2:4 structured-sparse, so TensorRT's ``SPARSE_WEIGHTS`` helps.

TensorRT's sparse tensor-core tactics need, for a Conv weight ``[K, C, R, S]`` with ``C % 4 == 0``,
for every output channel k and kernel position (r, s), at most 2 non-zeros in each group of 4
consecutive input channels (TensorRT developer guide, "Structured Sparsity"); a Gemm/MatMul
weight is the R = S = 1 case along its input (K) dimension. This checker reads the weights
straight from the ONNX file (through Q/DQ for an INT8 model: the zeros are the same) in numpy.

Example:
    >>> sparse_24_layers(onnx.load("pruned-24.int8.onnx"))
    ['/features/conv2/Conv', '/fc/Gemm']
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["is_2to4", "sparse_24_layers"]

_PASS_THROUGH = ("DequantizeLinear", "QuantizeLinear", "Identity")


def is_2to4(weight: np.ndarray, input_axis: int) -> bool:
    """True if every 4 consecutive entries along ``input_axis`` hold at most 2 non-zeros.

    False when that dimension is not a multiple of 4 (TensorRT cannot use the pattern there).

    Example:
        >>> is_2to4(np.array([[1.0, 0, 2.0, 0, 0, 0, 0, 3.0]]), input_axis=1)
        True
    """
    w = np.moveaxis(np.asarray(weight), input_axis, -1)
    if w.ndim < 1 or w.shape[-1] == 0 or w.shape[-1] % 4:
        return False
    groups = w.reshape(-1, w.shape[-1] // 4, 4)
    return bool((np.count_nonzero(groups, axis=-1) <= 2).all())


def _weight(name: str, inits: dict[str, onnx.TensorProto], producer: dict[str, onnx.NodeProto]) -> np.ndarray | None:
    """The constant behind ``name``, followed back through Q/DQ and Identity nodes."""
    for _ in range(len(producer) + 1):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        node = producer.get(name)
        if node is None or node.op_type not in _PASS_THROUGH or not node.input:
            return None
        name = node.input[0]
    return None


def _input_axis(node: onnx.NodeProto, rank: int) -> int | None:
    if node.op_type == "Conv":
        return 1 if rank == 4 else None
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 1 if trans_b else 0
    if node.op_type == "MatMul":
        return rank - 2 if rank >= 2 else None
    return None


def sparse_24_layers(model: onnx.ModelProto) -> list[str]:
    """Names (or first outputs) of the Conv/Gemm/MatMul nodes whose constant weight is 2:4 sparse.

    Example:
        >>> sparse_24_layers(dense_model)
        []
    """
    inits = {t.name: t for t in model.graph.initializer}
    producer = {out: n for n in model.graph.node for out in n.output}
    found = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        w = _weight(node.input[1], inits, producer)
        axis = None if w is None else _input_axis(node, w.ndim)
        if axis is not None and np.count_nonzero(w) and is_2to4(w, axis):
            found.append(node.name or node.output[0])
    return found
