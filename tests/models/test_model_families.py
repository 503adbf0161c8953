"""Each family on each dataset shape: logits, layer names, building blocks, sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgec.models import count_params, create_model

FAMILIES = ("teacher_cnn", "fitnet", "cifar_resnet")
SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar": (3, 32, 32)}
ALLOWED = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten,
           nn.Linear, nn.Dropout, nn.Sequential, nn.Identity)


def _make(name, shape, num_classes=10, **params):
    c, h, w = shape
    return create_model(name, in_channels=c, num_classes=num_classes, input_size=(h, w), **params)


@pytest.mark.parametrize("data", list(SHAPES))
@pytest.mark.parametrize("name", FAMILIES)
def test_logits_shape_on_every_dataset(name, data):
    torch.manual_seed(0)
    model = _make(name, SHAPES[data], num_classes=7)
    x = torch.randn(3, *SHAPES[data])
    logits = model(x)                      # train mode: BN uses batch statistics
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    logits.sum().backward()                # every parameter is reached by the gradient
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    assert model(x[:1]).shape == (1, 7)


@pytest.mark.parametrize("name", FAMILIES)
def test_only_plain_layers_and_no_inplace_relu(name):
    model = _make(name, SHAPES["cifar"])
    for mod_name, module in model.named_modules():
        if module is model or type(module).__name__ == "BasicBlock":
            continue
        assert isinstance(module, ALLOWED), f"{mod_name}: {type(module).__name__}"
        if isinstance(module, nn.ReLU):
            assert not module.inplace, mod_name


@pytest.mark.parametrize("name", FAMILIES)
def test_hint_and_guided_defaults_name_real_modules_in_the_middle(name):
    model = _make(name, SHAPES["digits"])
    modules = dict(model.named_modules())
    assert model.hint_layer_default in modules and model.guided_layer_default in modules
    assert model.hint_layer_default.endswith("2")        # middle of 3 blocks/stages
    assert isinstance(model.features, nn.Sequential) and isinstance(model.classifier, nn.Sequential)
    assert isinstance(model.classifier.out, nn.Linear)


def test_teacher_layout_and_pooling_on_8x8():
    model = _make("teacher_cnn", SHAPES["digits"])
    assert list(dict(model.features.named_children())) == ["block1", "block2", "block3"]
    assert [model.features[i].conv1.out_channels for i in range(3)] == [32, 64, 128]
    assert isinstance(model.features.block1.conv2, nn.Conv2d)
    sizes = []
    x = torch.zeros(1, 1, 8, 8)
    for block in model.features:
        x = block(x)
        sizes.append(x.shape[-1])
    assert sizes == [4, 2, 1]
    # a 4th block on 8x8 has no room for another pool but still runs
    deep = _make("teacher_cnn", SHAPES["digits"], depth=4, fc=0, dropout=0.5)
    assert not hasattr(deep.features.block4, "pool")
    assert list(dict(deep.classifier.named_children())) == ["dropout", "out"]
    assert deep(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_fitnet_stage_output_matches_teacher_block_resolution():
    # FitNets: the guided layer's feature map must align with the hint layer's.
    teacher, student = _make("teacher_cnn", SHAPES["cifar"]), _make("fitnet", SHAPES["cifar"])
    hint = teacher.features[:2](torch.zeros(1, 3, 32, 32))
    guided = student.features[:2](torch.zeros(1, 3, 32, 32))
    assert hint.shape[-2:] == guided.shape[-2:] == (8, 8)
    assert (hint.shape[1], guided.shape[1]) == (64, 16)
    assert len([m for m in student.modules() if isinstance(m, nn.Conv2d)]) == 9
    assert not hasattr(student.features.stage3, "pool")   # pools between stages only


def test_default_fitnet_is_at_least_5x_smaller_than_default_teacher_on_digits():
    teacher = count_params(_make("teacher_cnn", SHAPES["digits"]))
    student = count_params(_make("fitnet", SHAPES["digits"]))
    assert (teacher, student) == (304682, 30690)
    assert teacher >= 5 * student


@pytest.mark.parametrize("depth, n", [(8, 1), (20, 3), (32, 5)])
def test_resnet_depth_is_6n_plus_2_with_projection_only_where_shape_changes(depth, n):
    model = _make("cifar_resnet", SHAPES["cifar"], depth=depth, width=8)
    convs = [m for name, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and "shortcut" not in name]
    assert len(convs) + 1 == depth                       # + the final Linear
    for s in (1, 2, 3):
        assert len(getattr(model.features, f"stage{s}")) == n
    assert isinstance(model.features.stage1.block1.shortcut, nn.Identity)
    proj = model.features.stage2.block1.shortcut
    assert isinstance(proj.conv, nn.Conv2d)
    assert proj.conv.kernel_size == (1, 1) and proj.conv.stride == (2, 2)
    assert isinstance(proj.bn, nn.BatchNorm2d)
    assert model.features.stage3.block1.conv1.out_channels == 32
    out = model.features(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 32, 8, 8)


def test_resnet_residual_path_is_used():
    # Zeroing bn2's affine zeroes the residual branch, so block(x) = relu(shortcut(x)).
    model = _make("cifar_resnet", SHAPES["digits"], depth=8).eval()
    block = model.features.stage1.block1
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    x = torch.randn(1, 16, 8, 8)
    assert torch.equal(block(x), torch.relu(x))
