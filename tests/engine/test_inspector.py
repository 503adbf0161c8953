"""Per-layer precision from engine-inspector JSON, hand-written in TensorRT's documented layer format."""

from __future__ import annotations

import json

from edgec.engine.inspector import layer_precision, quantized_nodes, summarize_layers

INT8_FMT = "Thirty-two wide channel vectorized row major Int8 format"
# TensorRT 10 ("Format/Datatype") layer information for a small QDQ CNN, DETAILED verbosity.
TRT10 = {"Layers": [
    {"Name": "input_quantize", "LayerType": "Reformat", "Inputs": [
        {"Name": "input", "Location": "Device", "Dimensions": [1, 1, 8, 8], "Format/Datatype": "Row major linear FP32"}],
     "Outputs": [{"Name": "q", "Location": "Device", "Dimensions": [1, 1, 8, 8], "Format/Datatype": INT8_FMT}],
     "ParameterType": "Reformat", "Origin": "QDQ"},
    {"Name": "/0/Conv + /1/Relu", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "q", "Dimensions": [1, 1, 8, 8], "Format/Datatype": INT8_FMT}],
     "Outputs": [{"Name": "a", "Dimensions": [1, 8, 8, 8], "Format/Datatype": INT8_FMT}],
     "ParameterType": "Convolution", "Kernel": [3, 3], "Weights": {"Type": "Int8", "Count": 72},
     "Bias": {"Type": "Float", "Count": 8}, "TacticName": "sm80_xmma_fprop_implicit_gemm_i8i8",
     "Metadata": "[ONNX Layer: /0/Conv]\u001f[ONNX Layer: /1/Relu]"},
    {"Name": "/2/Conv", "LayerType": "CaskConvolution",
     "Inputs": [{"Name": "a", "Dimensions": [1, 8, 8, 8], "Format/Datatype": "Row major linear FP32"}],
     "Outputs": [{"Name": "b", "Dimensions": [1, 8, 4, 4], "Format/Datatype": "Row major linear FP32"}],
     "ParameterType": "Convolution", "Weights": {"Type": "Float", "Count": 576}},
    {"Name": "/3/Relu", "LayerType": "PointWiseV2",
     "Outputs": [{"Name": "c", "Dimensions": [1, 8, 4, 4], "Format/Datatype": "Two wide channel vectorized row major FP16 format"}]},
    {"Name": "/4/Flatten", "LayerType": "NoOp", "ParameterType": "Shuffle"},
    {"Name": "myelin_fc", "LayerType": "gemm", "Weights": {"Type": "Int8", "Count": 1280},
     "Metadata": "[ONNX Layer: /5/Gemm]",
     "Outputs": [{"Name": "logits", "Dimensions": [1, 10], "Format/Datatype": "Row major linear FP32"}]},
], "Bindings": ["input", "logits"]}


def test_trt10_layer_information_is_summarised():
    s = summarize_layers(json.dumps(TRT10), quantized_nodes={"/0/Conv", "/2/Conv", "/3/Relu", "/5/Gemm"})
    assert (s["layers"], s["counted"], s["int8"], s["fp16"], s["fp32"], s["other"]) == (6, 4, 2, 1, 1, 0)
    assert s["int8_fraction"] == 0.5 and s["detailed"] is True
    assert s["fallback"] == ["/2/Conv", "/3/Relu"] and s["fallback_count"] == 2  # meant for INT8, ran in float
    assert [r["precision"] for r in s["per_layer"]] == ["data", "int8", "fp32", "fp16", "data", "int8"]


def test_trt11_split_datatype_and_format_fields():
    layer = {"Name": "/c/Conv", "LayerType": "CaskConvolution",
             "Outputs": [{"Name": "y", "Dimensions": [1, 4], "Datatype": "Half", "Format": "Row major linear"}]}
    assert layer_precision(layer) == "fp16"
    s = summarize_layers({"Layers": [layer]}, {"/c/Conv"})
    assert s["fp16"] == 1 and s["fallback"] == ["/c/Conv"]


def test_without_detailed_verbosity_counts_are_unknown():
    s = summarize_layers({"Layers": ["/0/Conv + /1/Relu", "/5/Gemm"], "Bindings": ["input", "logits"]})
    assert s["detailed"] is False and s["layers"] == 2 and s["int8"] is None and s["fallback"] is None


def test_types_are_not_confused():
    assert layer_precision({"Outputs": [{"Format/Datatype": "Row major linear BFloat16"}]}) == "bf16"
    assert layer_precision({"Outputs": [{"Format/Datatype": "Row major linear Int32"}]}) == "int32"
    assert layer_precision({"Outputs": [{"Format/Datatype": "Row major linear FP8"}]}) == "fp8"
    assert layer_precision({"LayerType": "Reformat"}) == "data"
    assert layer_precision({"Name": "x"}) == "unknown"


def test_quantized_nodes_are_the_consumers_of_dequantize_outputs(qdq_onnx):
    import onnx

    nodes = quantized_nodes(onnx.load(str(qdq_onnx)))
    model = onnx.load(str(qdq_onnx))
    ops = {n.name: n.op_type for n in model.graph.node}
    assert {ops[n] for n in nodes} >= {"Conv", "Gemm"}
    assert not {ops[n] for n in nodes} & {"QuantizeLinear", "DequantizeLinear"}
