"""Pruning criteria checked against hand-computed values on a tiny conv with known activations.

The model is conv(1 -> 2, 1x1, weights 1 and 2, no bias) -> ReLU on 2x2 inputs, so the maps are
z[:, 0] = relu(x) and z[:, 1] = relu(2x). The loss is linear in z, C = sum(z * G) / B, so each
example's gradient dC_n/dz_n is exactly G_n (the criterion multiplies the batch-mean gradient
by B).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import pytest
import torch
from torch import nn

from edgec.compress.prune_criteria import (available_criteria, check_criterion,
                                           criterion_scores, map_mflops, rank_scores)
from edgec.compress.prune_graph import channel_groups
from edgec.errors import RecipeError
from edgec.models import create_model
from edgec.models.blocks import ConvClassifier

X = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]],
                  [[[-1.0, 1.0], [2.0, 0.0]]]])            # (2, 1, 2, 2)
G = torch.tensor([[[[1.0, -1.0], [1.0, -1.0]], [[0.5, 0.5], [0.5, 0.5]]],
                  [[[1.0, 1.0], [1.0, 1.0]], [[-1.0, 0.0], [0.0, 1.0]]]])  # (2, 2, 2, 2)


def tiny(kernel: int = 1) -> ConvClassifier:
    conv = nn.Conv2d(1, 2, kernel, padding=kernel // 2, bias=False)
    with torch.no_grad():
        if kernel == 1:
            conv.weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
        else:   # map 0: all ones (mean square 1); map 1: 0..8 (mean square 204/9)
            conv.weight.copy_(torch.stack([torch.ones(3, 3), torch.arange(9.0).view(3, 3)])[:, None])
    features = nn.Sequential(OrderedDict(conv1=conv, relu1=nn.ReLU()))
    return ConvClassifier(features, nn.Sequential(OrderedDict(out=nn.Linear(2, 2))), "features")


def linear_loss(model, x, y):
    # y carries the example's index into G, so any batching sees the right gradients.
    return (model.features(x) * G[y]).sum() / x.shape[0]


def test_taylor_is_per_example_abs_of_mean_then_averaged():
    model = tiny()
    groups = channel_groups(model)
    raw = criterion_scores("taylor", model, groups, [(X, torch.tensor([0, 1]))], linear_loss)
    # Example 0: map 0 |mean(1*1 - 1*2 + 1*3 - 1*4)| = 0.5, map 1 |mean(0.5*(2+4+6+8))| = 2.5.
    # Example 1: map 0 |mean(0+1+2+0)| = 0.75, map 1 |mean(-1*0 + 1*0)| = 0.
    expected = torch.tensor([(0.5 + 0.75) / 2, (2.5 + 0.0) / 2], dtype=torch.float64)
    assert torch.allclose(raw["features.conv1"], expected)
    # Per example, not |batch mean|: one example per batch gives the same numbers.
    split = criterion_scores("taylor", model, groups,
                             [(X[:1], torch.tensor([0])), (X[1:], torch.tensor([1]))], linear_loss)
    assert torch.allclose(split["features.conv1"], expected)
    # Sec. 2.3: divided by the layer's l2 norm, [0.625, 1.25] / sqrt(1.953125) = [1, 2] / sqrt 5.
    normed = rank_scores(raw, None)["features.conv1"]
    assert torch.allclose(normed, torch.tensor([1, 2], dtype=torch.float64) / math.sqrt(5))


def test_flops_term_is_mflops_of_computing_one_map():
    model = tiny()
    groups = channel_groups(model)
    # 1x1 conv, 1 input channel, 2x2 output: 2 * H*W * (C_in*K^2 + 1) = 2*4*2 = 16 FLOPs.
    mflops = map_mflops(model, groups, (1, 2, 2))
    assert mflops == {"features.conv1": pytest.approx(16e-6)}
    raw = {"features.conv1": torch.tensor([0.625, 1.25], dtype=torch.float64)}
    scores = rank_scores(raw, mflops, flops_lambda=1000.0)["features.conv1"]
    expected = torch.tensor([1, 2], dtype=torch.float64) / math.sqrt(5) - 1000.0 * 16e-6
    assert torch.allclose(scores, expected)
    assert map_mflops(tiny(3), channel_groups(tiny(3)), (1, 4, 4)) == {
        "features.conv1": pytest.approx(2 * 16 * (9 + 1) / 1e6)}


def test_weight_criterion_is_mean_squared_kernel_weight():
    model = tiny(3)
    raw = criterion_scores("weight", model, channel_groups(model), [])["features.conv1"]
    assert torch.allclose(raw, torch.tensor([1.0, 204.0 / 9.0], dtype=torch.float64))


def test_activation_criterion_is_mean_map_after_relu():
    model = tiny()
    raw = criterion_scores("activation", model, channel_groups(model), [(X, torch.tensor([0, 1]))])
    # Map 0: relu(x) sums to (1+2+3+4) + (0+1+2+0) = 13 over 8 values; map 1 is twice that.
    assert torch.allclose(raw["features.conv1"], torch.tensor([13 / 8, 26 / 8], dtype=torch.float64))


def test_random_criterion_is_seeded_uniform():
    model = create_model("fitnet", in_channels=1, num_classes=10, input_size=8)
    groups = channel_groups(model)
    a = criterion_scores("random", model, groups, [], generator=torch.Generator().manual_seed(3))
    b = criterion_scores("random", model, groups, [], generator=torch.Generator().manual_seed(3))
    c = criterion_scores("random", model, groups, [], generator=torch.Generator().manual_seed(4))
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["features.stage1.conv1"],
                                                                     c["features.stage1.conv1"])
    assert all(((v >= 0) & (v < 1)).all() and len(v) == g.size for v, g in zip(a.values(), groups))


def test_residual_stream_sums_its_members_before_the_absolute_value():
    torch.manual_seed(0)
    model = create_model("cifar_resnet", in_channels=1, num_classes=3, input_size=8, depth=8,
                         width=4).eval()
    groups = {g.name: g for g in channel_groups(model)}
    stream = groups["features.stem.conv1"]
    assert stream.residual and stream.taylor_points == ["features.stem.relu1",
                                                        "features.stage1.block1.bn2"]
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    raw = criterion_scores("taylor", model, list(groups.values()), [(x, y)])[stream.name]
    # By hand: per example, sum of mean(dC_n/dz * z) over the two added maps, then |.|, mean.
    mods = dict(model.named_modules())
    outs = {}
    hooks = [mods[p].register_forward_hook(lambda m, i, o, p=p: outs.__setitem__(p, o))
             for p in stream.taylor_points]
    loss = nn.functional.cross_entropy(model(x), y, reduction="sum")   # sum: per-example grads
    grads = torch.autograd.grad(loss, [outs[p] for p in stream.taylor_points])
    for h in hooks:
        h.remove()
    t = sum((g * outs[p]).mean(dim=(2, 3)) for g, p in zip(grads, stream.taylor_points))
    assert torch.allclose(raw, t.abs().mean(0).double(), rtol=1e-5)


def test_unknown_criterion_suggests_the_closest():
    assert available_criteria() == ["activation", "random", "taylor", "weight"]
    with pytest.raises(RecipeError) as err:
        check_criterion("taylr")
    assert "did you mean 'taylor'" in err.value.hint and "weight" in err.value.hint
