"""The TensorRT QDQ rules: real ORT-quantized models (good and bad) and hand-built edge cases."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from torch import nn

from edgec.compress.calibrate import CalibrationReader
from edgec.compress.quantize import quantize_qdq
from edgec.errors import ModelError
from edgec.export.onnx import export_onnx
from edgec.export.qdq import assert_tensorrt_qdq, qdq_problems, qdq_summary


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 10)).eval()
    return export_onnx(model, (1, 8, 8), tmp_path_factory.mktemp("fp32") / "model.onnx", exporter="torchscript")


@pytest.fixture(scope="module")
def x_cal():
    return np.random.default_rng(0).normal(size=(64, 1, 8, 8)).astype(np.float32)


def _ort_quantize(fp32, out, x_cal, **kwargs):
    options = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
    options.update(kwargs.pop("extra_options", {}))
    args = dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                per_channel=True, calibrate_method=CalibrationMethod.MinMax, extra_options=options)
    args.update(kwargs)
    quantize_static(str(fp32), str(out), CalibrationReader(x_cal, "input", 32), **args)
    return out


def test_edgec_quantized_model_passes_and_is_summarised(fp32, x_cal, tmp_path):
    path = quantize_qdq(fp32, tmp_path / "int8.onnx", x_cal)
    assert qdq_problems(path) == []
    assert_tensorrt_qdq(path)
    s = qdq_summary(path)
    assert s["weighted_ops"] == {"Conv": 2, "Gemm": 1}
    assert {op: s["ops_covered"].get(op) for op in s["weighted_ops"]} == s["weighted_ops"]
    assert (s["quantized_weights"], s["per_channel"], s["opset"]) == (3, 3, 18)
    assert s["dequantize_nodes"] == s["per_channel"] + s["per_tensor"]
    assert s["quantize_nodes"] == s["per_tensor"] > 0  # one Q per activation, none on weights


def test_fp32_model_is_not_a_qdq_model(fp32):
    assert qdq_problems(fp32) == ["no QuantizeLinear/DequantizeLinear nodes: the model is not QDQ-quantized"]


def test_qoperator_model_is_caught(fp32, x_cal, tmp_path):
    path = _ort_quantize(fp32, tmp_path / "qop.onnx", x_cal, quant_format=QuantFormat.QOperator)
    problems = qdq_problems(path)
    assert any(p.startswith("QOperator op QLinearConv (2 nodes)") for p in problems), problems
    with pytest.raises(ModelError, match="QLinearConv"):
        assert_tensorrt_qdq(path)


def test_asymmetric_uint8_model_is_caught(fp32, x_cal, tmp_path):
    path = _ort_quantize(fp32, tmp_path / "asym.onnx", x_cal, activation_type=QuantType.QUInt8,
                         extra_options={"ActivationSymmetric": False})
    problems = qdq_problems(path)
    assert any("zero point is UINT8" in p for p in problems), problems
    assert any("not 0 (asymmetric" in p for p in problems), problems


def test_int32_bias_model_is_caught(fp32, x_cal, tmp_path):
    path = _ort_quantize(fp32, tmp_path / "bias.onnx", x_cal, extra_options={"QuantizeBias": True})
    problems = qdq_problems(path)
    assert len([p for p in problems if "INT32 (a quantized bias)" in p]) == 3, problems  # 2 Conv + Gemm


# --- hand-built graphs for the rules ORT's quantizer never breaks ---------------------------------

def _qdq_model(op="Conv", *, w_axis=0, act_scale=(0.1,), zp_type=TensorProto.INT8, opset=18, trans_b=1,
               dynamic_scale=False, domain="", act_zp=True) -> onnx.ModelProto:
    """x -> Q -> DQ -> op(., DQ(int8 weight, per-channel)) -> y."""
    if op == "Conv":
        w_shape, x_shape, y_shape = (8, 4, 3, 3), [1, 4, 8, 8], [1, 8, 6, 6]
    elif op == "Gemm":
        w_shape, x_shape, y_shape = ((6, 5) if trans_b else (5, 6)), [1, 5], [1, 6]
    else:  # MatMul: B is [K, N]
        w_shape, x_shape, y_shape = (5, 6), [1, 5], [1, 6]
    inits = [numpy_helper.from_array(np.ones(w_shape, np.int8), "w_q"),
             numpy_helper.from_array(np.full(w_shape[w_axis], 0.01, np.float32), "w_s"),
             numpy_helper.from_array(np.zeros(w_shape[w_axis], np.int8), "w_zp"),
             numpy_helper.from_array(np.zeros(len(act_scale) if len(act_scale) > 1 else (),
                                               helper.tensor_dtype_to_np_dtype(zp_type)), "x_zp")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    if dynamic_scale:
        inputs.append(helper.make_tensor_value_info("x_s", TensorProto.FLOAT, []))
    else:
        scale = np.array(act_scale, np.float32)
        inits.append(numpy_helper.from_array(scale if len(act_scale) > 1 else scale.reshape(()), "x_s"))
    zp = ["x_zp"] if act_zp else []
    nodes = [helper.make_node("QuantizeLinear", ["x", "x_s", *zp], ["x_q"], domain=domain,
                              **({"axis": 1} if len(act_scale) > 1 else {})),
             helper.make_node("DequantizeLinear", ["x_q", "x_s", *zp], ["x_dq"], domain=domain,
                              **({"axis": 1} if len(act_scale) > 1 else {})),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], axis=w_axis, name="w_dq"),
             helper.make_node(op, ["x_dq", "w"], ["y"], name="the_op", **({"transB": trans_b} if op == "Gemm" else {}))]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def test_hand_built_good_models_pass():
    assert qdq_problems(_qdq_model("Conv", w_axis=0)) == []
    assert qdq_problems(_qdq_model("Gemm", trans_b=1, w_axis=0)) == []   # B is [N, K]
    assert qdq_problems(_qdq_model("Gemm", trans_b=0, w_axis=1)) == []   # B is [K, N]
    assert qdq_problems(_qdq_model("MatMul", w_axis=1)) == []


@pytest.mark.parametrize("model, expected", [
    (_qdq_model("Conv", w_axis=1), "output-channel axis is 0"),
    (_qdq_model("Gemm", trans_b=1, w_axis=1), "output-channel axis is 0"),
    (_qdq_model("Gemm", trans_b=0, w_axis=0), "output-channel axis is 1"),
    (_qdq_model("MatMul", w_axis=0), "output-channel axis is 1"),
    (_qdq_model(act_scale=(0.1, 0.2, 0.3, 0.4)), "per-channel scale (4 values) on activation 'x'"),
    (_qdq_model(dynamic_scale=True), "scale 'x_s' is computed at run time"),
    (_qdq_model(opset=12), "opset is 12"),
    (_qdq_model(zp_type=TensorProto.UINT8), "zero point is UINT8"),
    (_qdq_model(act_zp=False), "no zero point, so it quantizes to UINT8"),
    (_qdq_model(domain="com.microsoft"), "in domain 'com.microsoft'"),
], ids=["conv-axis", "gemm-transB1-axis", "gemm-transB0-axis", "matmul-axis", "per-channel-activation",
        "dynamic-scale", "opset12", "uint8-zp", "missing-zp", "contrib-domain"])
def test_hand_built_bad_models_are_caught(model, expected):
    problems = qdq_problems(model)
    assert any(expected in p for p in problems), problems


# --- every node-level problem names its node; Identity-wrapped constants; bad scales ---------------

def _with_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """Route the activation scale and zero point through Identity nodes, as the TorchScript exporter
    does when it de-duplicates equal initialisers."""
    g = model.graph
    g.node.insert(0, helper.make_node("Identity", ["x_s"], ["x_s_copy"], name="dedup_scale"))
    g.node.insert(0, helper.make_node("Identity", ["x_zp"], ["x_zp_copy"], name="dedup_zp"))
    for node in g.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and node.input[1] == "x_s":
            node.input[1], node.input[2] = "x_s_copy", "x_zp_copy"
    return model


def test_identity_wrapped_scales_and_zero_points_are_static():
    assert qdq_problems(_with_identities(_qdq_model("Conv"))) == []
    bad = _with_identities(_qdq_model("Conv"))
    bad.graph.initializer[3].CopyFrom(numpy_helper.from_array(np.array(3, np.int8), "x_zp"))
    assert any("QuantizeLinear 'x_q': zero point is not 0" in p for p in qdq_problems(bad))


@pytest.mark.parametrize("value", [0.0, -0.1, float("nan")])
def test_non_positive_or_non_finite_scales_are_caught(value):
    problems = qdq_problems(_qdq_model(act_scale=(value,)))
    assert any(p.startswith("QuantizeLinear 'x_q': scale 'x_s' has values that are not finite and > 0")
               for p in problems), problems


def test_int32_bias_dequantize_is_named():
    model = _qdq_model("Conv")
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(8, np.int32), "b_q"))
    model.graph.initializer.append(numpy_helper.from_array(np.full(8, 0.001, np.float32), "b_s"))
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", ["b_q", "b_s"], ["b"], axis=0, name="bias_dq"))
    model.graph.node[-1].input.append("b")
    assert qdq_problems(model) == ["DequantizeLinear 'bias_dq' dequantizes INT32 (a quantized bias); TensorRT "
                                   "needs float biases (QuantizeBias: False)"]


_NODE_PROBLEM = re.compile(r"^(QuantizeLinear|DequantizeLinear) '[^']+'|^QOperator op \w+ \(\d+ nodes\): .*; nodes: '")
_GLOBAL_PROBLEMS = ("default-domain opset is", "no QuantizeLinear/DequantizeLinear nodes")


def test_every_problem_names_its_node(fp32, x_cal, tmp_path):
    models = [_qdq_model("Conv", w_axis=1), _qdq_model(act_scale=(0.1, 0.2, 0.3, 0.4)),
              _qdq_model(dynamic_scale=True), _qdq_model(zp_type=TensorProto.UINT8), _qdq_model(act_zp=False),
              _qdq_model(domain="com.microsoft"), _qdq_model(act_scale=(-1.0,)), _qdq_model(opset=12),
              _ort_quantize(fp32, tmp_path / "qop.onnx", x_cal, quant_format=QuantFormat.QOperator),
              _ort_quantize(fp32, tmp_path / "asym.onnx", x_cal, activation_type=QuantType.QUInt8,
                            extra_options={"ActivationSymmetric": False}),
              _ort_quantize(fp32, tmp_path / "bias.onnx", x_cal, extra_options={"QuantizeBias": True})]
    seen = 0
    for model in models:
        for p in qdq_problems(model):
            seen += 1
            assert _NODE_PROBLEM.match(p) or p.startswith(_GLOBAL_PROBLEMS), p
    assert seen >= len(models)
