"""Torch and ONNX Runtime runners on a tiny CNN exported here, and open_runner's dispatch/errors."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgec.errors import ArtifactError, EdgecError, MissingDependencyError, ModelError
from edgec.runtimes import Runner, TensorSpec, accuracy, open_runner, predict
from edgec.backends.onnxruntime.runner import OnnxRuntimeRunner
from edgec.backends.torch.runner import TorchRunner


class TinyCNN(nn.Module):
    """(N, 1, 8, 8) -> (N, 3) logits."""

    input_shape = (1, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(16, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _export(model: nn.Module, path: Path, dynamic: bool = True, batch: int = 2) -> Path:
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, but fast and enough
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (torch.zeros(batch, 1, 8, 8),), str(path),
                          input_names=["input"], output_names=["logits"], dynamic_axes=axes,
                          opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def model() -> TinyCNN:
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture(scope="module")
def onnx_path(model: TinyCNN, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((20, 1, 8, 8)).astype(np.float32)


@pytest.fixture
def keep_torch_threads():
    # TorchRunner(threads=...) sets torch's process-wide thread count; put it back.
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_torch_and_onnxruntime_agree(model, onnx_path, x):
    with TorchRunner(model) as t, OnnxRuntimeRunner(onnx_path, intra_op_threads=1) as o:
        expected = model(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(t.infer(x), expected, atol=1e-6)
        np.testing.assert_allclose(o.infer(x), t.infer(x), atol=1e-4)
        assert isinstance(o, Runner) and o.runtime == "onnxruntime" and t.runtime == "torch"


def test_dynamic_batch_and_specs(onnx_path, x):
    with open_runner(onnx_path, intra_op_threads=1) as r:
        assert r.inputs == [TensorSpec("input", ("batch", 1, 8, 8), "float32")]
        assert r.outputs[0].name == "logits" and r.outputs[0].shape == ("batch", 3)
        for n in (1, 5, 20):
            assert r.infer(x[:n]).shape == (n, 3)
        # float64 data is cast to the model's float32 rather than rejected by ORT.
        np.testing.assert_allclose(r.infer(x[:3].astype(np.float64)), r.infer(x[:3]), atol=1e-6)


def test_predict_and_accuracy_on_known_labels(model, onnx_path, x):
    y = model(torch.from_numpy(x)).argmax(1).numpy()
    with open_runner(onnx_path, intra_op_threads=1) as r:
        logits = predict(r, x, batch_size=7)  # 7 + 7 + 6: a ragged last batch
        assert logits.shape == (20, 3)
        np.testing.assert_allclose(logits, r.infer(x), atol=1e-5)
        assert accuracy(r, x, y, batch_size=7) == 1.0
        assert accuracy(r, x, (y + 1) % 3) == 0.0
        half = y.copy()
        half[:10] = (half[:10] + 1) % 3
        assert accuracy(r, x, half) == 0.5


def test_predict_pads_a_fixed_batch_model(model, x, tmp_path):
    path = _export(model, tmp_path / "static.onnx", dynamic=False, batch=4)
    with open_runner(path, intra_op_threads=1) as r:
        assert r.inputs[0].shape[0] == 4
        logits = predict(r, x[:10], batch_size=256)  # 4 + 4 + 2 padded to 4
    np.testing.assert_allclose(logits, model(torch.from_numpy(x[:10])).detach().numpy(), atol=1e-4)


def test_accuracy_rejects_mismatched_labels(model, x):
    with pytest.raises(EdgecError, match="20 samples but 3 labels"):
        accuracy(TorchRunner(model), x, np.zeros(3, int))


def test_describe_records_what_ran(model, onnx_path, keep_torch_threads):
    with OnnxRuntimeRunner(onnx_path, providers=["cpu"], intra_op_threads=1,
                           inter_op_threads=1, graph_optimization_level="basic") as o:
        d = o.describe()
    assert d["runtime"] == "onnxruntime" and d["version"] == ort.__version__
    assert d["providers"] == ["CPUExecutionProvider"] and d["device"] == "cpu"
    assert (d["intra_op_threads"], d["inter_op_threads"]) == (1, 1)
    assert d["graph_optimization_level"] == "basic" and d["model"].endswith("tiny.onnx")
    assert d["inputs"][0] == {"name": "input", "shape": ["batch", 1, 8, 8], "dtype": "float32"}

    t = open_runner(model, threads=1).describe()
    assert t["runtime"] == "torch" and t["version"] == torch.__version__
    assert (t["device"], t["threads"], t["module"]) == ("cpu", 1, "TinyCNN")
    assert t["parameters"] == sum(p.numel() for p in model.parameters())


def test_default_providers_are_available_ones_in_preference_order(onnx_path):
    with OnnxRuntimeRunner(onnx_path) as r:
        requested = r.describe()["providers_requested"]
    available = ort.get_available_providers()
    assert requested[-1] == "CPUExecutionProvider" and all(p in available for p in requested)
    assert "AzureExecutionProvider" not in requested  # only TensorRT, CUDA, CPU are picked


def test_unavailable_provider_names_available_ones(onnx_path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider, so it cannot be unavailable")
    with pytest.raises(EdgecError, match="CPUExecutionProvider") as err:
        OnnxRuntimeRunner(onnx_path, providers=["CUDAExecutionProvider"])
    assert "'CUDAExecutionProvider' is not available" in str(err.value)


def test_corrupt_and_truncated_onnx_raise_model_error(onnx_path, tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(onnx_path.read_bytes()[: onnx_path.stat().st_size // 2])
    for bad in (garbage, truncated):
        with pytest.raises(ModelError, match=bad.name):
            open_runner(bad)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        open_runner(tmp_path / "nope.onnx")
    weird = tmp_path / "model.pt"
    weird.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"\.onnx, \.safetensors, \.plan, \.engine"):
        open_runner(weird)


def test_unknown_or_mismatched_runtime(model, onnx_path):
    with pytest.raises(ModelError, match="did you mean 'onnxruntime'"):
        open_runner(onnx_path, runtime="onnxruntim")
    with pytest.raises(ModelError, match="cannot run .onnx files"):
        open_runner(onnx_path, runtime="torch")
    with pytest.raises(ModelError, match="export it to ONNX"):
        open_runner(model, runtime="onnxruntime")
    with pytest.raises(EdgecError, match="does not take option.*threads"):
        open_runner(onnx_path, threads=2)  # a torch option given to onnxruntime


@pytest.mark.parametrize("suffix", [".plan", ".engine"])
def test_engine_without_tensorrt_names_the_extra(tmp_path, suffix):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here, so it cannot be reported missing")
    engine = tmp_path / f"model{suffix}"
    engine.write_bytes(b"\x00" * 16)
    with pytest.raises(MissingDependencyError) as err:
        open_runner(engine)
    assert err.value.extra == "trt" and "edgec[trt]" in str(err.value)


def test_engine_without_manifest_is_refused_before_tensorrt_is_imported(tmp_path, monkeypatch):
    # A stand-in 'tensorrt' package on sys.path: find_spec sees it; importing it would fail.
    # An engine is executable: without its engine.json manifest edgec refuses it before TensorRT loads.
    (tmp_path / "fake" / "tensorrt").mkdir(parents=True)
    (tmp_path / "fake" / "tensorrt" / "__init__.py").write_text("raise ImportError('fake')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "fake"))
    importlib.invalidate_caches()
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"\x00" * 16)
    with pytest.raises(ArtifactError, match="no engine.json beside it"):
        open_runner(engine)
    assert "tensorrt" not in sys.modules


def test_wrong_input_shape_and_names(onnx_path, x):
    with open_runner(onnx_path, intra_op_threads=1) as r:
        with pytest.raises(ModelError, match="rejected inputs"):
            r.infer(x[:, :, :4, :4].reshape(20, 4, 4))  # rank 3 instead of 4
        with pytest.raises(ModelError, match="missing \\['input'\\]"):
            r.run({"image": x})
        with pytest.raises(ModelError, match="expects float32"):
            r.infer(x.astype(np.int32))


def test_torch_runner_multiple_outputs_and_closed(keep_torch_threads):
    class TwoHeads(nn.Module):
        def forward(self, x):
            return x * 2, x.sum(1)

    r = TorchRunner(TwoHeads())
    out = r.run({"input": np.ones((3, 4), np.float32)})
    assert list(out) == ["output_0", "output_1"] and out["output_1"].tolist() == [4.0] * 3
    assert [s.name for s in r.outputs] == ["output_0", "output_1"]
    np.testing.assert_array_equal(r.infer(np.ones((1, 4), np.float32)), np.full((1, 4), 2.0))
    r.close()
    with pytest.raises(EdgecError, match="closed"):
        r.infer(np.ones((1, 4), np.float32))


def test_torch_runner_cuda_without_gpu(model):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present, so device='cuda' must work")
    with pytest.raises(EdgecError, match="no CUDA GPU"):
        TorchRunner(model, device="cuda")


def test_safetensors_dispatch_uses_load_model(monkeypatch, tmp_path, model):
    # Checks open_runner's side of the contract with a stand-in edgec.models.load_model.
    import edgec.models

    class Spec:
        def input_shape(self):
            return (1, 8, 8)

    bare = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))  # no input_shape attribute of its own
    calls = []
    monkeypatch.setattr(edgec.models, "load_model", lambda p: calls.append(p) or (bare, Spec()),
                        raising=False)
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"stub")
    with open_runner(path) as r:
        assert r.runtime == "torch" and calls == [path]
        assert r.inputs[0].shape == ("batch", 1, 8, 8)
        assert r.infer(np.zeros((2, 1, 8, 8), np.float32)).shape == (2, 3)


def test_safetensors_round_trip_with_real_model_files(tmp_path):
    models = pytest.importorskip("edgec.models", reason="edgec.models is not in this checkout")
    if not all(hasattr(models, n) for n in ("ModelSpec", "save_model", "load_model")):
        pytest.skip("edgec.models has no ModelSpec/save_model/load_model yet")
    spec = models.ModelSpec("fitnet", {}, in_channels=1, num_classes=10, input_size=8)
    net = spec.build().eval()
    path = models.save_model(net, spec, tmp_path / "student.safetensors")
    xs = np.random.default_rng(1).standard_normal((4, 1, 8, 8)).astype(np.float32)
    with open_runner(path) as r:
        assert r.inputs[0].shape == ("batch", 1, 8, 8)
        expected = net(torch.from_numpy(xs)).detach().numpy()
        np.testing.assert_allclose(r.infer(xs), expected, atol=1e-5)
