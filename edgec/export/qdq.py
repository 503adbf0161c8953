"""Is this quantized ONNX file one that TensorRT's ONNX parser accepts? (DESIGN.md section 8)

TensorRT builds INT8 engines from *explicit* quantization: QuantizeLinear/DequantizeLinear (QDQ)
nodes around ordinary ops. It rejects or mis-builds files that ONNX Runtime runs happily, so the
quantize stage checks its own output here before anything downstream trusts it:

- QDQ format only: no QOperator ops (QLinearConv, MatMulInteger, ...), Q/DQ in the ONNX domain;
- INT8 zero points, all 0 (symmetric), present (a missing one means UINT8 by default);
- no INT32 DequantizeLinear (a quantized bias): TensorRT wants float biases;
- per-channel scales (1-D, length > 1) only on weights, along the output-channel axis;
  per-tensor (activation) scales hold one value;
- scales and zero points static (initialisers or Constant nodes, possibly behind Identity nodes,
  which the TorchScript exporter inserts when it de-duplicates equal initialisers), scales finite
  and > 0; default-domain opset >= 13.

Every problem that concerns a node names it (op type and node name).

Only the main graph is inspected: edgec's models have no control flow (If/Loop subgraphs).

Example:
    >>> qdq_problems("runs/digits/model.int8.onnx")
    []
    >>> qdq_summary("runs/digits/model.int8.onnx")["weighted_ops"]
    {'Conv': 2, 'Gemm': 1}
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgec.errors import ModelError
from edgec.onnx_files import load_onnx

QOPERATOR_OPS = frozenset({
    "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul",
    "QLinearSigmoid", "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool",
    "QLinearConcat", "QLinearSoftmax", "QLinearReduceMean", "QLinearWhere", "QLinearConvTranspose",
    "QGemm", "QAttention", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
})
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_INT8, _INT32 = onnx.TensorProto.INT8, onnx.TensorProto.INT32
MAX_LISTED = 20  # problems shown in assert_tensorrt_qdq's message


def _dtype_name(elem_type: int) -> str:
    return onnx.TensorProto.DataType.Name(elem_type)


class _Graph:
    """Index of one graph: static values, producers and consumers by tensor name."""

    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.model = model
        self.inits = {t.name: t for t in g.initializer}
        self.const: dict[str, np.ndarray] = {}
        self.alias: dict[str, str] = {}  # Identity output -> its input (followed to static values)
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
        for node in g.node:
            for out in node.output:
                self.producer[out] = node
            for i, name in enumerate(node.input):
                if name:
                    self.consumers[name].append((node, i))
            if node.op_type == "Identity" and node.domain in ("", "ai.onnx") and node.input:
                self.alias[node.output[0]] = node.input[0]
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and node.attribute:
                attr = node.attribute[0]
                value = onnx.helper.get_attribute_value(attr)
                self.const[node.output[0]] = (numpy_helper.to_array(value) if attr.name == "value"
                                              else np.asarray(value))

    def resolve(self, name: str) -> str:
        """Follow Identity nodes back to the tensor they copy (at most as many hops as nodes)."""
        for _ in range(len(self.alias)):
            if name not in self.alias:
                break
            name = self.alias[name]
        return name

    def static(self, name: str) -> np.ndarray | None:
        """The value of an initialiser or Constant output; None if computed at run time."""
        name = self.resolve(name)
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        return self.const.get(name)

    def is_weight(self, name: str) -> bool:
        name = self.resolve(name)
        return name in self.inits or name in self.const

    def elem_type(self, name: str) -> int | None:
        name = self.resolve(name)
        if name in self.inits:
            return self.inits[name].data_type
        if name in self.const:
            return onnx.helper.np_dtype_to_tensor_dtype(self.const[name].dtype)
        return None

    def rank(self, name: str) -> int | None:
        name = self.resolve(name)
        if name in self.inits:
            return len(self.inits[name].dims)
        return self.const[name].ndim if name in self.const else None


def _as_model(path_or_model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model
    return load_onnx(path_or_model)  # zero points may live in (safely checked) external data


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _expected_axis(node: onnx.NodeProto, index: int, rank: int) -> int | None:
    """The output-channel axis of a weight at input ``index`` of ``node`` (None: not a known weight).

    Conv W is [M, C/g, k...] -> 0; ConvTranspose W is [C, M/g, k...] -> 1. Gemm computes
    A' B' with B' = B^T when transB=1: B is then [N, K] and the output channel N is axis 0, else
    B is [K, N] and it is axis 1 (A, if it is the weight, mirrors this with transA). MatMul B is
    [..., K, N] -> the last axis; a constant A [..., M, K] -> the second-to-last.
    """
    op = node.op_type
    if op == "Conv" and index == 1:
        return 0
    if op == "ConvTranspose" and index == 1:
        return 1
    if op == "Gemm" and index in (0, 1):
        trans = _attr(node, "transB" if index == 1 else "transA", 0)
        return (0 if trans else 1) if index == 1 else (1 if trans else 0)
    if op == "MatMul" and index in (0, 1):
        return rank - 1 if index == 1 else rank - 2
    return None


def _check_node(node: onnx.NodeProto, g: _Graph, problems: list[str]) -> None:
    kind = "QuantizeLinear" if node.op_type == "QuantizeLinear" else "DequantizeLinear"
    where = f"{kind} '{node.name or node.output[0]}'"
    x, scale_name = node.input[0], node.input[1]
    zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if node.domain not in ("", "ai.onnx"):
        problems.append(f"{where} is in domain '{node.domain}'; TensorRT needs the standard ONNX Q/DQ "
                        "(do not use UseQDQContribOps)")
    if _attr(node, "block_size", 0):
        problems.append(f"{where} uses blocked quantization (block_size); TensorRT INT8 needs per-tensor or "
                        "per-channel scales")

    scale = g.static(scale_name)
    if scale is None:
        problems.append(f"{where}: scale '{scale_name}' is computed at run time; TensorRT needs static scales")
    elif not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        problems.append(f"{where}: scale '{scale_name}' has values that are not finite and > 0 "
                        f"(min {float(np.min(scale)):.3g}); quantization scales must be positive")
    if zp_name is None:
        if kind == "QuantizeLinear" and _attr(node, "output_dtype", 0) != _INT8:
            problems.append(f"{where} has no zero point, so it quantizes to UINT8; TensorRT needs INT8")
        x_type = g.elem_type(x)
        if kind == "DequantizeLinear" and x_type == _INT32:
            problems.append(_bias_problem(where))
            return  # its (per-channel) bias scale is moot once the bias must be float
        if kind == "DequantizeLinear" and x_type is not None and x_type != _INT8:
            problems.append(f"{where} dequantizes {_dtype_name(x_type)}; TensorRT needs INT8")
    else:
        zp = g.static(zp_name)
        zp_type = g.elem_type(zp_name)
        if zp is None:
            problems.append(f"{where}: zero point '{zp_name}' is computed at run time; TensorRT needs "
                            "static zero points")
        elif zp_type == _INT32 and kind == "DequantizeLinear":
            problems.append(_bias_problem(where))
            return
        elif zp_type != _INT8:
            problems.append(f"{where}: zero point is {_dtype_name(zp_type or 0)}, TensorRT needs INT8 "
                            "(use QuantType.QInt8 for activations and weights)")
        if zp is not None and np.any(zp != 0):
            problems.append(f"{where}: zero point is not 0 (asymmetric quantization); TensorRT needs "
                            "symmetric ranges (ActivationSymmetric/WeightSymmetric: True)")
    if scale is None or scale.size <= 1:
        return  # per-tensor: a single value, fine for weights and activations alike

    # Per-channel. TensorRT allows it only on weights (a constant, maybe through a weight Q -> DQ).
    src = g.producer.get(x)
    weight = x if g.is_weight(x) else (src.input[0] if src is not None and src.op_type == "QuantizeLinear"
                                       and g.is_weight(src.input[0]) else None)
    if scale.ndim != 1:
        problems.append(f"{where}: scale has shape {list(scale.shape)}; per-channel scales must be 1-D")
        return
    if weight is None:
        problems.append(f"{where}: per-channel scale ({scale.size} values) on activation '{x}'; TensorRT "
                        "allows per-channel scales on weights only")
        return
    if kind == "QuantizeLinear":
        return  # its DequantizeLinear partner is checked against the consuming op below
    rank = g.rank(weight) or 1
    axis = _attr(node, "axis", 1)
    axis = axis + rank if axis < 0 else axis
    for consumer, index in g.consumers.get(node.output[0], []):
        expected = _expected_axis(consumer, index, rank)
        if expected is None:
            problems.append(f"{where}: per-channel weight '{weight}' feeds {consumer.op_type} input {index}, "
                            "where its output-channel axis is unknown; quantize it per tensor")
        elif axis != expected:
            problems.append(f"{where}: per-channel axis {axis} for weight '{weight}' of {consumer.op_type} "
                            f"'{consumer.name}', but its output-channel axis is {expected}")


def _bias_problem(where: str) -> str:
    return (f"{where} dequantizes INT32 (a quantized bias); TensorRT needs float biases "
            "(QuantizeBias: False)")


def qdq_problems(path_or_model: str | Path | onnx.ModelProto) -> list[str]:
    """Everything that keeps TensorRT from building this QDQ model; an empty list means compatible.

    Example:
        >>> qdq_problems("model.qoperator.onnx")[0]
        "QOperator op QLinearConv (2 nodes): TensorRT needs QDQ format (QuantFormat.QDQ); nodes: 'c1', 'c2'"
    """
    model = _as_model(path_or_model)
    problems: list[str] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < 13:
        problems.append(f"default-domain opset is {opset}; TensorRT's QDQ support needs opset >= 13")
    ops = Counter(n.op_type for n in model.graph.node)
    for op in sorted(set(ops) & QOPERATOR_OPS):
        names = [f"'{n.name or n.output[0]}'" for n in model.graph.node if n.op_type == op]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        problems.append(f"QOperator op {op} ({ops[op]} nodes): TensorRT needs QDQ format (QuantFormat.QDQ); "
                        f"nodes: {shown}")
    if not ops["QuantizeLinear"] and not ops["DequantizeLinear"]:
        problems.append("no QuantizeLinear/DequantizeLinear nodes: the model is not QDQ-quantized")
    g = _Graph(model)
    for node in model.graph.node:
        if node.op_type in _QDQ:
            _check_node(node, g, problems)
    return problems


def assert_tensorrt_qdq(path_or_model: str | Path | onnx.ModelProto) -> None:
    """Raise ModelError listing every problem if TensorRT would not accept this QDQ model.

    Example:
        >>> assert_tensorrt_qdq("runs/digits/model.int8.onnx")   # returns None when compatible
    """
    problems = qdq_problems(path_or_model)
    if problems:
        name = path_or_model if not isinstance(path_or_model, onnx.ModelProto) else "the model"
        listed = "\n".join(f"  - {p}" for p in problems[:MAX_LISTED])
        if len(problems) > MAX_LISTED:  # one bad setting repeats per node; the first ones say it
            listed += f"\n  ... and {len(problems) - MAX_LISTED} more (qdq_problems() lists all)"
        raise ModelError(f"{name} is not a QDQ model TensorRT accepts ({len(problems)} problems):\n{listed}",
                         hint="quantize with edgec.compress.quantize.quantize_qdq (QDQ, INT8, symmetric, "
                              "per-channel weights, float bias)")


def qdq_summary(path_or_model: str | Path | onnx.ModelProto) -> dict[str, Any]:
    """Counts that describe the quantization of a QDQ model.

    Keys: ``quantize_nodes``, ``dequantize_nodes``, ``quantized_weights`` (weight initialisers
    behind a DequantizeLinear), ``per_channel`` / ``per_tensor`` (DequantizeLinear nodes by scale
    kind), ``ops_covered`` (op type -> nodes with at least one dequantized input),
    ``weighted_ops`` (op type -> all Conv/ConvTranspose/Gemm/MatMul nodes), ``opset``.

    Example:
        >>> s = qdq_summary("model.int8.onnx"); s["ops_covered"] == s["weighted_ops"]
        True
    """
    model = _as_model(path_or_model)
    g = _Graph(model)
    nodes = model.graph.node
    dq = [n for n in nodes if n.op_type == "DequantizeLinear"]
    per_channel = sum(1 for n in dq if (s := g.static(n.input[1])) is not None and s.size > 1)
    weights = {n.input[0] for n in dq if g.is_weight(n.input[0])}
    weights |= {n.input[0] for n in nodes if n.op_type == "QuantizeLinear" and g.is_weight(n.input[0])}
    dq_outputs = {n.output[0] for n in dq}
    covered = Counter(n.op_type for n in nodes
                      if n.op_type not in _QDQ and any(i in dq_outputs for i in n.input))
    return {
        "quantize_nodes": sum(1 for n in nodes if n.op_type == "QuantizeLinear"),
        "dequantize_nodes": len(dq),
        "quantized_weights": len(weights),
        "per_channel": per_channel,
        "per_tensor": len(dq) - per_channel,
        "ops_covered": dict(sorted(covered.items())),
        "weighted_ops": dict(sorted(Counter(n.op_type for n in nodes if n.op_type in _WEIGHTED).items())),
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
    }


__all__ = ["QOPERATOR_OPS", "assert_tensorrt_qdq", "qdq_problems", "qdq_summary"]
