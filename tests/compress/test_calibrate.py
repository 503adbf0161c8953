"""Calibration subsets, the ONNX Runtime data reader and calibration method names."""

from __future__ import annotations

import numpy as np
import pytest
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod

from edgec.compress.calibrate import CalibrationReader, calibration_method, select_calibration_samples
from edgec.errors import DataError, RecipeError


def test_select_is_a_seeded_subset_in_order():
    x = np.arange(100, dtype=np.float32).reshape(100, 1)
    a = select_calibration_samples(x, 20, seed=3)
    assert a.shape == (20, 1)
    np.testing.assert_array_equal(a, select_calibration_samples(x, 20, seed=3))
    assert not np.array_equal(a, select_calibration_samples(x, 20, seed=4))
    assert len(np.unique(a)) == 20 and set(a.ravel()) <= set(x.ravel())
    assert np.all(np.diff(a.ravel()) > 0)
    assert select_calibration_samples(x, 100).shape == (100, 1)


def test_too_few_samples_is_a_data_error():
    with pytest.raises(DataError, match="calibration set has 10 samples but quantize.calibration.samples "
                                        "asks for 256") as info:
        select_calibration_samples(np.zeros((10, 1, 8, 8), np.float32), 256)
    assert "lower quantize.calibration.samples to at most 10" in info.value.hint
    with pytest.raises(RecipeError, match="at least 1"):
        select_calibration_samples(np.zeros((10, 2)), 0)


def test_reader_batches_rewinds_and_ranges():
    x = np.arange(70 * 4, dtype=np.float64).reshape(70, 4)
    reader = CalibrationReader(x, "input", batch_size=32)
    assert isinstance(reader, CalibrationDataReader) and len(reader) == 3
    batches = [b["input"] for b in reader]
    assert [b.shape[0] for b in batches] == [32, 32, 6] and batches[0].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate(batches), x.astype(np.float32))
    assert reader.get_next() is None
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["input"], batches[0])
    reader.set_range(1, 2)
    assert [b["input"][0, 0] for b in reader] == [32 * 4]
    assert len(CalibrationReader(x, "input", 32, drop_last=True)) == 2
    with pytest.raises(RecipeError, match="batch_size"):
        CalibrationReader(x, "input", batch_size=0)


def test_method_names():
    assert calibration_method("minmax") is CalibrationMethod.MinMax
    assert calibration_method("Percentile") is CalibrationMethod.Percentile
    assert calibration_method("entropy") is CalibrationMethod.Entropy
    with pytest.raises(RecipeError, match="unknown calibration method 'entropi'") as info:
        calibration_method("entropi")
    assert "did you mean 'entropy'?" in info.value.hint


def test_methods_give_different_ranges_on_a_heavy_tailed_activation(tmp_path):
    """Rare large values (0.1% of elements at 40 sigma): min-max keeps them, percentile and entropy clip them,
    and the three ranges differ (the issue saw identical INT8 accuracy for all three: saturation, not calibration)."""
    import onnx
    import torch
    from onnx import numpy_helper
    from torch import nn

    from edgec.compress.quantize import quantize_qdq
    from edgec.export.onnx import export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)).eval()
    fp32 = export_onnx(model, (1, 8, 8), tmp_path / "m.onnx", exporter="torchscript")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 1, 8, 8)).astype(np.float32)
    spikes = rng.random(x.shape) < 0.001
    x[spikes] = 40.0
    ranges = {}
    for method in ("minmax", "percentile", "entropy"):
        q = onnx.load(str(quantize_qdq(fp32, tmp_path / f"{method}.onnx", x, method=method, percentile=99.9)))
        scales = {t.name: float(numpy_helper.to_array(t)) for t in q.graph.initializer
                  if t.name.endswith("_scale") and not t.dims}
        ranges[method] = scales["input_scale"] * 127  # the heavy-tailed tensor: the model's input
    assert ranges["minmax"] == pytest.approx(40.0, rel=0.01)  # the spikes set min-max's range
    assert ranges["percentile"] < 0.5 * ranges["minmax"] and ranges["entropy"] < 0.5 * ranges["minmax"]  # both clip
    assert abs(ranges["percentile"] - ranges["entropy"]) > 0.01 * ranges["minmax"]  # and not alike
