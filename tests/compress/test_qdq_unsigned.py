"""S8S8 -> U8U8 rewrite of a QDQ model (QAT's CPU file): the same function, and no VPMADDUBSW saturation."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgec.compress.qdq_unsigned import to_unsigned_qdq
from edgec.compress.quantize import quantize_qdq
from edgec.compress.saturation import predict_saturation
from edgec.errors import ModelError
from edgec.export.onnx import export_onnx


def _run(path, x):
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # the QDQ arithmetic as written
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def s8s8(tmp_path_factory):
    """A symmetric INT8 file of a conv net with large post-ReLU activations (it saturates without VNNI)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(8 * 8 * 8, 10)).eval()
    with torch.no_grad():
        model[0].weight.mul_(4.0)
    folder = tmp_path_factory.mktemp("u8")
    x = np.abs(np.random.default_rng(1).normal(size=(96, 4, 8, 8))).astype(np.float32) * 3
    fp32 = export_onnx(model, (4, 8, 8), folder / "model.onnx", exporter="torchscript")
    return quantize_qdq(fp32, folder / "s8s8.onnx", x[:64], method="minmax", flavour="s8s8"), x[64:], folder


def test_the_unsigned_file_computes_the_same_function_and_cannot_saturate(s8s8):
    src, x, folder = s8s8
    counts = to_unsigned_qdq(src, folder / "u8u8.onnx")
    assert counts["zero_points"] > 0 and counts["weights"] == 3  # two Conv weights and the Gemm weight
    m = onnx.load(str(folder / "u8u8.onnx"))
    zps = [numpy_helper.to_array(t) for t in m.graph.initializer if t.data_type == onnx.TensorProto.UINT8
           and t.name in {n.input[2] for n in m.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")}]
    assert zps and all((z == 128).all() for z in zps)
    assert not any(t.data_type == onnx.TensorProto.INT8 for t in m.graph.initializer)
    # Same dequantized values everywhere, so the same outputs (float rounding of the same sums only)
    np.testing.assert_allclose(_run(folder / "u8u8.onnx", x), _run(src, x), rtol=1e-5, atol=1e-5)
    assert predict_saturation(src, x, max_samples=16)["saturates"]
    assert not predict_saturation(folder / "u8u8.onnx", x, max_samples=16)["saturates"]


def test_an_asymmetric_file_is_refused(s8s8, tmp_path):
    src, _, _ = s8s8
    m = onnx.load(str(src))
    zp = next(t for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT8 and t.name.endswith("zero_point"))
    zp.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(zp).shape, 3, np.int8), zp.name))
    onnx.save(m, str(tmp_path / "asym.onnx"))
    with pytest.raises(ModelError, match="non-zero INT8 zero point"):
        to_unsigned_qdq(tmp_path / "asym.onnx", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
