"""Small real ONNX models for the engine tests: FP32, edgec's INT8 QDQ, a 2:4-sparse QDQ, a QOperator one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgec.export.onnx import export_onnx


def _net(sparse_24: bool) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).eval()
    if sparse_24:  # keep 2 of every 4 input channels (conv2: C=8; linear: K=128)
        with torch.no_grad():
            model[2].weight[:, 1::4] = 0
            model[2].weight[:, 2::4] = 0
            model[5].weight[:, 0::2] = 0
    return model


@pytest.fixture(scope="session")
def calib() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(64, 1, 8, 8)).astype(np.float32)


@pytest.fixture(scope="session")
def fp32_onnx(tmp_path_factory):
    return export_onnx(_net(False), (1, 8, 8), tmp_path_factory.mktemp("fp32") / "model.onnx", exporter="torchscript")


@pytest.fixture(scope="session")
def qdq_onnx(fp32_onnx, calib, tmp_path_factory):
    from edgec.compress.quantize import quantize_qdq

    return quantize_qdq(fp32_onnx, tmp_path_factory.mktemp("qdq") / "model.int8.onnx", calib)


@pytest.fixture(scope="session")
def sparse_qdq_onnx(calib, tmp_path_factory):
    from edgec.compress.quantize import quantize_qdq

    folder = tmp_path_factory.mktemp("sparse")
    fp32 = export_onnx(_net(True), (1, 8, 8), folder / "model.onnx", exporter="torchscript")
    return quantize_qdq(fp32, folder / "model.int8.onnx", calib)


@pytest.fixture(scope="session")
def qoperator_onnx(fp32_onnx, calib, tmp_path_factory):
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from edgec.compress.calibrate import CalibrationReader

    out = tmp_path_factory.mktemp("qop") / "model.qop.onnx"
    quantize_static(str(fp32_onnx), str(out), CalibrationReader(calib, "input", 32), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False})
    return out


def trt_skip_reason() -> str | None:
    """Why real TensorRT engines cannot be built and run here, or None when they can."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install 'edgec[trt]'; on Jetson it comes with JetPack)"
    if not torch.cuda.is_available():
        return "no CUDA GPU (torch.cuda.is_available() is False)"
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"tensorrt is installed but cannot be imported: {exc}"
    return None

