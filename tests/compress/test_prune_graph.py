"""Physical channel removal: dependencies, exact counts, ONNX export and ONNX Runtime parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from edgec.compress.prune_graph import CostModel, channel_groups, conv_widths, remove_channels
from edgec.errors import ModelError
from edgec.export.onnx import check_parity, export_onnx
from edgec.models import ModelSpec, count_flops, count_params

SPECS = {
    "teacher_cnn": ModelSpec("teacher_cnn", {"width": 4, "depth": 2, "fc": 8}, 1, 10, 8),
    "fitnet": ModelSpec("fitnet", {"widths": [4, 8], "convs_per_stage": 2}, 1, 10, 8),
    "cifar_resnet": ModelSpec("cifar_resnet", {"depth": 14, "width": 4}, 1, 10, 8),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trained_like(spec: ModelSpec) -> nn.Module:
    """Non-default BN statistics and affine parameters, so slicing every BN tensor matters."""
    torch.manual_seed(0)
    model = spec.build().train()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        for _ in range(3):
            model(torch.randn(16, *spec.input_shape()))
    return model.eval()


def silence(model: nn.Module, group, channel: int) -> None:
    """Make map ``channel`` of ``group`` exactly zero: kernel rows 0, BN beta and mean 0."""
    mods = dict(model.named_modules())
    with torch.no_grad():
        for conv, bn in group.producers:
            mods[conv].weight[channel] = 0
            mods[bn].bias[channel] = 0
            mods[bn].running_mean[channel] = 0


def test_groups_follow_the_residual_structure():
    groups = {g.name: g for g in channel_groups(SPECS["cifar_resnet"].build())}
    stream1 = groups["features.stem.conv1"]
    assert stream1.convs == ["features.stem.conv1", "features.stage1.block1.conv2",
                             "features.stage1.block2.conv2"]
    assert stream1.consumers == ["features.stage1.block1.conv1", "features.stage1.block2.conv1",
                                 "features.stage2.block1.conv1",
                                 "features.stage2.block1.shortcut.conv"]
    stream3 = groups["features.stage3.block1.shortcut.conv"]
    assert stream3.residual and stream3.consumers[-1] == "classifier.out"
    assert groups["features.stage2.block2.conv1"].consumers == ["features.stage2.block2.conv2"]


@pytest.mark.parametrize("name, group_index", [("teacher_cnn", 1), ("fitnet", 2),
                                                ("cifar_resnet", 0), ("cifar_resnet", 1)])
def test_removing_a_zero_map_leaves_outputs_unchanged(name, group_index):
    spec = SPECS[name]
    model = trained_like(spec)
    groups = channel_groups(model)
    group = groups[group_index]
    silence(model, group, 1)
    x = torch.randn(6, *spec.input_shape())
    before = model(x)
    keep = [c for c in range(group.size) if c != 1]
    small, small_spec = remove_channels(model, spec, groups, {group.name: keep})
    assert all(w == group.size - 1 for c, w in conv_widths(small).items() if c in group.convs)
    assert torch.allclose(small(x), before, atol=1e-5)
    assert count_params(small) < count_params(model)
    assert small_spec.build().state_dict().keys() == small.state_dict().keys()


def test_counts_after_removal_match_hand_computed_values():
    # fitnet widths (4, 8), one conv per stage on 1x8x8: conv1 1->4 at 8x8, pool, conv2 4->8 at
    # 4x4, global pool, Linear(8, 10).
    spec = ModelSpec("fitnet", {"widths": [4, 8], "convs_per_stage": 1}, 1, 10, 8)
    model = spec.build()
    groups = channel_groups(model)
    keep = {"features.stage1.conv1": [0, 1, 3], "features.stage2.conv1": [0, 2, 4, 6, 7]}
    small, _ = remove_channels(model, spec, groups, keep)
    # params: conv1 3*1*9 + bn1 2*3 + conv2 5*3*9 + bn2 2*5 + out 5*10 + 10
    assert count_params(small) == 27 + 6 + 135 + 10 + 60 == 238
    # MACs: conv1 8*8*3*1*9 + conv2 4*4*5*3*9 + out 5*10
    assert count_flops(small, (1, 8, 8)) == 1728 + 2160 + 50 == 3938
    cost = CostModel(model, groups, (1, 8, 8))
    assert cost.flops({"features.stage1.conv1": 3, "features.stage2.conv1": 5}) == 3938
    assert cost.params({"features.stage1.conv1": 3, "features.stage2.conv1": 5}) == 238
    # The kept channels are the chosen ones, in order: out's columns 0, 2, 4, 6, 7 survive.
    assert torch.equal(small.classifier.out.weight, model.classifier.out.weight[:, [0, 2, 4, 6, 7]])


def conv_weight_elements(path) -> int:
    graph = onnx.load(str(path)).graph
    inits = {i.name: int(np.prod(i.dims)) for i in graph.initializer}
    return sum(inits[n.input[1]] for n in graph.node if n.op_type == "Conv")


@pytest.mark.parametrize("name", list(SPECS))
def test_pruned_models_export_smaller_and_match_onnx_runtime(tmp_path, name):
    spec = SPECS[name]
    model = trained_like(spec)
    groups = channel_groups(model)
    gen = torch.Generator().manual_seed(1)
    keep = {g.name: sorted(torch.randperm(g.size, generator=gen)[:max(1, g.size // 2)].tolist())
            for g in groups}
    small, small_spec = remove_channels(model, spec, groups, keep)
    full = export_onnx(model, spec.input_shape(), tmp_path / "full.onnx", exporter="torchscript")
    path = export_onnx(small, small_spec.input_shape(), tmp_path / "small.onnx",
                       exporter="torchscript")
    assert conv_weight_elements(path) < conv_weight_elements(full) / 2
    x = np.random.default_rng(0).standard_normal((8, *spec.input_shape())).astype(np.float32)
    report = check_parity(small, path, x, atol=1e-4)
    assert report.top1_agreement == 1.0


def test_bad_keep_lists_are_model_errors():
    spec = SPECS["fitnet"]
    model = spec.build()
    groups = channel_groups(model)
    with pytest.raises(ModelError, match="no channel group"):
        remove_channels(model, spec, groups, {"features.stage9.conv1": [0]})
    with pytest.raises(ModelError, match="distinct channels"):
        remove_channels(model, spec, groups, {"features.stage1.conv1": []})
    with pytest.raises(ModelError, match="distinct channels"):
        remove_channels(model, spec, groups, {"features.stage1.conv1": [0, 0]})
    with pytest.raises(ModelError, match="cannot handle"):
        channel_groups(nn.Sequential(nn.Conv2d(1, 2, 3)))
