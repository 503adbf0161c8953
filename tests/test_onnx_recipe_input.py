"""Recipes starting from ONNX models trained elsewhere: an ONNX student (``student: {model: "onnx:PATH"}``)
skips distill and prune and goes to quantize, verify, bench, the report and deploy/; an ONNX teacher is not
trained and the student is distilled from its ONNX Runtime logits. What cannot work (pruning, FitNets
hints, quantized training of an ONNX student; feature distillation from an ONNX teacher) is a RecipeError
saying why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgec.data import load_dataset
from edgec.errors import DataError, RecipeError
from edgec.pipeline import build
from edgec.recipe import load_recipe
from edgec.stages import onnx_student, task_for
from tests.pipeline_helpers import TINY, write_recipe
from tests.realistic_models import resnet


def _train_student(path: Path, num_classes: int = 4, shape=(1, 8, 8), epochs: int = 15) -> Path:
    """A small ResNet trained outside edgec's build on the same data, exported with BatchNorm unfolded."""
    syn = TINY["data"]["synthetic"]
    ds = load_dataset("synthetic", None, val_fraction=0.1, test_fraction=0.2, seed=0, synthetic=syn)
    torch.manual_seed(0)
    model = resnet(num_classes, shape[0], widths=[8, 16], blocks=1)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    x, y = torch.from_numpy(ds.train.x), torch.from_numpy(ds.train.y).long()
    model.train()
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    model.eval()
    torch.onnx.export(model, (x[:1],), str(path), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
                      do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    return path


@pytest.mark.slow  # three builds (the teacher trains once): ~1 min on 2 cores
def test_a_build_from_an_onnx_student(tmp_path):
    student = _train_student(tmp_path / "student.onnx")
    recipe = write_recipe(tmp_path, student={"model": f"onnx:{student}"},
                          verify={"max_int8_accuracy_drop": 0.05, "min_int8_top1_agreement": 0.9})
    result = build(recipe, out=tmp_path / "run", progress=False)
    assert "distill" in result.ran and "prune" not in result.artifacts
    models = result.report["models"]
    assert {"teacher", "student", "student_fp32_onnx", "student_int8"} <= set(models)
    assert models["student"]["runtime"] == "onnxruntime" and models["student"]["file"].endswith("student.onnx")
    assert models["student"]["accuracy"] == pytest.approx(models["student_fp32_onnx"]["accuracy"])
    assert models["student_fp32_onnx"]["accuracy"] > 0.5  # the trained student, not a fresh one
    assert result.report["parity"]["folded_batchnorm"] == 6 and result.report["parity"]["outside_tolerance"] == 0
    deploy = json.loads((tmp_path / "run" / "deploy" / "deploy.json").read_text())
    assert {"model.onnx", "model.int8.onnx", "model.int8.cpu.onnx"} <= set(deploy["files"])
    assert deploy["int8"]["model.int8.onnx"]["flavour"] == "s8s8"
    # a second build reuses every stage (the key holds the ONNX file's bytes, not its path)
    again = build(recipe, out=tmp_path / "run", progress=False)
    assert again.ran == []
    student.write_bytes(_train_student(tmp_path / "other.onnx", epochs=1).read_bytes())
    assert "distill" in build(recipe, out=tmp_path / "run", progress=False).ran


@pytest.mark.parametrize("override, why", [
    ({"prune": {"enabled": True}}, "prune.enabled: pruning removes channels"),
    ({"distill": {"method": "fitnets"}}, "FitNets hints train the student's layers"),
    ({"quantize": {"method": "qat"}}, "quantized training needs the student's torch weights"),
])
def test_what_an_onnx_student_cannot_do_is_a_recipe_error(tmp_path, override, why):
    recipe = load_recipe(write_recipe(tmp_path, student={"model": "onnx:student.onnx"}, **override))
    with pytest.raises(RecipeError, match=why) as err:
        task_for(recipe)
    assert "ONNX student" in err.value.message


@pytest.mark.slow  # a KD run: ~30 s on 2 cores
def test_a_build_distilled_from_an_onnx_teacher(tmp_path, monkeypatch):
    teacher = _train_student(tmp_path / "teacher.onnx")
    calls = []
    real = onnx_student.OnnxTeacher.forward
    monkeypatch.setattr(onnx_student.OnnxTeacher, "forward", lambda self, x: calls.append(len(x)) or real(self, x))
    recipe = write_recipe(tmp_path, teacher={"model": f"onnx:{teacher}"}, bench={"enabled": False})
    result = build(recipe, out=tmp_path / "run", progress=False)
    models = result.report["models"]
    assert models["teacher"]["runtime"] == "onnxruntime" and models["teacher"]["file"].endswith("teacher.onnx")
    assert models["teacher"]["accuracy"] > 0.5 and models["student"]["runtime"] == "torch"
    assert sum(calls) >= 2 * 420  # KD read the ONNX teacher's logits for every training image, each epoch
    assert not list((tmp_path / "run").glob("teacher-*/checkpoint*"))  # nothing was trained for the teacher
    with pytest.raises(RecipeError, match="not the intermediate features"):
        task_for(load_recipe(write_recipe(tmp_path, teacher={"model": "onnx:t.onnx"}, distill={"method": "fitnets"})))


def test_an_onnx_student_must_fit_the_data(tmp_path):
    student = _train_student(tmp_path / "five.onnx", num_classes=5, epochs=1)
    recipe = write_recipe(tmp_path, student={"model": f"onnx:{student}"})
    with pytest.raises(DataError, match="has 5 outputs but the data has 4 classes"):
        build(recipe, out=tmp_path / "run", progress=False)
    missing = write_recipe(tmp_path, student={"model": f"onnx:{tmp_path / 'nope.onnx'}"})
    with pytest.raises(Exception, match="not found"):
        build(missing, out=tmp_path / "run2", progress=False)


def test_onnx_model_names_parse_and_builtin_recipes_keep_their_task(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, student={"model": "onnx:models/s.onnx"}, prune={"enabled": False}))
    assert recipe.student.model == "onnx:models/s.onnx"
    assert task_for(recipe).name == "images-onnx-student"
    assert task_for(load_recipe("digits")).name == "images"
    assert np.all([d.name != "prune" for d in task_for(recipe).chain])
