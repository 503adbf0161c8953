"""Exports of quantization-trained models: INT8 QAT -> QDQ ONNX with the learned scales (ORT, TensorRT
checker, agreement with torch); low-bit -> FP32 ONNX with on-grid weights + packed codes that round-trip."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgec.compress.qat import finalize, prepare_qat, train_quantized
from edgec.data import load_dataset
from edgec.errors import ArtifactError, ModelError
from edgec.export.lowbit import (container_bits, export_lowbit, export_qat_qdq, load_lowbit, run_onnx,
                                 verify_qdq)
from edgec.export.onnx import check_parity
from edgec.export.qdq import qdq_problems, qdq_summary
from edgec.train import TrainConfig, evaluate, fit
from tests.tiny_models import small_cnn


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", seed=0)
    return (ds.train.x, ds.train.y), (ds.val.x, ds.val.y), (ds.test.x, ds.test.y)


@pytest.fixture(scope="module")
def float_student(digits):
    train, val, _ = digits
    return fit(small_cnn(), train, val, TrainConfig(epochs=8, lr=1e-2), progress=False).model


@pytest.fixture(scope="module")
def qat_model(digits, float_student):
    train, val, _ = digits
    torch.manual_seed(0)
    result = train_quantized(float_student, train, val, TrainConfig(epochs=1, lr=1e-3), method="qat",
                             progress=False)
    return finalize(result.model)


def _inits(path) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}


@pytest.mark.parametrize("exporter, dynamic_batch", [("torchscript", True), ("dynamo", False)])
def test_int8_qat_exports_a_tensorrt_qdq_file_with_the_learned_scales(digits, qat_model, tmp_path,
                                                                      exporter, dynamic_batch):
    _, (xv, _), (xt, yt) = digits
    assert evaluate(qat_model, xt, yt)[1] > 0.85             # a trained model, not noise
    path = export_qat_qdq(qat_model, (1, 8, 8), tmp_path / "int8.onnx", exporter=exporter,
                          dynamic_batch=dynamic_batch)
    assert qdq_problems(path) == []
    s = qdq_summary(path)
    assert s["ops_covered"] == s["weighted_ops"] == {"Conv": 3, "Gemm": 1}
    assert (s["per_channel"], s["per_tensor"]) == (4, 4)     # weights per channel, activations per tensor
    x = np.concatenate([xt, xv])                            # 503 inputs
    report = verify_qdq(qat_model, path, x, min_top1_agreement=0.99)
    assert report.top1_agreement >= 0.99 and report.n == len(x)
    # The Q/DQ scales are the trained ones (not re-calibrated): every learned scale is in the file.
    values = [v for v in _inits(path).values() if v.dtype == np.float32]
    for name in ("conv1", "conv2", "conv3", "fc"):
        layer = qat_model.get_submodule(name)
        act = layer.act_scale.detach().numpy()
        assert any(v.shape == () and v == act for v in values), name
        ws = layer.weight_scale.numpy()
        assert any(v.shape == ws.shape and np.array_equal(v, ws) for v in values), name


def test_dynamo_with_a_dynamic_batch_is_refused_with_the_reason(qat_model, tmp_path):
    with pytest.raises(ModelError, match="dynamic batch") as info:
        export_qat_qdq(qat_model, (1, 8, 8), tmp_path / "x.onnx", exporter="dynamo")
    assert "torchscript" in info.value.hint


def test_lsq_scales_train_and_export(digits, float_student, tmp_path):
    train, val, (xt, _) = digits
    torch.manual_seed(0)
    result = train_quantized(float_student, train, val, TrainConfig(epochs=1, lr=1e-3, max_batches_per_epoch=8),
                             method="qat", act_observer="lsq", progress=False)
    model = finalize(result.model)
    assert isinstance(model.conv2.act_scale, nn.Parameter) and model.conv2.act_scale.item() > 0
    path = export_qat_qdq(model, (1, 8, 8), tmp_path / "lsq.onnx")
    assert qdq_problems(path) == []
    assert verify_qdq(model, path, xt).top1_agreement >= 0.99


@pytest.mark.parametrize("method, bits, codes, exporter", [
    ("binaryconnect", 1, {-1, 1}, "dynamo"),
    ("stochastic_rounding", 2, {-1, 0, 1}, "torchscript"),
    ("binaryconnect", 3, set(range(-3, 4)), "torchscript"),
])
def test_lowbit_export_weights_are_exact_multiples_and_the_packed_file_round_trips(
        digits, float_student, tmp_path, method, bits, codes, exporter):
    train, val, (xt, _) = digits
    torch.manual_seed(0)
    result = train_quantized(float_student, train, val, TrainConfig(epochs=1, lr=1e-3, max_batches_per_epoch=5),
                             method=method, bits=bits, progress=False)
    deployed = finalize(result.model)
    files = export_lowbit(deployed, (1, 8, 8), tmp_path / "student.onnx", exporter=exporter)
    assert files.packed.name == "student.lowbit.safetensors" and files.metadata.name == "student.lowbit.json"
    check_parity(deployed, files.onnx, xt[:128])             # the FP32 file computes the deployed model
    inits = _inits(files.onnx)
    layers = load_lowbit(files.metadata)
    assert sorted(layers) == ["conv2", "conv3"]              # first and last layers stay float
    for name, layer in layers.items():
        w = inits[layer["onnx_weight"]]                      # the ONNX weight itself
        scales = layer["scales"].reshape(-1, 1, 1, 1)
        assert np.array_equal(w, scales * layer["codes"].astype(np.float32))   # exact multiples
        assert np.array_equal(np.rint(w / scales), layer["codes"])   # (s * q) / s rounds back to q
        assert set(np.unique(layer["codes"]).tolist()) <= codes
        info = deployed.get_submodule(name).lowbit           # round trip of the packed codes
        assert np.array_equal(layer["codes"], info.codes.numpy()) and layer["container_bits"] == container_bits(bits)
        np.testing.assert_array_equal(layer["bias"], deployed.get_submodule(name).bias.detach().numpy())
    meta = json.loads(files.metadata.read_text())
    assert (meta["scheme"], meta["bits"], meta["float_layers"]) == (
        {1: "binary", 2: "ternary", 3: "uniform"}[bits], bits, ["conv1", "fc"])


def test_packed_bit_order_is_lsb_first_in_32_bit_words(tmp_path):
    model = prepare_qat(small_cnn(), "bc", bits=1).eval()
    deployed = finalize(model)
    files = export_lowbit(deployed, (1, 8, 8), tmp_path / "b.onnx", exporter="torchscript")
    from safetensors.numpy import load_file

    words = load_file(str(files.packed))["conv2.words"]      # conv2: [16, 8*3*3 = 72] -> 3 words per row
    codes = deployed.conv2.lowbit.codes.numpy().reshape(16, 72)
    assert words.shape == (16, 3) and words.dtype == np.uint32
    bits = (codes[0, :32] > 0).astype(np.uint64)             # +1 -> 1, -1 -> 0; element k at bit k
    assert int(words[0, 0]) == int((bits << np.arange(32, dtype=np.uint64)).sum())
    assert int(words[0, 2]) >> 8 == 0                         # 72 = 2*32 + 8: padding bits are zero


def test_tampered_packed_file_and_float_models_are_rejected(tmp_path):
    deployed = finalize(prepare_qat(small_cnn(), "sr", bits=2).eval())
    files = export_lowbit(deployed, (1, 8, 8), tmp_path / "t.onnx", exporter="torchscript")
    files.packed.write_bytes(files.packed.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ArtifactError, match="sha256"):
        load_lowbit(files.metadata)
    with pytest.raises(ModelError, match="no deployed low-bit layers"):
        export_lowbit(small_cnn().eval(), (1, 8, 8), tmp_path / "f.onnx")
    with pytest.raises(ModelError, match="no INT8 fake-quant layers"):
        export_qat_qdq(small_cnn().eval(), (1, 8, 8), tmp_path / "g.onnx")
    assert run_onnx(files.onnx, np.zeros((3, 1, 8, 8), np.float32)).shape == (3, 10)


def test_quantize_for_deployment_writes_verified_files(digits, float_student, tmp_path):
    from edgec.configs import PtqConfig, QatConfig, StochasticRoundingConfig
    from edgec.export.quantized import quantize_for_deployment

    train, val, _ = digits
    short = TrainConfig(epochs=1, lr=1e-3, max_batches_per_epoch=5)
    ptq = quantize_for_deployment(float_student, train, val, tmp_path, (1, 8, 8), PtqConfig(), progress=False)
    assert ptq.onnx.name == "student.int8.onnx" and qdq_problems(ptq.onnx) == []
    qat = quantize_for_deployment(float_student, train, val, tmp_path / "qat", (1, 8, 8),
                                  QatConfig(train=short), progress=False)
    assert qdq_problems(qat.onnx) == [] and qat.verification["top1_agreement"] >= 0.99
    sr = quantize_for_deployment(float_student, train, val, tmp_path, (1, 8, 8),
                                 StochasticRoundingConfig(bits=2, train=short), progress=False, exporter="torchscript")
    assert (sr.onnx.name, sr.packed.name, sr.metadata.name) == (
        "student.w2.onnx", "student.w2.lowbit.safetensors", "student.w2.lowbit.json")
    assert sorted(load_lowbit(sr.metadata)) == ["conv2", "conv3"] and sr.val_accuracy > 0.1
    assert json.loads(json.dumps(sr.to_dict()))["bits"] == 2
