"""FP32 export (both exporters), safe loading, the checker, parity and I/O description."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edgec.errors import ModelError, VerificationFailed
from edgec.export.onnx import (check_onnx, check_parity, compare_outputs, describe_io, export_onnx, load_onnx,
                               ort_session)

SAMPLE = (1, 8, 8)


class TinyCNN(nn.Module):
    """conv-bn-relu, conv, flatten, linear: the layer kinds our students are made of."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


@pytest.fixture(scope="module")
def model() -> TinyCNN:
    torch.manual_seed(0)
    m = TinyCNN()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so BN folding is really exercised
        m.train()(torch.randn(64, *SAMPLE) * 2 + 0.5)
    return m.eval()


@pytest.fixture(scope="module")
def ts_onnx(model, tmp_path_factory):
    return export_onnx(model, SAMPLE, tmp_path_factory.mktemp("ts") / "model.onnx", exporter="torchscript")


def _x(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, *SAMPLE)).astype(np.float32)


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
def test_export_is_checked_single_file_dynamic_batch_and_quiet(model, tmp_path, capfd, exporter):
    model.train()  # export must switch to eval and then restore the caller's mode
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_onnx(model, SAMPLE, tmp_path / "model.onnx", exporter=exporter)
    out, err = capfd.readouterr()
    assert model.training
    model.eval()
    assert (out, err) == ("", ""), "the exporters' chatter reached the terminal"
    assert [str(w.message) for w in caught] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no .data, no .tmp-*
    check_onnx(path)
    io = describe_io(path)
    assert io["inputs"] == [{"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}]
    assert io["outputs"] == [{"name": "logits", "shape": ["batch", 10], "dtype": "float32"}]
    assert "BatchNormalization" not in {n.op_type for n in load_onnx(path).graph.node}

    sess = ort_session(path)
    for batch in (1, 7):
        x = _x(batch)
        got = sess.run(None, {"input": x})[0]
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert got.shape == (batch, 10)
        assert np.abs(got - ref).max() < 1e-4
    report = check_parity(model, path, _x(64))
    assert report.max_abs_diff < 1e-4 and report.top1_agreement == 1.0 and report.n == 64


def test_fixed_batch_export(model, tmp_path):
    path = export_onnx(model, SAMPLE, tmp_path / "fixed.onnx", exporter="torchscript", dynamic_batch=False)
    assert describe_io(path)["inputs"][0]["shape"] == [1, 1, 8, 8]


def test_unknown_exporter_and_bad_shape(model, tmp_path):
    with pytest.raises(ModelError, match="unknown ONNX exporter 'tflite'"):
        export_onnx(model, SAMPLE, tmp_path / "m.onnx", exporter="tflite")
    with pytest.raises(ModelError, match="one sample, without the batch") as info:
        export_onnx(model, (1, 1, 8, 8), tmp_path / "m.onnx", exporter="torchscript")
    assert "conv2d" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # a failed export leaves nothing behind


def test_parity_failure_reports_numbers(model, ts_onnx):
    broken = TinyCNN()
    broken.load_state_dict(model.state_dict())
    with torch.no_grad():
        broken.head.bias += 0.01
    with pytest.raises(VerificationFailed, match=r"max \|diff\| 0\.01.*top-1 agreement"):
        check_parity(broken.eval(), ts_onnx, _x(16))
    with pytest.raises(VerificationFailed, match="top-1 agreement 0"):
        with torch.no_grad():
            broken.head.bias[3] += 1e3  # every prediction becomes class 3
        check_parity(broken, ts_onnx, _x(16), atol=1e9)


def test_compare_outputs():
    a = np.array([[1.0, 2.0, 0.0], [3.0, 1.0, 0.0]])
    b = np.array([[1.0, 2.5, 0.0], [0.0, 1.0, 0.0]])
    r = compare_outputs(a, b)
    assert (r.max_abs_diff, r.top1_agreement, r.n) == (3.0, 0.5, 2)
    assert r.mean_abs_diff == pytest.approx(3.5 / 6)
    assert r.to_dict() == {"max_abs_diff": 3.0, "mean_abs_diff": r.mean_abs_diff, "top1_agreement": 0.5, "n": 2}
    with pytest.raises(VerificationFailed, match="shape"):
        compare_outputs(a, b[:1])


def test_missing_empty_corrupt_truncated_files_name_the_file(ts_onnx, tmp_path):
    data = ts_onnx.read_bytes()
    cases = {"missing.onnx": None, "empty.onnx": b"",
             "random.onnx": np.random.default_rng(0).bytes(4096),
             "half.onnx": data[: len(data) // 2], "tail-cut.onnx": data[:-3]}
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        for fn in (load_onnx, check_onnx, describe_io):
            with pytest.raises(ModelError) as info:
                fn(path)
            assert name in str(info.value) and info.value.hint, (name, fn.__name__)


def _external_model(location: str) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((2, 2), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        w.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])], [w])
    # IR 10: onnx 1.23 would stamp IR 14, newer than ONNX Runtime 1.31 reads (13)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "sub/../../secret.bin", "link.bin"])
def test_external_data_outside_the_folder_is_refused_unread(tmp_path, monkeypatch, location):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 16)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "link.bin").symlink_to(secret)  # inside by name, outside in fact
    path = folder / "m.onnx"
    path.write_bytes(_external_model(location).SerializeToString())

    def must_not_read(*args, **kwargs):
        raise AssertionError("external data was read before the location was checked")

    monkeypatch.setattr(onnx.external_data_helper, "load_external_data_for_model", must_not_read)
    monkeypatch.setattr(onnx.external_data_helper, "load_external_data_for_tensor", must_not_read)
    for fn in (load_onnx, check_onnx, describe_io, ort_session):
        with pytest.raises(ModelError, match="outside the model's folder") as info:
            fn(path)
        assert "m.onnx" in str(info.value)


def test_external_data_beside_the_model_loads(tmp_path):
    model = _external_model("w.bin")
    (tmp_path / "w.bin").write_bytes(np.full((2, 2), 3.0, np.float32).tobytes())
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    loaded = load_onnx(path)
    np.testing.assert_array_equal(numpy_helper.to_array(loaded.graph.initializer[0]), np.full((2, 2), 3.0))
    y = ort_session(path).run(None, {"x": np.ones((2, 2), np.float32)})[0]
    np.testing.assert_array_equal(y, np.full((2, 2), 4.0))


def test_dynamo_export_holds_no_build_paths(tmp_path):
    """The same model must export to the same bytes wherever it is built (no source paths inside)."""
    import torch
    from torch import nn

    from edgec.export.onnx import export_onnx

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    a = export_onnx(model, (1, 8, 8), tmp_path / "a.onnx", exporter="dynamo")
    data = a.read_bytes()
    assert b"stack_trace" not in data and b"/edgec/" not in data and str(tmp_path).encode() not in data
    b = export_onnx(model, (1, 8, 8), tmp_path / "b.onnx", exporter="dynamo")
    assert b.read_bytes() == data
