"""``teacher_cnn``: a VGG-like CNN, the default teacher.

Layout for ``depth=3, width=32`` on a 1x8x8 input (shapes at batch N)::

    features.block1: conv1-bn1-relu1 (1->32), conv2-bn2-relu2 (32->32), pool   (N,32,8,8) -> (N,32,4,4)
    features.block2: same with 64 channels, pool                               -> (N,64,2,2)
    features.block3: same with 128 channels, pool                              -> (N,128,1,1)
    pool (global average) + flatten                                            -> (N,128)
    classifier: hidden (128->fc) - relu - [dropout] - out (fc->num_classes)    -> (N,num_classes)

A block ends with a 2x2 max-pool only while the feature map is at least 2x2, so the same recipe
works on 8x8 digits, 28x28 MNIST and 32x32 CIFAR.

Example:
    >>> teacher = create_model("teacher_cnn", in_channels=3, num_classes=10, input_size=32, width=64)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from torch import nn

from edgec.models.blocks import (ConvClassifier, can_pool, check_dropout, classifier_head,
                                 conv_bn_relu, halve, middle_name)
from edgec.models.channels import resolve_channels
from edgec.models.registry import check_int, register_model


@register_model("teacher_cnn", optional=("channels",))
def teacher_cnn(in_channels: int, num_classes: int, input_size: tuple[int, int], width: int = 32,
                depth: int = 3, fc: int = 128, dropout: float = 0.0,
                convs_per_block: int = 2,
                channels: Mapping[str, int] | None = None) -> ConvClassifier:
    """VGG-like teacher: blocks of 3x3 conv-BN-ReLU with widths width, 2*width, 4*width, ...

    ``depth`` is the number of blocks, ``convs_per_block`` the convs in each, ``fc`` the hidden
    classifier width (0 = none) and ``dropout`` the dropout before the last Linear. ``channels``
    overrides single convs' output widths by name (``{"features.block1.conv2": 20}``; see
    :mod:`edgec.models.channels`), as channel pruning leaves them.

    Example:
        >>> teacher_cnn(1, 10, (8, 8)).hint_layer_default
        'features.block2'
    """
    name = "teacher_cnn"
    width = check_int(name, "width", width)
    depth = check_int(name, "depth", depth)
    fc = check_int(name, "fc", fc, minimum=0)
    convs_per_block = check_int(name, "convs_per_block", convs_per_block)
    dropout = check_dropout(name, dropout)

    widths = resolve_channels(name, {f"features.block{b}.conv{k}": width * 2 ** (b - 1)
                                     for b in range(1, depth + 1)
                                     for k in range(1, convs_per_block + 1)}, channels)

    blocks: list[tuple[str, nn.Module]] = []
    size, ch = input_size, in_channels
    for b in range(1, depth + 1):
        layers: list[tuple[str, nn.Module]] = []
        for k in range(1, convs_per_block + 1):
            out_ch = widths[f"features.block{b}.conv{k}"]
            layers += conv_bn_relu(ch, out_ch, index=k)
            ch = out_ch
        if can_pool(size):
            layers.append(("pool", nn.MaxPool2d(2)))
            size = halve(size)
        blocks.append((f"block{b}", nn.Sequential(OrderedDict(layers))))

    return ConvClassifier(nn.Sequential(OrderedDict(blocks)),
                          classifier_head(ch, num_classes, hidden=fc, dropout=dropout),
                          middle=middle_name("features.block", depth))
