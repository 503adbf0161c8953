"""`edgec build` with pruning and quantized training (tiny synthetic recipe)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from edgec.export.qdq import qdq_problems
from edgec.pipeline import build
from tests.pipeline_helpers import write_recipe

FAST_PRUNE = {"enabled": True, "target_flops": 0.5, "finetune_batches": 5, "train": {"epochs": 1}}


def _conv_weight_elements(path) -> int:
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in inits:
            total += int(np.prod(inits[node.input[1]].dims))
    return total


def test_prune_then_qat(tmp_path):
    recipe = write_recipe(tmp_path, prune=FAST_PRUNE, quantize={"method": "qat", "train": {"epochs": 1}},
                          bench={"enabled": False})
    result = build(recipe, out=tmp_path / "run", progress=False)
    assert result.ran == ["teacher", "distill", "prune", "export", "quantize", "engine", "verify"]
    arts = result.artifacts
    pruned, unpruned = arts["prune"].metrics, arts["distill"].metrics
    # Channels are physically removed: fewer FLOPs and parameters, and a smaller exported graph.
    assert pruned["flops"] <= 0.5 * unpruned["flops"] + 1 and pruned["params"] < unpruned["params"]
    assert result.report["models"]["student"]["flops"] == pruned["flops"]
    assert result.report["summary"]["prune"]["flops_ratio"] <= 0.5
    # QAT's QDQ file: learned scales, TensorRT-acceptable, and what deploy/ ships.
    q = arts["quantize"].metrics
    assert q["method"] == "qat" and q["kind"] == "int8" and q["verification"]["top1_agreement"] >= 0.99
    int8 = tmp_path / "run" / "deploy" / "model.int8.onnx"
    assert qdq_problems(int8) == []
    assert "student_int8" in result.report["models"]
    fp32 = tmp_path / "run" / "deploy" / "model.onnx"
    sess = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"input": np.ones((2, 1, 8, 8), np.float32)})[0].shape == (2, 4)
    # The exported graph itself is smaller: fewer Conv weight elements than the unpruned student's convs.
    from edgec.models import load_model

    unpruned_model, _ = load_model(arts["distill"].file("student.safetensors"))
    unpruned_conv = sum(m.weight.numel() for m in unpruned_model.modules() if isinstance(m, torch.nn.Conv2d))
    assert 0 < _conv_weight_elements(fp32) < unpruned_conv
    # ONNX Runtime on a CPU runs the same learned model rewritten as U8U8 (cannot saturate without VNNI).
    deploy = json.loads((tmp_path / "run" / "deploy" / "deploy.json").read_text())
    assert deploy["recommended"] == "model.int8.cpu.onnx"
    assert deploy["int8"]["model.int8.cpu.onnx"]["flavour"] == "u8u8"
    assert deploy["int8"]["model.int8.onnx"]["flavour"] == "s8s8"
    assert not arts["verify"].metrics["avx2_saturation"]["model.int8.cpu.onnx"]["saturates"]


def test_binaryconnect_deploys_packed_weights(tmp_path):
    recipe = write_recipe(tmp_path, quantize={"method": "binaryconnect", "bits": 1, "train": {"epochs": 1}},
                          bench={"enabled": False})
    result = build(recipe, out=tmp_path / "run", progress=False)
    deploy = tmp_path / "run" / "deploy"
    info = json.loads((deploy / "deploy.json").read_text())
    assert info["recommended"] == "model.w1.onnx"
    assert {"model.w1.onnx", "model.w1.lowbit.safetensors", "model.w1.lowbit.json"} <= set(info["files"])
    assert "student_lowbit" in result.report["models"] and result.report["summary"]["lowbit_bits"] == 1
    # Every low-bit layer's ONNX weight is exactly scale * (+-1): at most 2 distinct |values| per row.
    meta = json.loads((deploy / "model.w1.lowbit.json").read_text())
    assert meta["format"] == "edgec.lowbit/1" and meta["layers"]


def test_fitnets_distillation_stage(tmp_path):
    recipe = write_recipe(tmp_path, distill={"method": "fitnets", "params": {"hint_epochs": 1, "temperature": 3.0},
                                             "train": {"epochs": 2}},
                          quantize={"enabled": False}, bench={"enabled": False})
    result = build(recipe, out=tmp_path / "run", progress=False)
    distill = result.artifacts["distill"]
    assert set(distill.manifest["files"]) == {"student.safetensors"}  # hint/KD checkpoints not published
    assert not list(distill.path.glob("checkpoint*"))
    assert result.report["models"]["student"]["accuracy"] > 0.25  # 4 classes: better than chance


def test_unknown_hint_layer_fails_clearly(tmp_path):
    from edgec.errors import RecipeError

    recipe = write_recipe(tmp_path, distill={"method": "fitnets", "params": {"hint_layer": "features.blok2"},
                                             "train": {"epochs": 1}})
    with pytest.raises(RecipeError) as e:
        build(recipe, out=tmp_path / "run", progress=False)
    assert "features.blok2" in str(e.value) and "features.block2" in str(e.value)
