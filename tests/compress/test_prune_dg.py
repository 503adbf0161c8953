"""Pruning models edgec does not build itself (``python:`` sources) through Torch-Pruning's graph.

The models are :mod:`tests.realistic_models` (torchvision-style ResNet basic blocks; MobileNetV2
inverted residuals with MobileNetV3 squeeze-excitation), pruned to half their FLOPs with the
Molchanov criterion and the schedule of :func:`edgec.compress.prune.prune`; removal is checked by
the layers' shapes, the MACs, the ONNX file's bytes and ONNX Runtime's outputs, and the pruned
model round-trips through edgec's model file (its spec's ``structure``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgec.compress.prune import prune
from edgec.compress.prune_dg import dg_channel_groups, dg_remove_channels, uses_dependency_graph
from edgec.compress.prune_graph import CostModel
from edgec.configs import PruneConfig
from edgec.errors import ModelError
from edgec.export.onnx import export_onnx
from edgec.models import ModelSpec, count_flops, count_params, load_model, save_model
from edgec.models.structure import apply_structure, record_structure
from edgec.train import TrainConfig
from tests.realistic_models import BasicBlock, InvertedResidual, SqueezeExcite

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 16
FINETUNE = TrainConfig(epochs=0, lr=1e-2, optimizer="sgd", momentum=0.9, batch_size=32, scheduler="none")


def spec_of(name: str, **params) -> ModelSpec:
    return ModelSpec(f"python:tests.realistic_models:{name}", params, 3, 4, SIZE)


def data(n: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is which quadrant is brightest: learnable, so gradients are not noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.5, size=(n, 3, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 4, size=n)
    h = SIZE // 2
    for i, c in enumerate(y):
        x[i, :, (c // 2) * h:(c // 2 + 1) * h, (c % 2) * h:(c % 2 + 1) * h] += 1.0
    return x, y.astype(np.int64)


def pruned(name: str):
    spec = spec_of(name)
    torch.manual_seed(0)
    model = spec.build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = data()
    settings = PruneConfig(target_flops=0.5, num_steps=2, finetune_batches=2, criterion_batches=2,
                           train=FINETUNE)
    small, small_spec, report = prune(model, spec, (x, y), data(64, 1), settings, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # input untouched
    return model, spec, small, small_spec, report


@pytest.fixture(scope="module")
def resnet_pruned():
    return pruned("resnet")


@pytest.fixture(scope="module")
def mobilenet_pruned():
    return pruned("mobilenet")


def check_half_flops(model, spec, small, small_spec, report) -> None:
    ratio = count_flops(small, spec.input_shape()) / count_flops(model, spec.input_shape())
    assert 0.4 < ratio <= 0.5 and report["flops_ratio"] == pytest.approx(ratio)   # the cost model is exact
    assert report["final"]["params"] == count_params(small) < count_params(model)
    assert report["stopped"] == "target reached" and len(report["steps"]) == 2
    assert "dependency graph" in report["coupling"]
    assert small(torch.randn(2, *spec.input_shape())).shape == (2, 4)   # classifier output kept
    assert small_spec.structure and small_spec.params == spec.params


def test_resnet_residual_streams_are_pruned_together(resnet_pruned):
    model, spec, small, small_spec, report = resnet_pruned
    check_half_flops(*resnet_pruned)
    assert small.conv1.in_channels == 3 and small.fc.out_features == 4   # never the input or classes
    blocks = [m for m in small.modules() if isinstance(m, BasicBlock)]
    for blk in blocks:
        # the add: conv2's maps meet the shortcut's (the identity or the 1x1 downsample)
        stream = blk.downsample[0].out_channels if blk.downsample is not None else blk.conv1.in_channels
        assert blk.conv2.out_channels == blk.bn2.num_features == stream
        assert blk.conv1.out_channels == blk.bn1.num_features == blk.conv2.in_channels
    assert small.bn1.num_features == small.conv1.out_channels == blocks[0].conv1.in_channels
    assert small.fc.in_features == blocks[-1].conv2.out_channels
    assert small.conv1.out_channels < model.conv1.out_channels   # a residual stream lost maps
    assert any(b.conv1.out_channels < 16 * 2 ** (i // 2) for i, b in enumerate(blocks))


def test_mobilenet_depthwise_and_se_stay_coupled(mobilenet_pruned):
    model, spec, small, small_spec, report = mobilenet_pruned
    check_half_flops(*mobilenet_pruned)
    blocks = [m for m in small.modules() if isinstance(m, InvertedResidual)]
    shrunk = 0
    for blk in blocks:
        expand, bn1, _, dw, bn2 = list(blk.conv)[:5]
        hidden = expand.out_channels
        assert dw.groups == dw.in_channels == dw.out_channels == hidden == bn1.num_features == bn2.num_features
        ses = [m for m in blk.conv if isinstance(m, SqueezeExcite)]
        for se in ses:   # SE reads the depthwise maps and gates them: both ends follow them
            assert se.fc1.in_channels == se.fc2.out_channels == hidden
            assert se.fc1.out_channels == se.fc2.in_channels
        project = [m for m in blk.conv if isinstance(m, nn.Conv2d)][-1]
        assert project.in_channels == hidden
        if blk.use_res:
            assert project.out_channels == expand.in_channels   # the residual add
        shrunk += hidden < expand.in_channels * (4 if ses else 1)
    assert shrunk > 0
    assert small.features[0].in_channels == 3 and small.classifier[1].out_features == 4


@pytest.mark.parametrize("which", ["resnet_pruned", "mobilenet_pruned"])
def test_pruned_onnx_is_smaller_and_matches_torch(which, request, tmp_path):
    model, spec, small, small_spec, _ = request.getfixturevalue(which)
    big = export_onnx(model.eval(), spec.input_shape(), tmp_path / "big.onnx", exporter="torchscript")
    little = export_onnx(small.eval(), spec.input_shape(), tmp_path / "small.onnx", exporter="torchscript")
    assert little.stat().st_size < 0.8 * big.stat().st_size
    x = data(8, 2)[0]
    session = ort.InferenceSession(str(little), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = small(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("which", ["resnet_pruned", "mobilenet_pruned"])
def test_pruned_model_round_trips_through_its_file(which, request, tmp_path):
    _, spec, small, small_spec, _ = request.getfixturevalue(which)
    loaded, loaded_spec = load_model(save_model(small, small_spec, tmp_path / "p.safetensors"))
    assert loaded_spec == small_spec and loaded_spec.structure == small_spec.structure
    x = torch.randn(3, *spec.input_shape())
    assert torch.allclose(loaded(x), small.eval()(x), atol=1e-6)
    with pytest.raises(ModelError, match="does not match its spec"):   # the unpruned spec cannot hold it
        save_model(small, spec, tmp_path / "q.safetensors")


def test_spec_structure_is_optional_and_json():
    spec = spec_of("resnet")
    assert "structure" not in spec.to_dict() and uses_dependency_graph(spec)
    assert not uses_dependency_graph(ModelSpec("fitnet", {}, 1, 10, 8))
    small = apply_structure(spec.build(), {"fc": {"type": "Linear", "in_features": 64, "out_features": 4},
                                           "layers.2.1.conv2": {"type": "Conv2d", "in_channels": 64,
                                                                "out_channels": 64, "groups": 1}})
    structured = dataclasses.replace(spec, structure=record_structure(small, reference=spec.build()))
    assert structured.structure == {}   # nothing differs from the unpruned build
    with pytest.raises(ModelError, match="lacks"):
        apply_structure(spec.build(), {"nope": {"type": "Linear", "in_features": 1, "out_features": 1}})
    with pytest.raises(ModelError, match="says 'Conv2d'"):
        apply_structure(spec.build(), {"fc": {"type": "Conv2d", "in_channels": 1, "out_channels": 1, "groups": 1}})


class Branches(nn.Module):
    """A concatenation (indices remapped) and a conv head that is the classifier: both stay whole."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3) -> None:
        super().__init__()
        self.a = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.b = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.mid = nn.Sequential(nn.Conv2d(16, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.head = nn.Conv2d(12, num_classes, 1)

    def forward(self, x):
        x = self.mid(torch.cat([self.a(x), self.b(x)], dim=1))
        return self.head(x).mean(dim=(2, 3))


def test_groups_that_remap_indices_or_reach_the_output_are_left_whole():
    model = Branches()
    groups = dg_channel_groups(model, (3, 8, 8))
    assert [g.name for g in groups] == ["mid.0"]   # a/b feed a concat; head is the output
    assert groups[0].producers == [["mid.0", "mid.1"]] and groups[0].consumers == ["head"]
    spec = ModelSpec("python:tests.compress.test_prune_dg:Branches", {}, 3, 4, 8)
    small, small_spec = dg_remove_channels(model, spec, groups, {"mid.0": [0, 5, 7]})
    assert small.mid[0].out_channels == small.mid[1].num_features == small.head.in_channels == 3
    cost = CostModel(model, groups, (3, 8, 8))
    assert cost.flops({"mid.0": 3}) == count_flops(small, (3, 8, 8))   # a conv consumer that is not pruned
    assert small_spec.build().mid[0].out_channels == 3


@pytest.mark.slow   # a whole build: ~20 s of CPU
def test_recipe_prunes_a_python_model_student(tmp_path):
    """``prune: {enabled: true}`` in a recipe whose student is the user's own ResNet (``python:``):
    the pruned student is saved with its structure, exported smaller, verified and deployed."""
    from edgec.pipeline import build
    from tests.pipeline_helpers import write_recipe

    recipe = write_recipe(
        tmp_path, student={"model": "python:tests.realistic_models:resnet", "params": {"widths": [8, 16], "blocks": 1}},
        prune={"enabled": True, "target_flops": 0.5, "finetune_batches": 5, "criterion_batches": 2,
               "train": {"epochs": 1}})
    result = build(recipe, out=tmp_path / "run", progress=False)
    arts = result.artifacts
    assert "prune" in result.ran
    small, spec = load_model(arts["prune"].file("student.safetensors"))
    unpruned, unpruned_spec = load_model(arts["distill"].file("student.safetensors"))
    assert spec.structure and unpruned_spec.structure is None and spec.name == unpruned_spec.name
    report = arts["prune"].metrics["prune"]
    assert report["flops_ratio"] <= 0.5 and "dependency graph" in report["coupling"]
    assert count_flops(small, spec.input_shape()) <= 0.5 * count_flops(unpruned, spec.input_shape())
    deployed = tmp_path / "run" / "deploy" / "model.onnx"
    session = ort.InferenceSession(str(deployed), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(size=(2, 1, 8, 8)).astype(np.float32)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(got, small(torch.from_numpy(x)).detach().numpy(), atol=1e-4, rtol=1e-4)
