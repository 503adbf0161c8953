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

Tensors' types are read from ``"Format/Datatype"`` (TensorRT 10) or ``"Datatype"``/``"Format"``.
TensorRT 11's layers list ``Inputs``, ``Constants`` and ``Outputs`` and no ``Weights``; Myelin
layers of 10.x lack ``Weights`` too. A layer's precision is its *math*, not its output:

* weights' type when the layer has ``Weights``;
* for a convolution/GEMM/MatMul layer without them, the narrowest type among its inputs and
  constants (an INT8 GEMM with an FP32 output is INT8);
* otherwise its first output's type, else its first input's.

Not counted as compute: data movement (reformats, shuffles, no-ops, constants), Myelin's
bookkeeping layers (``shape_call``, ``signal``, ``wait``, ``signal_and_wait``) and the copies into
and out of DLA memory (``... to nvm``, ``... from nvm``, ``... copy finish``). Layers whose
``LayerType`` names DLA run on DLA: :func:`summarize_layers` counts them (``dla``), so a DLA build
can say whether anything runs there at all (with ``GPU_FALLBACK``, layers DLA cannot run move to the GPU).

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

__all__ = ["summarize_layers", "layer_precision", "layer_device", "quantized_nodes", "DATA_MOVEMENT",
           "MYELIN_BOOKKEEPING"]

DATA_MOVEMENT = frozenset({"Reformat", "NoOp", "Shuffle", "Constant", "Identity"})
MYELIN_BOOKKEEPING = frozenset({"shape_call", "signal", "wait", "signal_and_wait"})
_DLA_TRANSFER = re.compile(r" (to nvm|from nvm|copy finish)$")
_MATH = re.compile(r"conv|gemm|matmul|matrixmultiply|fullyconnected|deconv", re.IGNORECASE)
# Checked in order: "BFLOAT16" contains "FLOAT16", "FLOAT8" would match "FLOAT", "UINT8" contains "INT8".
_TYPES = (("BF16", "bf16"), ("BFLOAT16", "bf16"), ("FP8", "fp8"), ("FLOAT8", "fp8"), ("UINT8", "uint8"),
          ("INT8", "int8"), ("INT4", "int4"), ("FP4", "fp4"), ("INT32", "int32"), ("INT64", "int64"),
          ("FP16", "fp16"), ("HALF", "fp16"), ("FP32", "fp32"), ("FLOAT", "fp32"), ("BOOL", "bool"))
# Narrowest first: the math of a layer with INT8 weights and FP32 bias is INT8.
_WIDTH = ("fp4", "int4", "fp8", "int8", "uint8", "fp16", "bf16", "fp32", "int32", "int64", "bool")
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]+)\]")


def _type_of(text: str) -> str | None:
    up = text.upper()
    return next((name for key, name in _TYPES if key in up), None)


def _tensor_type(tensor: Any) -> str | None:
    if not isinstance(tensor, dict):
        return None
    text = tensor.get("Format/Datatype") or " ".join(str(tensor.get(k, "")) for k in ("Datatype", "Type", "Format"))
    return _type_of(text)


def _tensors(layer: dict[str, Any], key: str) -> list[Any]:
    value = layer.get(key) or []
    return list(value.values()) if isinstance(value, dict) else list(value)


def _kind(layer: dict[str, Any]) -> str:
    """``data`` (not compute), ``dla`` (a DLA subgraph) or ``compute``."""
    types = {str(layer.get("LayerType", "")), str(layer.get("ParameterType", ""))}
    if types & DATA_MOVEMENT or {t.lower() for t in types} & MYELIN_BOOKKEEPING:
        return "data"
    if _DLA_TRANSFER.search(str(layer.get("Name", ""))):
        return "data"
    return "dla" if any("DLA" in t.upper() for t in types) else "compute"


def layer_device(layer: dict[str, Any]) -> str:
    """``DLA`` for a layer TensorRT put on DLA, else ``GPU``.

    Example:
        >>> layer_device({"Name": "{ForeignNode[/0/Conv.../2/Relu]}", "LayerType": "DLA"})
        'DLA'
    """
    return "DLA" if _kind(layer) == "dla" else "GPU"


def layer_precision(layer: dict[str, Any]) -> str:
    """``int8``, ``fp16``, ``fp32``, ``uint8``, ... for one inspector layer; ``data`` when not compute.

    Example:
        >>> layer_precision({"LayerType": "CaskConvolution", "Weights": {"Type": "Int8", "Count": 9}})
        'int8'
        >>> layer_precision({"LayerType": "CaskGemm", "Inputs": [{"Datatype": "Int8"}],
        ...                  "Outputs": [{"Datatype": "Float"}]})
        'int8'
    """
    if _kind(layer) == "data":
        return "data"
    weights = layer.get("Weights")
    if isinstance(weights, dict) and weights.get("Count", 1) and _type_of(str(weights.get("Type", ""))):
        return _type_of(str(weights["Type"]))  # type: ignore[return-value]
    if _MATH.search(f"{layer.get('LayerType', '')} {layer.get('ParameterType', '')}"):
        found = {t for t in map(_tensor_type, _tensors(layer, "Inputs") + _tensors(layer, "Constants")) if t}
        if found:
            return min(found, key=lambda t: _WIDTH.index(t) if t in _WIDTH else len(_WIDTH))
    for key in ("Outputs", "Inputs"):
        for tensor in _tensors(layer, key):
            found_type = _tensor_type(tensor)
            if found_type:
                return found_type
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
                "dla": None,
                "per_layer": [{"name": str(layer)} for layer in layers]}
    per_layer = [{"name": str(layer.get("Name", "")), "type": str(layer.get("LayerType", "")),
                  "precision": layer_precision(layer), "device": layer_device(layer)} for layer in layers]
    counts = Counter(row["precision"] for row in per_layer if row["precision"] != "data")
    counted = sum(counts.values())
    meant = quantized_nodes or set()
    fallback = [row["name"] for layer, row in zip(layers, per_layer)
                if row["precision"] in ("fp16", "fp32", "bf16") and _onnx_names(layer) & meant]
    return {"layers": len(layers), "detailed": True, "counted": counted, "int8": counts.get("int8", 0),
            "fp16": counts.get("fp16", 0), "fp32": counts.get("fp32", 0),
            "other": counted - sum(counts.get(k, 0) for k in ("int8", "fp16", "fp32")),
            "int8_fraction": counts.get("int8", 0) / counted if counted else 0.0,
            "fallback": fallback, "fallback_count": len(fallback),
            "dla": sum(row["device"] == "DLA" for row in per_layer), "per_layer": per_layer}
