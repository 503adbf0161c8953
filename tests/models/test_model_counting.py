"""Exact parameter and MAC counts on hand-computed models."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from edgec.errors import ModelError
from edgec.models import count_flops, count_params, create_model


def _tiny() -> nn.Sequential:
    # (1,3,8,8) -conv 3->4 k3 p1-> (1,4,8,8) -bn,relu,pool-> (1,4,4,4) -flatten-> 64 -fc-> 5
    return nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(3, 4, 3, padding=1)),
        ("bn", nn.BatchNorm2d(4)),
        ("relu", nn.ReLU()),
        ("pool", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        ("fc", nn.Linear(64, 5)),
    ]))


def test_tiny_model_exact_counts():
    model = _tiny()
    # conv: 4*3*3*3 weights + 4 bias = 112; bn: 4 + 4 (running stats are buffers) = 8; fc: 64*5+5 = 325
    assert count_params(model) == 112 + 8 + 325
    # conv: 4*8*8 outputs * 3*3*3 = 6912; fc: 64*5 = 320; bn/relu/pool not counted
    assert count_flops(model, (3, 8, 8)) == 6912 + 320


def test_grouped_and_strided_conv():
    conv = nn.Conv2d(8, 16, kernel_size=3, stride=2, padding=1, groups=4, bias=False)
    assert count_params(conv) == 16 * (8 // 4) * 9
    # output (16, 5, 5) on a 10x10 input; each output sums 8/4 channels * 9 taps
    assert count_flops(conv, (8, 10, 10)) == 16 * 5 * 5 * 2 * 9
    depthwise = nn.Conv2d(6, 6, 3, padding=1, groups=6)
    assert count_flops(depthwise, (6, 4, 4)) == 6 * 16 * 9


def test_frozen_params_counted_buffers_not_and_tied_once():
    model = _tiny()
    for p in model.conv.parameters():
        p.requires_grad_(False)
    assert count_params(model) == 445
    tied = nn.Sequential(nn.Linear(4, 4, bias=False), nn.Linear(4, 4, bias=False))
    tied[1].weight = tied[0].weight
    assert count_params(tied) == 16
    # ...but each call of a shared module costs its MACs.
    assert count_flops(tied, (1, 1, 4)) == 32


def test_count_flops_leaves_mode_and_bn_stats_alone():
    model = _tiny().train()
    before = model.bn.running_mean.clone()
    count_flops(model, (3, 8, 8))
    assert model.training and model.conv.training
    assert torch.equal(model.bn.running_mean, before)
    assert model.bn.num_batches_tracked.item() == 0


def test_count_flops_wrong_input_shape_is_model_error():
    with pytest.raises(ModelError, match="cannot run"):
        count_flops(_tiny(), (1, 8, 8))
    with pytest.raises(ModelError, match="input_shape"):
        count_flops(_tiny(), (3, 8, 0))


def test_resnet20_matches_the_paper_scale():
    # He et al.: ResNet-20 has 0.27M params (option A); the projection shortcuts add
    # 16*32 + 32*64 conv weights + 2*(32+64) BN params = 2752.
    model = create_model("cifar_resnet", in_channels=3, num_classes=10, input_size=32)
    assert count_params(model) == 269722 + 2752
    assert count_flops(model, (3, 32, 32)) == 40_813_184   # ~41M MACs, as usually quoted


def test_teacher_cnn_digits_counts_by_hand():
    model = create_model("teacher_cnn", in_channels=1, num_classes=10, input_size=8)
    convs = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
    conv_w = sum(i * o * 9 for i, o in convs)
    bn = sum(2 * o for _, o in convs)
    fc = 128 * 128 + 128 + 128 * 10 + 10
    assert count_params(model) == conv_w + bn + fc
    # feature maps: block1 at 8x8, block2 at 4x4, block3 at 2x2 (pools 8->4->2->1)
    sizes = [64, 64, 16, 16, 4, 4]
    macs = sum(i * o * 9 * s for (i, o), s in zip(convs, sizes)) + 128 * 128 + 128 * 10
    assert count_flops(model, (1, 8, 8)) == macs
