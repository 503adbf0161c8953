"""What precision each layer of a built TensorRT engine runs in, from TensorRT's engine inspector.

After a build with ``config.profiling_verbosity = ProfilingVerbosity.DETAILED``,
``engine.create_engine_inspector().get_engine_information(LayerInformationFormat.JSON)`` returns
(TensorRT developer guide, "Engine Inspector")::

    {"Layers": [{"Name": "/conv1/Conv + /relu/Relu", "LayerType": "CaskConvolution",
                 "Inputs":  [{"Name": "x", "Dimensions": [1, 8, 8, 8], "Format/Datatype": "Thirty-two wide
                              channel vectorized row major Int8 format"}],
                 "Outputs": [...], "ParameterType": "Convolution",
                 "Weights": {"Type": "Int8", "Count": 576}, "Bias": {"Type": "Float", "Count": 8},
                 "TacticName": "...", "Metadata": "[ONNX Layer: /conv1/Conv]..."}, ...],
     "Bindings": ["input", "logits"]}

TensorRT 11 splits ``"Format/Datatype"`` into ``"Format"`` and ``"Datatype"``; both are read.
A layer's precision is its weights' type when it has weights, else its first output's type.
Data-movement layers (reformats, shuffles, no-ops, constants) are listed but not counted.

**Fallback**: an ONNX node that reads a DequantizeLinear output was meant to run in INT8 (it
sits between Q/DQ); an engine layer built from such a node (by name or ``Metadata``) that runs
in FP16/FP32 *fell back*. :func:`summarize_layers` lists those; ``edgec gate
--max-fallback-layers`` / ``--min-int8-layers`` can fail a build on them.

Example:
    >>> s = summarize_layers(info_json, quantized_nodes={"/conv1/Conv", "/fc/Gemm"})
    >>> s["int8"], s["fp32"], s["fallback"]
    (2, 1, ['/pool/GlobalAveragePool'])
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import onnx

__all__ = ["summarize_layers", "layer_precision", "quantized_nodes", "DATA_MOVEMENT"]

DATA_MOVEMENT = frozenset({"Reformat", "NoOp", "Shuffle", "Constant", "Identity"})
# Checked in order: "BFLOAT16" contains "FLOAT16", "FLOAT8" would match "FLOAT".
_TYPES = (("BF16", "bf16"), ("BFLOAT16", "bf16"), ("FP8", "fp8"), ("FLOAT8", "fp8"), ("INT8", "int8"),
          ("INT4", "int4"), ("INT32", "int32"), ("INT64", "int64"), ("FP16", "fp16"), ("HALF", "fp16"),
          ("FP32", "fp32"), ("FLOAT", "fp32"), ("BOOL", "bool"), ("UINT8", "uint8"))
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


def _type_of(text: str) -> str | None:
    up = text.upper()
    return next((name for key, name in _TYPES if key in up), None)


def _tensor_type(tensor: dict[str, Any]) -> str | None:
    text = tensor.get("Format/Datatype") or " ".join(str(tensor.get(k, "")) for k in ("Datatype", "Format"))
    return _type_of(text)


def layer_precision(layer: dict[str, Any]) -> str:
    """``int8``, ``fp16``, ``fp32``, ... for one inspector layer; ``data`` for data movement.

    Example:
        >>> layer_precision({"LayerType": "CaskConvolution", "Weights": {"Type": "Int8", "Count": 9}})
        'int8'
    """
    if layer.get("LayerType") in DATA_MOVEMENT or layer.get("ParameterType") in DATA_MOVEMENT:
        return "data"
    weights = layer.get("Weights")
    if isinstance(weights, dict) and weights.get("Count", 1) and _type_of(str(weights.get("Type", ""))):
        return _type_of(str(weights["Type"]))  # type: ignore[return-value]
    for key in ("Outputs", "Inputs"):
        for tensor in layer.get(key) or []:
            found = _tensor_type(tensor) if isinstance(tensor, dict) else None
            if found:
                return found
    return "unknown"


def _onnx_names(layer: dict[str, Any]) -> set[str]:
    """The ONNX node names an engine layer was built from (fused names joined by ' + ', and Metadata)."""
    names = {part.strip() for part in str(layer.get("Name", "")).split(" + ") if part.strip()}
    names |= set(_ONNX_LAYER.findall(str(layer.get("Metadata", ""))))
    return names


def quantized_nodes(model: onnx.ModelProto) -> set[str]:
    """Names of the ONNX nodes (other than Q/DQ) that read a DequantizeLinear output: meant to run in INT8.

    Example:
        >>> sorted(quantized_nodes(onnx.load("model.int8.onnx")))[:2]      # doctest: +SKIP
        ['/features/conv1/Conv', '/fc/Gemm']
    """
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in model.graph.node
            if n.name and n.op_type not in ("QuantizeLinear", "DequantizeLinear") and dq_out & set(n.input)}


def summarize_layers(info: str | dict[str, Any], quantized_nodes: set[str] | None = None) -> dict[str, Any]:
    """Per-precision layer counts, the INT8 share, and the layers that fell back from INT8.

    ``info`` is the inspector's JSON (text or parsed). Returns ``{"layers", "counted", "int8",
    "fp16", "fp32", "other", "int8_fraction", "fallback", "fallback_count", "detailed",
    "per_layer": [{"name", "type", "precision"}]}``. Without DETAILED verbosity TensorRT lists
    layer names only: ``detailed`` is False and the counts are None.

    Example:
        >>> summarize_layers('{"Layers": [{"Name": "c", "LayerType": "CaskConvolution",'
        ...                  ' "Weights": {"Type": "Int8", "Count": 9}}]}')["int8_fraction"]
        1.0
    """
    data = json.loads(info) if isinstance(info, str) else info
    layers = data.get("Layers") or []
    if not all(isinstance(layer, dict) for layer in layers):
        return {"layers": len(layers), "detailed": False, "counted": None, "int8": None, "fp16": None,
                "fp32": None, "other": None, "int8_fraction": None, "fallback": None, "fallback_count": None,
                "per_layer": [{"name": str(layer)} for layer in layers]}
    per_layer = [{"name": str(layer.get("Name", "")), "type": str(layer.get("LayerType", "")),
                  "precision": layer_precision(layer)} for layer in layers]
    counts = Counter(row["precision"] for row in per_layer if row["precision"] != "data")
    counted = sum(counts.values())
    meant = quantized_nodes or set()
    fallback = [row["name"] for layer, row in zip(layers, per_layer)
                if row["precision"] in ("fp16", "fp32", "bf16") and _onnx_names(layer) & meant]
    return {"layers": len(layers), "detailed": True, "counted": counted, "int8": counts.get("int8", 0),
            "fp16": counts.get("fp16", 0), "fp32": counts.get("fp32", 0),
            "other": counted - sum(counts.get(k, 0) for k in ("int8", "fp16", "fp32")),
            "int8_fraction": counts.get("int8", 0) / counted if counted else 0.0,
            "fallback": fallback, "fallback_count": len(fallback), "per_layer": per_layer}
