"""`edgec build` end to end on a tiny synthetic recipe: outputs, caching, bad input, resume."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from edgec.errors import ArtifactError, DataError, TrainingDiverged
from edgec.pipeline import build
from tests.pipeline_helpers import write_recipe

STAGES = ["teacher", "distill", "export", "quantize", "engine", "verify", "bench"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    recipe = write_recipe(folder)
    return folder, recipe, build(recipe, out=folder / "run", progress=False)


def test_build_produces_every_stage_report_and_deploy(built):
    folder, _, result = built
    assert result.ran == STAGES and result.reused == []
    run = folder / "run"
    report = json.loads((run / "report.json").read_text())
    assert set(report["models"]) == {"teacher", "student", "student_fp32_onnx", "student_int8"}
    for m in report["models"].values():
        assert m["params"] > 0 and m["flops"] > 0 and 0.0 <= m["accuracy"] <= 1.0
        lat = m["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
    assert report["models"]["student_int8"]["runtime"] == "onnxruntime"
    assert report["models"]["teacher"]["runtime"] == "torch"
    assert report["summary"]["param_reduction"] > 1
    assert (run / "report.md").read_text().startswith("# edgec build report: tiny")
    assert (run / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # deploy/ is servable without edgec: run the INT8 model from deploy.json's description alone
    deploy = json.loads((run / "deploy" / "deploy.json").read_text())
    assert deploy["input"]["shape"][1:] == [1, 8, 8] and deploy["preprocessing"]["layout"] == "NCHW"
    sess = ort.InferenceSession(str(run / "deploy" / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    out = sess.run(None, {deploy["input"]["name"]: np.random.default_rng(0).normal(size=(3, 1, 8, 8)).astype(np.float32)})[0]
    assert out.shape == (3, deploy["num_classes"])


def test_second_build_reuses_everything(built):
    folder, recipe, first = built
    again = build(recipe, out=folder / "run", progress=False)
    assert again.ran == [] and again.reused == STAGES
    assert again.report["models"]["student"]["accuracy"] == first.report["models"]["student"]["accuracy"]


def test_changing_one_stage_reruns_it_and_downstream_only(built, tmp_path):
    folder, _, _ = built
    recipe = write_recipe(tmp_path, quantize={"calibration": {"method": "minmax", "samples": 32}})
    result = build(recipe, out=folder / "run", progress=False)
    assert result.reused == ["teacher", "distill", "export"]
    assert result.ran == ["quantize", "engine", "verify", "bench"]


def test_tampered_onnx_is_rebuilt_not_trusted(built):
    folder, recipe, _ = built
    export_dir = next((folder / "run").glob("export-*[!k]"))
    (export_dir / "model.onnx").write_bytes(b"\x08\x07garbage")
    result = build(recipe, out=folder / "run", progress=False)
    assert result.ran[0] == "export" and result.reused[:2] == ["teacher", "distill"]
    # Export is deterministic: the rebuilt file is byte-identical, so its children stay valid.
    assert result.reused[2:] == ["quantize", "engine", "verify", "bench"]


def test_force_reruns_all(built):
    folder, recipe, _ = built
    assert build(recipe, out=folder / "run", progress=False, force=True).ran == STAGES


def test_missing_data_folder(tmp_path):
    recipe = write_recipe(tmp_path, data={"name": "mnist", "path": str(tmp_path / "nope"), "synthetic": None})
    with pytest.raises(DataError, match="nope"):
        build(recipe, out=tmp_path / "run", progress=False)


def test_calibration_set_smaller_than_requested(tmp_path):
    recipe = write_recipe(tmp_path, quantize={"calibration": {"method": "minmax", "samples": 100_000}})
    with pytest.raises(DataError, match="100000"):
        build(recipe, out=tmp_path / "run", progress=False)
    assert not list((tmp_path / "run").glob("quantize-*[!k]"))  # no finished-looking quantize stage


def test_nan_loss_stops_with_clear_error(tmp_path):
    recipe = write_recipe(tmp_path, teacher={"model": "teacher_cnn", "params": {"width": 8},
                                             "train": {"epochs": 2, "lr": 1e30, "optimizer": "sgd"}})
    with pytest.raises(TrainingDiverged) as e:
        build(recipe, out=tmp_path / "run", progress=False)
    assert "lr" in str(e.value)
    assert not list((tmp_path / "run").glob("teacher-*[!k]"))


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ArtifactError, match="not writable"):
        build(write_recipe(tmp_path), out=blocker / "run", progress=False)


def test_teacher_from_given_weights_skips_training(tmp_path):
    import torch

    from edgec.models import create_model

    teacher = create_model("teacher_cnn", in_channels=1, num_classes=4, input_size=8, width=8)
    weights = tmp_path / "teacher.pt"
    torch.save(teacher.state_dict(), weights)
    recipe = write_recipe(tmp_path, teacher={"model": "teacher_cnn", "params": {"width": 8}, "weights": str(weights)},
                          bench={"enabled": False})
    result = build(recipe, out=tmp_path / "run", progress=False)
    metrics = result.artifacts["teacher"].metrics
    assert "training" not in metrics and metrics["params"] == sum(p.numel() for p in teacher.parameters())
    assert "bench" not in result.artifacts and result.report["models"]["teacher"]["latency_ms"] is None


def test_teacher_weights_of_another_architecture(tmp_path):
    import torch

    from edgec.errors import ModelError
    from edgec.models import create_model

    other = create_model("teacher_cnn", in_channels=1, num_classes=4, input_size=8, width=16)
    weights = tmp_path / "teacher.pt"
    torch.save(other.state_dict(), weights)
    recipe = write_recipe(tmp_path, teacher={"model": "teacher_cnn", "params": {"width": 8}, "weights": str(weights)})
    with pytest.raises(ModelError, match="do not fit"):
        build(recipe, out=tmp_path / "run", progress=False)
