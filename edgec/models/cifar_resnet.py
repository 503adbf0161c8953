"""``cifar_resnet``: He et al.'s CIFAR ResNet (6n+2 layers: ResNet-20/32/44/56/110).

A 3x3 stem conv, then three stages of ``n`` BasicBlocks with widths w, 2w, 4w (the first block
of stages 2 and 3 has stride 2), global average pool and one Linear. Where a block changes shape
its shortcut is a 1x1 conv + BN projection (the paper's option B); elsewhere it is the identity.
Shapes for the default (depth 20, width 16) on 3x32x32::

    features.stem:   conv-bn-relu (3->16)                     (N,3,32,32) -> (N,16,32,32)
    features.stage1: 3 BasicBlocks, 16 channels               -> (N,16,32,32)
    features.stage2: 3 BasicBlocks, 32 channels, stride 2     -> (N,32,16,16)
    features.stage3: 3 BasicBlocks, 64 channels, stride 2     -> (N,64,8,8)
    pool + flatten -> (N,64); classifier.out -> (N,num_classes)

On 8x8 digits the stages give 8x8 -> 4x4 -> 2x2, on 28x28 MNIST 28 -> 14 -> 7.

``channels`` (see :mod:`edgec.models.channels`) sets single convs' output widths by name, as
channel pruning leaves them. A block's ``conv1`` is free; the convs whose outputs are added
together must share a width: the stem conv and every ``conv2`` of stage 1 (identity shortcuts),
and in stages 2 and 3 the first block's ``shortcut.conv`` and every ``conv2`` of the stage.

Example:
    >>> resnet56 = create_model("cifar_resnet", in_channels=3, num_classes=10, input_size=32, depth=56)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import nn

from edgec.errors import ModelError
from edgec.models.blocks import ConvClassifier, classifier_head, conv_bn_relu
from edgec.models.channels import check_coupled, resolve_channels
from edgec.models.registry import check_int, register_model


class BasicBlock(nn.Module):
    """relu2(bn2(conv2(relu1(bn1(conv1(x))))) + shortcut(x)), two 3x3 convs.

    ``conv1`` carries the stride; channel pruning may shrink ``conv1``'s outputs (and ``bn1``,
    ``conv2``'s inputs) freely, while ``conv2``'s outputs are tied to the shortcut by the addition.

    ``mid_ch`` (default ``out_ch``) is ``conv1``'s output width, which pruning may shrink alone.

    Example:
        >>> BasicBlock(16, 32, stride=2)(torch.zeros(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, mid_ch: int | None = None):
        super().__init__()
        mid_ch = out_ch if mid_ch is None else mid_ch
        self.conv1 = nn.Conv2d(in_ch, mid_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid_ch)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(mid_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        if stride != 1 or in_ch != out_ch:
            self.shortcut: nn.Module = nn.Sequential(OrderedDict([
                ("conv", nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)),
                ("bn", nn.BatchNorm2d(out_ch)),
            ]))
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


@register_model("cifar_resnet", optional=("channels",))
def cifar_resnet(in_channels: int, num_classes: int, input_size: tuple[int, int], depth: int = 20,
                 width: int = 16, channels: Mapping[str, int] | None = None) -> ConvClassifier:
    """He et al.'s CIFAR ResNet: 6n+2 layers of BasicBlocks in three stages (width, 2x, 4x).

    ``depth`` must be 6n+2 (20, 32, 44, 56, 110, ...); ``width`` is the first stage's channels;
    ``channels`` overrides convs' output widths by name (coupled convs must agree, see above).

    Example:
        >>> cifar_resnet(3, 10, (32, 32), depth=32).hint_layer_default
        'features.stage2'
    """
    depth = check_int("cifar_resnet", "depth", depth, minimum=8)
    width = check_int("cifar_resnet", "width", width)
    if (depth - 2) % 6:
        lower, upper = max(8, (depth - 2) // 6 * 6 + 2), (depth - 2) // 6 * 6 + 8
        raise ModelError(f"model 'cifar_resnet': depth must be 6n+2 "
                         f"(e.g. 8, 14, 20, 26, 32, 44, 56, 110), got {depth}",
                         hint=f"use depth {lower} or {upper}")
    n = (depth - 2) // 6
    defaults, streams = {"features.stem.conv1": width}, [["features.stem.conv1"]]
    for s, mult in enumerate((1, 2, 4), start=1):
        if s > 1:  # stages 2 and 3 open with a stride-2 projection shortcut
            defaults[f"features.stage{s}.block1.shortcut.conv"] = width * mult
            streams.append([f"features.stage{s}.block1.shortcut.conv"])
        for b in range(1, n + 1):
            prefix = f"features.stage{s}.block{b}"
            defaults[f"{prefix}.conv1"] = defaults[f"{prefix}.conv2"] = width * mult
            streams[-1].append(f"{prefix}.conv2")
    widths = resolve_channels("cifar_resnet", defaults, channels)
    # Equal widths within a stream also keep stage 1's shortcuts identities (in == out, stride 1).
    check_coupled("cifar_resnet", widths, streams)

    # Spatial sizes are never checked: a stride-2 3x3 conv with padding 1 maps 1x1 to 1x1, so even
    # tiny inputs run (8x8 ends at 2x2).
    ch = widths["features.stem.conv1"]
    parts: list[tuple[str, nn.Module]] = [("stem", nn.Sequential(OrderedDict(conv_bn_relu(
        in_channels, ch, index=1))))]
    for s in (1, 2, 3):
        blocks = []
        for b in range(1, n + 1):
            prefix = f"features.stage{s}.block{b}"
            stride = 2 if (s > 1 and b == 1) else 1
            out_ch, mid_ch = widths[f"{prefix}.conv2"], widths[f"{prefix}.conv1"]
            blocks.append((f"block{b}", BasicBlock(ch, out_ch, stride, mid_ch=mid_ch)))
            ch = out_ch
        parts.append((f"stage{s}", nn.Sequential(OrderedDict(blocks))))

    return ConvClassifier(nn.Sequential(OrderedDict(parts)),
                          classifier_head(ch, num_classes, hidden=0, dropout=0.0),
                          middle="features.stage2")
