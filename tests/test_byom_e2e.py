"""Bring your own model and data, end to end: `edgec build` on PNG class folders with the user's own
model code (``python:``), then the deployed files reproduce the build's accuracy from the image files.

The images are scikit-learn's digits 0-3 (real handwriting), upsampled to 16x16 PNGs in
``train/<class>/`` and ``test/<class>/`` folders, as a user's images would arrive.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from PIL import Image

from edgec.data import Preprocess, list_images, preprocess_image, write_imagefolder
from edgec.pipeline import build
from tests.pipeline_helpers import TINY

CLASSES = ["digit0", "digit1", "digit2", "digit3"]  # sorted: the folders' order is the label order


def _digits_folder(root: Path, size: int = 16, per_class: int = 70, test_share: float = 0.2) -> Path:
    """~280 PNGs of digits 0-3 at size x size: root/train/<class>/*.png and root/test/<class>/*.png."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rng = np.random.default_rng(0)
    picked = np.concatenate([rng.permutation(np.flatnonzero(bunch.target == k))[:per_class] for k in range(4)])
    x8 = (bunch.images[picked] * 255 / 16).round().astype(np.uint8)
    x = np.stack([np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR)) for img in x8])
    y = bunch.target[picked]
    test = np.zeros(len(y), bool)
    for k in range(4):
        idx = np.flatnonzero(y == k)
        test[idx[: int(round(test_share * len(idx)))]] = True
    write_imagefolder(x[~test], y[~test], root / "train", class_names=CLASSES)
    write_imagefolder(x[test], y[test], root / "test", class_names=CLASSES)
    return root


def _recipe(folder: Path, data: Path, teacher: dict, student: dict, **sections) -> Path:
    recipe = {**TINY, "name": "byom", "data": {"name": "imagefolder", "path": str(data)},
              "teacher": {**teacher, "train": {"epochs": 3, "batch_size": 32, "lr": 0.003}},
              "student": student, "distill": {"train": {"epochs": 3, "batch_size": 32, "lr": 0.003}}, **sections}
    path = folder / "byom.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _accuracy_from_files(onnx_path: Path, pre: Preprocess, files: list[Path], labels: np.ndarray) -> float:
    x = np.stack([preprocess_image(f, pre) for f in files])
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    return float((logits.argmax(1) == labels).mean())


def _check_deploy_reproduces_report(run: Path, data: Path, channels: int, size: int) -> dict:
    """deploy.json's preprocess applied to the raw test PNGs gives the report's accuracies, FP32 and INT8."""
    report = json.loads((run / "report.json").read_text())
    deploy = json.loads((run / "deploy" / "deploy.json").read_text())
    pre = Preprocess.from_deploy(run / "deploy")
    assert deploy["preprocess"]["image_size"] == [size, size] and pre.channels == channels
    assert deploy["labels"] == CLASSES and deploy["input"]["shape"][1:] == [channels, size, size]
    files = [f for c in CLASSES for f in list_images(data / "test" / c)]
    labels = np.array([CLASSES.index(f.parent.name) for f in files])
    fp32 = _accuracy_from_files(run / "deploy" / "model.onnx", pre, files, labels)
    assert fp32 == report["models"]["student_fp32_onnx"]["accuracy"]
    int8 = _accuracy_from_files(run / "deploy" / deploy["recommended"], pre, files, labels)
    assert int8 == report["models"]["student_int8"]["accuracy"]
    return report


@pytest.mark.slow
def test_build_on_image_folder_with_own_models_and_deploy_from_raw_images(tmp_path):
    data = _digits_folder(tmp_path / "digits")
    recipe = _recipe(tmp_path, data,
                     {"model": "python:tests.realistic_models:resnet", "params": {"widths": [8, 16], "blocks": 1}},
                     {"model": "python:tests.realistic_models:mobilenet", "params": {"se": True}})
    result = build(recipe, out=tmp_path / "run", progress=False)
    assert "teacher" in result.ran and "quantize" in result.ran
    report = _check_deploy_reproduces_report(tmp_path / "run", data, channels=1, size=16)
    assert report["models"]["teacher"]["accuracy"] > 0.4  # it learned the digits (4 classes: chance is 25%)


@pytest.mark.slow
@pytest.mark.vision
def test_build_with_torchvision_resnet18_on_rgb_image_folder(tmp_path):
    pytest.importorskip("torchvision", reason="torchvision:resnet18 needs the vision extra (pip install 'edgec[vision]')")
    data = _digits_folder(tmp_path / "digits", size=32, per_class=40)
    recipe = _recipe(tmp_path, data, {"model": "torchvision:resnet18"},
                     {"model": "python:tests.realistic_models:resnet", "params": {"widths": [8, 16], "blocks": 1}},
                     )
    text = yaml.safe_load(recipe.read_text())
    text["data"].update({"channels": 3, "image_size": 32})  # grayscale files read as RGB, as photos would be
    text["teacher"]["train"]["epochs"] = 2
    recipe.write_text(yaml.safe_dump(text))
    build(recipe, out=tmp_path / "run", progress=False)
    _check_deploy_reproduces_report(tmp_path / "run", data, channels=3, size=32)
