"""Small models with the topologies users bring, for tests that must not need torchvision or timm.

They are ordinary ``nn.Module`` code of the kind a user's own package holds, so the ``python:`` model
source, ONNX input, pruning and distillation are tested on realistic structure in the main suite:

- :func:`resnet`: ResNet basic blocks (two 3x3 convs, BN, residual add, a strided 1x1 downsample
  branch), as in torchvision's ``resnet18``: pruning must couple the channels of every add.
- :func:`mobilenet`: MobileNetV2 inverted residuals (1x1 expand, 3x3 *depthwise*, 1x1 project,
  residual add when shapes allow) with MobileNetV3's squeeze-excitation (global pool, 1x1 reduce,
  1x1 expand, hard-sigmoid gate multiplied into the depthwise output): pruning must keep a depthwise
  conv's groups equal to its channels and the SE convs' in/out coupled to the gated channels.

Use them as ``model: "python:tests.realistic_models:resnet"`` (the test suite runs from the repo
root, which is on ``sys.path``) or call them directly.
"""

from __future__ import annotations

from torch import nn


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: conv-bn-relu-conv-bn + shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, widths: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        layers, cin = [], widths[0]
        for i, w in enumerate(widths):
            stage = [BasicBlock(cin, w, 1 if i == 0 else 2)] + [BasicBlock(w, w) for _ in range(blocks - 1)]
            layers.append(nn.Sequential(*stage))
            cin = w
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def resnet(num_classes: int, in_channels: int = 3, widths: list[int] | None = None, blocks: int = 2) -> nn.Module:
    """A small ResNet (basic blocks, residual adds, strided 1x1 downsample branches)."""
    return ResNet(num_classes, in_channels, tuple(widths or (16, 32, 64)), blocks)


class SqueezeExcite(nn.Module):
    """MobileNetV3's SE: pool, 1x1 reduce + ReLU, 1x1 expand + hard-sigmoid, scale the input."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.relu(self.fc1(self.avgpool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (+ optional SE), 1x1 linear project, add."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int, se: bool) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers: list[nn.Module] = [
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
        ]
        if se:
            layers.append(SqueezeExcite(hidden, max(8, hidden // 4)))
        layers += [nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, se: bool) -> None:
        super().__init__()
        # (expand, out, repeats, stride)
        config = [(1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 48, 1, 1)]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16),
                                   nn.ReLU6(inplace=True)]
        cin = 16
        for expand, cout, repeats, stride in config:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand, se and expand > 1))
                cin = cout
        layers += [nn.Conv2d(cin, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(128, num_classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def mobilenet(num_classes: int, in_channels: int = 3, se: bool = True) -> nn.Module:
    """A small MobileNetV2 (depthwise inverted residuals) with MobileNetV3 squeeze-excitation."""
    return MobileNet(num_classes, in_channels, se)
