"""The optional per-conv ``channels`` param: exact widths, clear errors, unchanged default specs."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from edgec.errors import ModelError
from edgec.models import ModelSpec, create_model, model_params
from edgec.models.registry import optional_params


def _widths(model: nn.Module) -> dict[str, int]:
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("name, params, channels", [
    ("teacher_cnn", {"width": 8, "depth": 2},
     {"features.block1.conv1": 3, "features.block1.conv2": 5, "features.block2.conv2": 7}),
    ("fitnet", {"widths": [4, 8], "convs_per_stage": 2},
     {"features.stage1.conv2": 2, "features.stage2.conv1": 5}),
    ("cifar_resnet", {"depth": 8, "width": 4},
     {"features.stage1.block1.conv1": 3, "features.stem.conv1": 6,
      "features.stage1.block1.conv2": 6, "features.stage3.block1.conv1": 1}),
])
def test_channels_override_exactly_the_named_convs(name, params, channels):
    default = _widths(create_model(name, in_channels=1, num_classes=4, input_size=8, **params))
    model = create_model(name, in_channels=1, num_classes=4, input_size=8, channels=channels,
                         **params)
    assert _widths(model) == {**default, **channels}
    # Inputs follow the previous layer's outputs, so the model runs and trains end to end.
    out = model(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 4)
    out.sum().backward()


def test_channels_is_optional_and_left_out_of_default_specs():
    assert "channels" not in model_params("fitnet") and optional_params("fitnet") == ("channels",)
    spec = ModelSpec("fitnet", {}, 1, 10, 8)
    assert "channels" not in spec.params
    assert ModelSpec("fitnet", {"channels": None}, 1, 10, 8) == spec   # None = unset
    pruned = ModelSpec("fitnet", {"channels": {"features.stage1.conv1": 3}}, 1, 10, 8)
    again = ModelSpec.from_dict(json.loads(json.dumps(pruned.to_dict())))
    assert again == pruned and _widths(again.build())["features.stage1.conv1"] == 3


def test_unknown_conv_name_suggests_the_closest():
    with pytest.raises(ModelError) as err:
        create_model("teacher_cnn", in_channels=1, num_classes=10, input_size=8,
                     channels={"features.block1.cnv2": 4})
    assert "did you mean 'features.block1.conv2'" in err.value.message
    assert "features.block1.conv1" in err.value.hint


@pytest.mark.parametrize("channels, fragment", [
    ([4, 4, 4], "mapping"),
    ({"features.stage1.conv1": 0}, ">= 1"),
    ({"features.stage1.conv1": 2.5}, ">= 1"),
])
def test_bad_channel_values(channels, fragment):
    with pytest.raises(ModelError, match=fragment):
        create_model("fitnet", in_channels=1, num_classes=10, input_size=8, channels=channels)


def test_resnet_convs_added_together_must_share_a_width():
    with pytest.raises(ModelError, match="same residual stream") as err:
        create_model("cifar_resnet", in_channels=3, num_classes=10, input_size=8, depth=8,
                     channels={"features.stage2.block1.conv2": 5})
    assert "features.stage2.block1.shortcut.conv" in err.value.message
    # Stage 1's identity shortcut stays an identity when the whole stream shrinks together.
    model = create_model("cifar_resnet", in_channels=3, num_classes=10, input_size=8, depth=8,
                         channels={"features.stem.conv1": 5, "features.stage1.block1.conv2": 5})
    assert isinstance(model.features.stage1.block1.shortcut, nn.Identity)


def test_optional_params_must_default_to_none():
    from edgec.models import register_model
    from edgec.models.registry import MODELS

    with pytest.raises(TypeError, match="must default to None"):
        register_model("_test_opt", optional=("hidden",))(
            lambda in_channels, num_classes, input_size, hidden=4: None)
    assert "_test_opt" not in MODELS
