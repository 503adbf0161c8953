"""Post-training INT8 QDQ quantization: TensorRT-compatible, accurate, atomic, quiet, clean."""

from __future__ import annotations

import logging
import tempfile

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torch import nn

from edgec.compress.quantize import quantize_qdq
from edgec.errors import DataError, ModelError, RecipeError
from edgec.export.onnx import compare_outputs, export_onnx, ort_session
from edgec.export.qdq import qdq_problems, qdq_summary

SAMPLE = (1, 8, 8)


def _digits_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ten fixed random 8x8 'prototypes' plus noise: a task a tiny CNN learns in a second."""
    protos = np.random.default_rng(1234).normal(size=(10, *SAMPLE)).astype(np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    return (protos[y] + 0.8 * rng.normal(size=(n, *SAMPLE))).astype(np.float32), y


@pytest.fixture(scope="module")
def fp32(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 10))
    x, y = _digits_like(2048, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: one thread is ~5x faster than two on a busy 2-core machine
    try:
        for step in range(120):  # brief training: predictions with margins, like a real student
            i = (step * 64) % len(x)
            loss = nn.functional.cross_entropy(model(torch.from_numpy(x[i:i + 64])),
                                               torch.from_numpy(y[i:i + 64]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    folder = tmp_path_factory.mktemp("fp32")
    return export_onnx(model.eval(), SAMPLE, folder / "model.onnx", exporter="torchscript")


@pytest.fixture(scope="module")
def data():
    x_cal, _ = _digits_like(256, seed=1)
    x_test, y_test = _digits_like(300, seed=2)
    return x_cal, x_test, y_test


def _scales(path) -> dict[str, float]:
    """Per-tensor (activation) scales by name."""
    return {t.name: float(numpy_helper.to_array(t)) for t in onnx.load(str(path)).graph.initializer
            if t.name.endswith("_scale") and not t.dims}


@pytest.mark.parametrize("method", ["minmax", "percentile", "entropy"])
def test_quantized_model_is_tensorrt_qdq_accurate_and_alone(fp32, data, tmp_path, monkeypatch, capfd, method):
    x_cal, x_test, y_test = data
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where ORT and edgec put temporaries
    root_handlers = logging.getLogger().handlers[:]
    out = tmp_path / "out"

    path = quantize_qdq(fp32, out / "model.int8.onnx", x_cal, method=method)

    assert capfd.readouterr() == ("", "")           # ORT's calibration progress stays off the terminal
    assert logging.getLogger().handlers == root_handlers
    assert [p.name for p in out.iterdir()] == ["model.int8.onnx"]
    assert list(scratch.iterdir()) == []            # no augmented models or caches left anywhere
    assert qdq_problems(path) == []
    summary = qdq_summary(path)
    assert summary["per_channel"] == 3 and summary["quantized_weights"] == 3

    ref = ort_session(fp32).run(None, {"input": x_test})[0]
    got = ort_session(path).run(None, {"input": x_test})[0]
    report = compare_outputs(ref, got)
    assert report.n == 300 and report.top1_agreement >= 0.9, report
    assert np.mean(got.argmax(1) == y_test) >= 0.9 * np.mean(ref.argmax(1) == y_test)


def test_methods_find_different_ranges(fp32, data, tmp_path):
    x_cal = data[0]
    scales = {m: _scales(quantize_qdq(fp32, tmp_path / f"{m}.onnx", x_cal, method=m))
              for m in ("minmax", "percentile", "entropy")}
    assert scales["minmax"].keys() == scales["entropy"].keys() == scales["percentile"].keys()
    # Entropy and percentile clip outliers: no range wider than min-max, and some narrower.
    # (ORT's default entropy histogram would make entropy identical to min-max.)
    for m in ("entropy", "percentile"):
        assert all(scales[m][k] <= scales["minmax"][k] * (1 + 1e-6) for k in scales[m])
        assert any(scales[m][k] < 0.99 * scales["minmax"][k] for k in scales[m]), m


def test_per_tensor_weights(fp32, data, tmp_path):
    path = quantize_qdq(fp32, tmp_path / "pt.onnx", data[0], per_channel=False)
    assert qdq_problems(path) == []
    assert qdq_summary(path)["per_channel"] == 0


def test_fixed_batch_model_calibrates_in_its_batch(tmp_path, data):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)).eval()
    fp = export_onnx(model, SAMPLE, tmp_path / "fixed.onnx", exporter="torchscript", dynamic_batch=False)
    path = quantize_qdq(fp, tmp_path / "fixed.int8.onnx", data[0][:37], batch_size=16)
    assert qdq_problems(path) == []


def test_bad_inputs_raise_and_write_nothing(fp32, data, tmp_path):
    out = tmp_path / "out"
    x_cal = data[0]
    with pytest.raises(RecipeError, match="did you mean 'minmax'"):
        quantize_qdq(fp32, out / "q.onnx", x_cal, method="min-max")
    with pytest.raises(DataError, match="empty"):
        quantize_qdq(fp32, out / "q.onnx", x_cal[:0])
    with pytest.raises(DataError, match=r"shape \(8, 1, 4, 4\).*expects \('batch', 1, 8, 8\)"):
        quantize_qdq(fp32, out / "q.onnx", np.zeros((8, 1, 4, 4), np.float32))
    with pytest.raises(DataError, match="NaN"):
        quantize_qdq(fp32, out / "q.onnx", np.full_like(x_cal, np.nan))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(ModelError, match="corrupt.onnx"):
        quantize_qdq(corrupt, out / "q.onnx", x_cal)
    assert not out.exists() or list(out.iterdir()) == []
