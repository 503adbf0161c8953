"""Building blocks shared by the model families.

Every family returns a :class:`ConvClassifier`: ``features`` (an ``nn.Sequential`` of named
blocks/stages) -> ``pool`` (global average) -> ``flatten`` -> ``classifier`` (an ``nn.Sequential``
ending in a ``Linear`` named ``out``). Only plain Conv2d / BatchNorm2d / ReLU / MaxPool2d /
AdaptiveAvgPool2d / Flatten / Linear / Dropout are used, so that ONNX export, BN folding, fake
quantization and channel pruning all see the same simple graph. ReLUs are not in-place because
pruning and distillation hooks read the pre-activation tensors.

Example:
    >>> layers = conv_bn_relu(3, 16, index=1)     # [('conv1', Conv2d), ('bn1', ...), ('relu1', ...)]
    >>> head = classifier_head(64, 10, hidden=128, dropout=0.1)
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from edgec.errors import ModelError


class ConvClassifier(nn.Module):
    """features -> global average pool -> flatten -> classifier.

    ``hint_layer_default`` / ``guided_layer_default`` name the module in the middle of
    ``features`` whose output FitNets uses (the teacher's hint layer, the student's guided layer);
    both are set because the same family can be used as a teacher or as a student.

    Example:
        >>> model = ConvClassifier(features, classifier, middle="features.block2")
        >>> logits = model(x)          # x: (N, C, H, W) -> logits: (N, num_classes)
    """

    def __init__(self, features: nn.Sequential, classifier: nn.Sequential, middle: str):
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)   # (N, C, h, w) -> (N, C, 1, 1): any input size works
        self.flatten = nn.Flatten()           # (N, C, 1, 1) -> (N, C)
        self.classifier = classifier          # (N, C) -> (N, num_classes)
        self.hint_layer_default: str = middle
        self.guided_layer_default: str = middle

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def conv_bn_relu(in_ch: int, out_ch: int, index: int, stride: int = 1) -> list[tuple[str, nn.Module]]:
    """Named ``convK`` (3x3, padding 1, no bias: BN follows), ``bnK``, ``reluK`` layers.

    Example:
        >>> nn.Sequential(OrderedDict(conv_bn_relu(1, 8, index=1)))
    """
    return [
        (f"conv{index}", nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)),
        (f"bn{index}", nn.BatchNorm2d(out_ch)),
        (f"relu{index}", nn.ReLU(inplace=False)),
    ]


def can_pool(size: tuple[int, int]) -> bool:
    """A 2x2/stride-2 max-pool fits while both sides are >= 2 (8x8 allows three pools: 8->4->2->1).

    Example:
        >>> can_pool((2, 2)), can_pool((1, 1))
        (True, False)
    """
    return min(size) >= 2


def halve(size: tuple[int, int]) -> tuple[int, int]:
    """Spatial size after MaxPool2d(2) (floor, like torch: 7 -> 3).

    Example:
        >>> halve((7, 7))
        (3, 3)
    """
    return size[0] // 2, size[1] // 2


def classifier_head(in_features: int, num_classes: int, hidden: int, dropout: float) -> nn.Sequential:
    """``hidden`` Linear + ReLU (skipped when hidden == 0), optional ``dropout``, then ``out``.

    Example:
        >>> classifier_head(128, 10, hidden=0, dropout=0.0)   # Sequential(out=Linear(128, 10))
    """
    layers: list[tuple[str, nn.Module]] = []
    if hidden > 0:
        layers += [("hidden", nn.Linear(in_features, hidden)), ("relu", nn.ReLU(inplace=False))]
        in_features = hidden
    if dropout > 0:
        layers.append(("dropout", nn.Dropout(dropout)))
    layers.append(("out", nn.Linear(in_features, num_classes)))
    return nn.Sequential(OrderedDict(layers))


def check_dropout(model: str, value: object) -> float:
    """Validate a dropout probability in [0, 1).

    Example:
        >>> check_dropout("teacher_cnn", 0.2)
        0.2
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ModelError(f"model '{model}': param 'dropout' must be a number in [0, 1), got {value!r}",
                         hint="e.g. dropout: 0.1 (or 0 for none)")
    return float(value)


def middle_name(prefix: str, count: int) -> str:
    """Name of the middle one of ``count`` blocks numbered from 1 (3 -> 2, 4 -> 2, 5 -> 3).

    Example:
        >>> middle_name("features.block", 3)
        'features.block2'
    """
    return f"{prefix}{(count + 1) // 2}"
