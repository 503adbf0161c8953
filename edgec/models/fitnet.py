"""``fitnet``: a FitNets-style thin-and-deep student (Romero et al., 2015).

FitNets trades width for depth: many narrow 3x3 convolutions, grouped in stages separated by
max-pooling. The paper's CIFAR-10 FitNet-1 (~250K params, 36x fewer than its teacher) stacks
maxout conv layers of 16 to 64 channels in three stages; ``fitnet(widths=(16, 32, 64))`` is a
plain-ReLU analogue with ~122K params on CIFAR-10 (maxout doubles the filters). The default
(8/16/32, ~31K params) is sized for 8x8 digits. Shapes for the default on 1x8x8::

    features.stage1: 3 x conv-bn-relu (1->8, 8->8, 8->8), pool   (N,1,8,8)  -> (N,8,4,4)
    features.stage2: 3 x conv-bn-relu (8->16, ...),       pool   -> (N,16,2,2)
    features.stage3: 3 x conv-bn-relu (16->32, ...)              -> (N,32,2,2)
    pool + flatten -> (N,32); classifier: [hidden (fc) - relu] - out -> (N,num_classes)

Stage ``i`` ends at the same spatial size as ``teacher_cnn``'s block ``i`` (both pool once per
block), so the default guided layer (``features.stage2``) and the teacher's hint layer
(``features.block2``) line up and a 1x1 conv regressor suffices.

Example:
    >>> student = create_model("fitnet", in_channels=1, num_classes=10, input_size=8)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

from torch import nn

from edgec.errors import ModelError
from edgec.models.blocks import (ConvClassifier, can_pool, classifier_head, conv_bn_relu, halve,
                                 middle_name)
from edgec.models.channels import resolve_channels
from edgec.models.registry import is_int, check_int, register_model


def _check_widths(widths: object) -> tuple[int, ...]:
    if (not isinstance(widths, (list, tuple)) or not widths
            or not all(is_int(w) and w >= 1 for w in widths)):
        raise ModelError(f"model 'fitnet': param 'widths' must be a non-empty list of positive "
                         f"integers (one per stage), got {widths!r}", hint="e.g. widths: [16, 32, 64]")
    return tuple(int(w) for w in widths)


@register_model("fitnet", optional=("channels",))
def fitnet(in_channels: int, num_classes: int, input_size: tuple[int, int],
           widths: Sequence[int] = (8, 16, 32), convs_per_stage: int = 3,
           fc: int = 0, channels: Mapping[str, int] | None = None) -> ConvClassifier:
    """FitNets-style thin-and-deep student: stages of 3x3 conv-BN-ReLU with max-pooling between.

    ``widths`` gives one channel count per stage, ``convs_per_stage`` the depth of each stage
    and ``fc`` an optional hidden classifier width (0 = global pool straight into the output).
    ``channels`` overrides single convs' output widths by name (``{"features.stage2.conv3": 9}``;
    see :mod:`edgec.models.channels`), as channel pruning leaves them.

    Example:
        >>> fitnet(1, 10, (8, 8), widths=(16, 32, 64)).guided_layer_default
        'features.stage2'
    """
    widths = _check_widths(widths)
    convs_per_stage = check_int("fitnet", "convs_per_stage", convs_per_stage)
    fc = check_int("fitnet", "fc", fc, minimum=0)

    conv_widths = resolve_channels("fitnet", {f"features.stage{s}.conv{k}": w
                                              for s, w in enumerate(widths, start=1)
                                              for k in range(1, convs_per_stage + 1)}, channels)

    stages: list[tuple[str, nn.Module]] = []
    size, ch = input_size, in_channels
    for s in range(1, len(widths) + 1):
        layers: list[tuple[str, nn.Module]] = []
        for k in range(1, convs_per_stage + 1):
            out_ch = conv_widths[f"features.stage{s}.conv{k}"]
            layers += conv_bn_relu(ch, out_ch, index=k)
            ch = out_ch
        # Pool *between* stages only: the last stage feeds the global average pool directly.
        if s < len(widths) and can_pool(size):
            layers.append(("pool", nn.MaxPool2d(2)))
            size = halve(size)
        stages.append((f"stage{s}", nn.Sequential(OrderedDict(layers))))

    return ConvClassifier(nn.Sequential(OrderedDict(stages)),
                          classifier_head(ch, num_classes, hidden=fc, dropout=0.0),
                          middle=middle_name("features.stage", len(widths)))
