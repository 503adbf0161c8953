"""Every family exports to ONNX (static graph, dynamic batch) and ONNX Runtime agrees with torch."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgec.models import create_model

SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar": (3, 32, 32)}
ALLOWED_OPS = {"Conv", "Relu", "MaxPool", "GlobalAveragePool", "Flatten", "Gemm", "Add",
               "BatchNormalization"}


@pytest.mark.parametrize("data", list(SHAPES))
@pytest.mark.parametrize("name", ["teacher_cnn", "fitnet", "cifar_resnet"])
def test_onnx_export_matches_torch(tmp_path, name, data):
    torch.manual_seed(0)
    c, h, w = SHAPES[data]
    model = create_model(name, in_channels=c, num_classes=10, input_size=(h, w))
    with torch.no_grad():                    # non-trivial BN statistics
        model.train()(torch.randn(16, c, h, w) * 2 + 0.5)
    model.eval()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (torch.zeros(1, c, h, w),), str(path), dynamo=False,
                          input_names=["input"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    ops = {node.op_type for node in graph.graph.node}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS   # no If/Loop: no data-dependent control flow

    x = torch.randn(5, c, h, w)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (5, 10)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
