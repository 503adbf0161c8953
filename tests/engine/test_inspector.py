"""Per-layer precision from engine-inspector JSON, hand-written in TensorRT's documented layer format."""

from __future__ import annotations

import json

from edgec.backends.tensorrt.inspector import layer_precision, quantized_nodes, summarize_layers

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


# --- TensorRT 11's layer JSON (Inputs/Constants/Outputs, no Weights), Myelin, UInt8, DLA (issue 16) ----------

def test_trt11_int8_math_with_a_float_output_is_int8_not_a_fallback():
    from tests.engine.trt11_fixtures import TRT11, TRT11_QUANTIZED

    s = summarize_layers(TRT11, TRT11_QUANTIZED)
    rows = {r["name"]: r["precision"] for r in s["per_layer"]}
    assert rows["/0/Conv + /1/Relu"] == "int8" and rows["{ForeignNode[/5/Gemm]}"] == "int8"
    assert rows["/2/Conv"] == "fp32"
    assert s["fallback"] == ["/2/Conv"]  # the only layer meant for INT8 that really runs in float


def test_myelin_bookkeeping_layers_are_not_compute():
    from tests.engine.trt11_fixtures import TRT11, TRT11_QUANTIZED

    s = summarize_layers(TRT11, TRT11_QUANTIZED)
    rows = {r["name"]: r["precision"] for r in s["per_layer"]}
    for name in ("__myelin_shape_call_0", "__myelin_signal_1", "__myelin_wait_1", "__myelin_signal_and_wait_2"):
        assert rows[name] == "data", name
    # counted: 2 INT8 (conv, gemm), 1 FP32 (conv2), 1 UInt8 (cast) -> other
    assert (s["layers"], s["counted"], s["int8"], s["fp32"], s["other"]) == (9, 4, 2, 1, 1)
    assert s["int8_fraction"] == 0.5


def test_uint8_is_not_int8():
    assert layer_precision({"LayerType": "Cast", "Inputs": [{"Datatype": "UInt8"}]}) == "uint8"
    assert layer_precision({"Outputs": [{"Format/Datatype": "Row major linear UInt8 format"}]}) == "uint8"
    assert layer_precision({"Outputs": [{"Format/Datatype": "Row major linear Int8 format"}]}) == "int8"


def test_trt10_myelin_gemm_without_weights_takes_its_inputs():
    layer = {"Name": "{ForeignNode[/fc/MatMul]}", "LayerType": "Myelin", "ParameterType": "Gemm",
             "Inputs": [{"Format/Datatype": "Row major linear Int8 format"}],
             "Outputs": [{"Format/Datatype": "Row major linear FP32"}]}
    assert layer_precision(layer) == "int8"


def test_layers_on_dla_are_counted():
    from tests.engine.trt11_fixtures import DLA_LAYERS, GPU_ONLY_LAYERS

    s = summarize_layers(DLA_LAYERS)
    assert s["dla"] == 1 and s["counted"] == 2  # the DLA subgraph and the GPU GEMM; nvm copies are data
    assert [r["device"] for r in s["per_layer"]].count("DLA") == 1
    assert summarize_layers(GPU_ONLY_LAYERS)["dla"] == 0
