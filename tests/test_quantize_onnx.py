"""`edgec quantize MODEL.onnx`: INT8 files from an ONNX model exported outside edgec (torch.onnx.export
of realistic topologies: residual blocks with unfolded BatchNorm, depthwise convolutions and
squeeze-excitation), image folders for calibration and accuracy, and the clear errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgec.compress.int8_cpu import choose_cpu_flavour
from edgec.compress.ptq_accuracy import reference_logits
from edgec.data.imagefolder import Preprocess, preprocess_image, write_imagefolder
from edgec.errors import DataError, ModelError, RecipeError
from edgec.export.qdq import qdq_problems
from edgec.onnx_input import fold_conv_batchnorm, inspect_onnx, quantize_onnx, resolve_preprocess
from tests.realistic_models import mobilenet, resnet

EDGEC = [sys.executable, "-m", "edgec"]
SIZE = 32
PRE = Preprocess(image_size=(SIZE, SIZE), channels=3, mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25])


def _export(model: torch.nn.Module, path: Path, *, channels: int = 3, dynamic_hw: bool = False,
            keep_bn: bool = True) -> Path:
    """Export as a user's training script would (TorchScript exporter); ``keep_bn`` leaves the
    BatchNormalization nodes in the graph (training-mode export, constant folding off)."""
    torch.manual_seed(0)
    model.train()
    x = torch.rand(16, channels, SIZE, SIZE)
    with torch.no_grad():
        model((x - 0.5) / 0.25)  # non-trivial BatchNorm running statistics
    model.eval()
    axes = {"x": {0: "n", **({2: "h", 3: "w"} if dynamic_hw else {})}, "logits": {0: "n"}}
    torch.onnx.export(model, (x[:1],), str(path), input_names=["x"], output_names=["logits"], dynamic_axes=axes,
                      dynamo=False, opset_version=17, do_constant_folding=not keep_bn,
                      training=torch.onnx.TrainingMode.PRESERVE if keep_bn else torch.onnx.TrainingMode.EVAL)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """20 RGB images of varied sizes in 4 class folders (resized to the model's input by quantize)."""
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for size, n in ((SIZE, 12), (48, 8)):
        smooth = rng.random((n, 3, size // 4, size // 4))  # natural-ish: smooth blobs, not white noise
        x = np.repeat(np.repeat(smooth, 4, axis=2), 4, axis=3)
        write_imagefolder(x, np.arange(n) % 4, root / f"s{size}", class_names=["a", "b", "c", "d"])
    return root


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory) -> Path:
    return _export(resnet(4, 3, widths=[8, 16], blocks=1), tmp_path_factory.mktemp("m") / "resnet.onnx")


def test_cli_quantizes_a_resnet_exported_elsewhere(tmp_path, resnet_onnx, images):
    out = tmp_path / "q"
    r = subprocess.run([*EDGEC, "quantize", str(resnet_onnx), "--calib", str(images), "--out", str(out),
                        "--mean", "0.5", "--std", "0.25", "--flavour", "auto,u8u8", "-q"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    deploy = json.loads((out / "deploy.json").read_text())
    assert set(deploy["files"]) == {"model.onnx", "model.int8.onnx", "model.int8.cpu.onnx", "model.int8.u8u8.onnx"}
    for name, desc in deploy["files"].items():
        assert (out / name).stat().st_size == desc["bytes"]
    assert deploy["int8"]["model.int8.onnx"] == {**deploy["int8"]["model.int8.onnx"], "flavour": "s8s8",
                                                 "runtime": "tensorrt"}
    assert deploy["int8"]["model.int8.cpu.onnx"]["flavour"] == choose_cpu_flavour("auto")
    assert deploy["int8"]["model.int8.u8u8.onnx"]["flavour"] == "u8u8"
    assert deploy["runtimes"] == {"onnxruntime-cpu": "model.int8.cpu.onnx", "tensorrt": "model.int8.onnx",
                                  "fp32": "model.onnx"}
    assert Preprocess.from_deploy(out) == PRE
    assert qdq_problems(out / "model.int8.onnx") == []  # the TensorRT file passes the build's QDQ checker
    # no labelled data: agreement with FP32 on the 20 calibration images is reported, per file
    assert all(0.5 <= e["top1_agreement"] <= 1.0 for e in deploy["int8"].values())
    assert deploy["quantization"]["folded_batchnorm"] == 6
    # BatchNorm folded: the FP32 model.onnx has none left and computes what the user's file computes
    assert not [n for n in onnx.load(str(out / "model.onnx")).graph.node if n.op_type == "BatchNormalization"]
    assert [n for n in onnx.load(str(resnet_onnx)).graph.node if n.op_type == "BatchNormalization"]
    x = np.random.default_rng(1).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32)
    np.testing.assert_allclose(reference_logits(out / "model.onnx", x), reference_logits(resnet_onnx, x),
                               rtol=1e-4, atol=1e-4)
    # edgec bench takes its input shape from the deploy.json beside the files
    b = subprocess.run([*EDGEC, "bench", str(out / "model.int8.cpu.onnx"), "--batch", "1,2", "--min-runs", "3",
                        "--min-duration", "0", "--warmup-runs", "1", "--warmup-s", "0", "--json", str(tmp_path / "b.json")],
                       capture_output=True, text=True, timeout=300)
    assert b.returncode == 0, b.stderr
    bench = json.loads((tmp_path / "b.json").read_text())
    assert "deploy.json" in json.dumps(bench) and "[3, 32, 32]" in json.dumps(bench)


def test_accuracy_data_reports_fp32_and_int8_on_a_mobilenet(tmp_path, images):
    model = _export(mobilenet(4, 3, se=True), tmp_path / "mbv2.onnx", keep_bn=False)
    doc = quantize_onnx(model, images, tmp_path / "q", preprocess=PRE, accuracy_data=images / "s32",
                        flavours=("u8s8_reduce_range",), accuracy_budget=100.0, progress=False)
    assert doc["labels"] == ["a", "b", "c", "d"] and doc["num_classes"] == 4
    cpu = doc["int8"]["model.int8.cpu.onnx"]
    assert cpu["flavour"] == "u8s8_reduce_range" and cpu["runtime"] == "onnxruntime-cpu"
    # the FP32 accuracy reported is the model's own on those images, computed here independently
    x = np.stack([preprocess_image(p, PRE) for c in "abcd" for p in sorted((images / "s32" / c).glob("*.png"))])
    y = np.repeat(np.arange(4), 3)
    fp32 = float((reference_logits(model, x).argmax(1) == y).mean())
    assert cpu["fp32_accuracy"] == pytest.approx(fp32)
    assert 0.0 <= cpu["int8_accuracy"] <= 1.0
    assert doc["quantization"]["scored_on"].startswith("12 labelled images")
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q" / "model.int8.cpu.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops


def test_class_count_must_match_the_outputs(tmp_path, resnet_onnx, images):
    three = tmp_path / "three"
    write_imagefolder(np.zeros((3, 3, SIZE, SIZE), np.uint8), np.arange(3), three)
    with pytest.raises(DataError, match="3 class folders but the model has 4 outputs"):
        quantize_onnx(resnet_onnx, images, tmp_path / "q", preprocess=PRE, accuracy_data=three, progress=False)
    assert not (tmp_path / "q").exists()  # checked before anything is written


def test_preprocessing_from_a_deploy_json(tmp_path, resnet_onnx):
    pre = Preprocess(image_size=(SIZE, SIZE), resize=36, channels=3, mean=[0.1, 0.2, 0.3], std=[0.4, 0.5, 0.6])
    (tmp_path / "deploy.json").write_text(json.dumps({"preprocess": pre.to_dict()}))
    assert resolve_preprocess(inspect_onnx(resnet_onnx), deploy=tmp_path) == pre
    assert resolve_preprocess(inspect_onnx(resnet_onnx), deploy=tmp_path, mean=[0.0]).mean == [0.0, 0.0, 0.0]
    with pytest.raises(DataError, match="does not match"):
        resolve_preprocess(inspect_onnx(resnet_onnx), image_size=(64, 64))
    with pytest.raises(DataError, match="--grayscale"):
        resolve_preprocess(inspect_onnx(resnet_onnx), grayscale=True)


def test_dynamic_height_width_needs_an_image_size(tmp_path, images):
    model = _export(resnet(4, 1, widths=[8, 16], blocks=1), tmp_path / "dyn.onnx", channels=1, dynamic_hw=True)
    info = inspect_onnx(model)
    assert info.input_shape == (None, 1, None, None) and info.channels == 1
    with pytest.raises(ModelError, match="dynamic input height/width") as err:
        resolve_preprocess(info)
    assert "--image-size" in err.value.hint
    pre = resolve_preprocess(info, image_size=(24,), mean=[0.5], std=[0.25])  # grayscale from the model
    doc = quantize_onnx(model, images, tmp_path / "q", preprocess=pre, samples=6, progress=False)
    assert doc["input"]["shape"][1:] == [1, 24, 24]  # the fixed size is written into model.onnx
    assert doc["quantization"]["calibration"]["samples"] == 6


def test_bad_models_are_clear_errors(tmp_path, resnet_onnx):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(resnet_onnx.read_bytes()[: resnet_onnx.stat().st_size // 2])
    with pytest.raises(ModelError, match="corrupt or truncated|not a complete ONNX model"):
        inspect_onnx(bad)
    # external data pointing outside the model's folder is refused before it is read
    model = onnx.load(str(resnet_onnx))
    weight = model.graph.initializer[0]
    weight.data_location = onnx.TensorProto.EXTERNAL
    del weight.external_data[:]
    weight.external_data.add(key="location", value="../secret.bin")
    weight.ClearField("raw_data")
    onnx.save(model, str(tmp_path / "escape.onnx"))
    with pytest.raises(ModelError, match="outside the model's folder"):
        inspect_onnx(tmp_path / "escape.onnx")
    # not an image classifier: a 2-D input
    lin = tmp_path / "linear.onnx"
    torch.onnx.export(torch.nn.Linear(8, 2), (torch.zeros(1, 8),), str(lin), dynamo=False)
    with pytest.raises(ModelError, match=r"expected float32 \(batch, channels, height, width\)"):
        inspect_onnx(lin)


def test_bad_calibration_input_is_a_clear_error(tmp_path, resnet_onnx, images):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no calibration images"):
        quantize_onnx(resnet_onnx, empty, tmp_path / "q", preprocess=PRE, progress=False)
    broken = tmp_path / "broken"
    write_imagefolder(np.zeros((2, 3, 8, 8), np.uint8), np.array([0, 0]), broken)
    (broken / "0" / "oops.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="oops.png"):
        quantize_onnx(resnet_onnx, broken, tmp_path / "q", preprocess=PRE, progress=False)
    with pytest.raises(RecipeError, match="unknown INT8 CPU flavour 'fast'"):
        quantize_onnx(resnet_onnx, images, tmp_path / "q", preprocess=PRE, flavours=("auto", "fast"), progress=False)
    r = subprocess.run([*EDGEC, "quantize", str(tmp_path / "missing.onnx"), "--calib", str(images)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "ONNX file not found" in r.stderr and "Traceback" not in r.stderr


def test_a_failed_run_leaves_no_deploy_json(tmp_path, resnet_onnx, images, monkeypatch):
    out = tmp_path / "q"
    quantize_onnx(resnet_onnx, images, out, preprocess=PRE, samples=4, progress=False)
    assert (out / "deploy.json").is_file()

    def boom(*args, **kwargs):
        raise ModelError("calibration failed")

    monkeypatch.setattr("edgec.onnx_input.post_training_int8", boom)
    with pytest.raises(ModelError):
        quantize_onnx(resnet_onnx, images, out, preprocess=PRE, samples=4, progress=False)
    assert not (out / "deploy.json").exists() and not list(out.glob("model.int8*.onnx"))


def test_fold_conv_batchnorm_skips_a_conv_output_used_twice():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 1, 4, 4])
    t = [onnx.numpy_helper.from_array(np.full(s, v, np.float32), n) for n, s, v in
         (("w", (1, 1, 1, 1), 2.0), ("g", (1,), 1.0), ("b", (1,), 0.0), ("m", (1,), 0.0), ("v", (1,), 1.0))]
    nodes = [onnx.helper.make_node("Conv", ["x", "w"], ["c"]),
             onnx.helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["n"]),
             onnx.helper.make_node("Add", ["c", "n"], ["y"])]
    model = onnx.helper.make_model(onnx.helper.make_graph(nodes, "g", [x], [y], t))
    assert fold_conv_batchnorm(model) == 0
