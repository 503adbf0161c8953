"""Pruning torchvision's ResNet-18, MobileNetV2 and MobileNetV3-Small through the dependency graph.

Needs the ``vision`` extra (torchvision); ``.ci/run`` runs these in its second virtualenv. Random
data is enough here: what is checked is the removal (coupled shapes, MACs, ONNX bytes, parity and
the model file round trip), not accuracy (``benchmarks/prune_resnet.py`` measures that).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgec.compress.prune import prune
from edgec.configs import PruneConfig
from edgec.export.onnx import export_onnx
from edgec.models import ModelSpec, count_flops, load_model, save_model
from edgec.train import TrainConfig

torchvision = pytest.importorskip("torchvision", reason="needs torchvision (pip install 'edgec[vision]')")
pytestmark = [pytest.mark.vision, pytest.mark.usefixtures("one_torch_thread")]

SIZE = 32
FINETUNE = TrainConfig(epochs=0, lr=1e-2, optimizer="sgd", momentum=0.9, batch_size=16, scheduler="none")


def prune_half(name: str, in_channels: int = 3):
    spec = ModelSpec(f"torchvision:{name}", {}, in_channels, 10, SIZE)
    torch.manual_seed(0)
    model = spec.build()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, in_channels, SIZE, SIZE)).astype(np.float32)
    y = rng.integers(0, 10, size=32).astype(np.int64)
    settings = PruneConfig(target_flops=0.5, num_steps=1, finetune_batches=1, criterion_batches=1,
                           train=FINETUNE)
    small, small_spec, report = prune(model, spec, (x, y), (x[:16], y[:16]), settings, progress=False)
    ratio = count_flops(small, spec.input_shape()) / count_flops(model, spec.input_shape())
    assert 0.4 < ratio <= 0.5 and report["flops_ratio"] == pytest.approx(ratio)
    return model, spec, small, small_spec


def onnx_bytes(model: nn.Module, spec: ModelSpec, path) -> int:
    return export_onnx(model.eval(), spec.input_shape(), path, exporter="torchscript").stat().st_size


def check_file_and_onnx(model, spec, small, small_spec, tmp_path) -> None:
    assert onnx_bytes(small, spec, tmp_path / "s.onnx") < 0.8 * onnx_bytes(model, spec, tmp_path / "b.onnx")
    loaded, loaded_spec = load_model(save_model(small, small_spec, tmp_path / "s.safetensors"))
    x = torch.randn(2, *spec.input_shape())
    assert loaded_spec == small_spec and torch.allclose(loaded(x), small.eval()(x), atol=1e-5)


def test_resnet18_residual_channels_coupled(tmp_path):
    model, spec, small, small_spec = prune_half("resnet18", in_channels=1)
    assert small.conv1.in_channels == 1 and small.fc.out_features == 10
    for layer in (small.layer1, small.layer2, small.layer3, small.layer4):
        for blk in layer:
            stream = blk.downsample[0].out_channels if blk.downsample is not None else blk.conv1.in_channels
            assert blk.conv2.out_channels == blk.bn2.num_features == stream
            assert blk.conv1.out_channels == blk.conv2.in_channels
    assert small.fc.in_features == small.layer4[-1].conv2.out_channels
    check_file_and_onnx(model, spec, small, small_spec, tmp_path)


def _check_inverted_residuals(small) -> int:
    """Depthwise groups == channels, SE convs coupled to the gated maps; returns how many blocks."""
    from torchvision.ops.misc import SqueezeExcitation

    count = 0
    for block in small.features.modules():
        convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
        if not hasattr(block, "use_res_connect") or not convs:
            continue
        count += 1
        for dw in (c for c in convs if c.groups > 1):
            assert dw.groups == dw.in_channels == dw.out_channels
        for se in (m for m in block.modules() if isinstance(m, SqueezeExcitation)):
            assert se.fc1.in_channels == se.fc2.out_channels
            assert se.fc1.out_channels == se.fc2.in_channels
        if block.use_res_connect:
            assert convs[-1].out_channels == convs[0].in_channels
    return count


def test_mobilenet_v2_depthwise_coupled(tmp_path):
    model, spec, small, small_spec = prune_half("mobilenet_v2")
    assert _check_inverted_residuals(small) == 17
    check_file_and_onnx(model, spec, small, small_spec, tmp_path)


def test_mobilenet_v3_small_depthwise_and_se_coupled(tmp_path):
    model, spec, small, small_spec = prune_half("mobilenet_v3_small")
    assert _check_inverted_residuals(small) == 11
    assert small.classifier[-1].out_features == 10
    check_file_and_onnx(model, spec, small, small_spec, tmp_path)


@pytest.mark.parametrize("name", ["timm:mobilenetv3_small_100", "torchvision:efficientnet_b0"])
def test_other_cnns_lose_half_their_channels_and_rebuild(name, tmp_path):
    """Removal alone (no schedule): every group keeps every other channel; the MACs the cost model
    predicts are the pruned model's, and the model file rebuilds it (timm's BatchNormAct2d, SiLU SE)."""
    from edgec.compress.prune_dg import dg_channel_groups, dg_remove_channels
    from edgec.compress.prune_graph import CostModel

    if name.startswith("timm:"):
        pytest.importorskip("timm", reason="needs timm (pip install 'edgec[vision]')")
    spec = ModelSpec(name, {}, 3, 10, SIZE)
    model = spec.build().eval()
    groups = dg_channel_groups(model, spec.input_shape())
    keep = {g.name: list(range(0, g.size, 2)) for g in groups}
    small, small_spec = dg_remove_channels(model, spec, groups, keep)
    cost = CostModel(model, groups, spec.input_shape())
    assert cost.flops({g.name: len(keep[g.name]) for g in groups}) == count_flops(small, spec.input_shape())
    assert count_flops(small, spec.input_shape()) < 0.4 * count_flops(model, spec.input_shape())
    for conv in (m for m in small.modules() if isinstance(m, nn.Conv2d) and m.groups > 1):
        assert conv.groups == conv.in_channels == conv.out_channels
    check_file_and_onnx(model, spec, small, small_spec, tmp_path)
