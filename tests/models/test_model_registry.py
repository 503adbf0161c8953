"""Registry: names, params, suggestions and value checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgec.errors import ModelError
from edgec.models import create_model, list_models, model_params, register_model
from edgec.models.registry import MODELS

FAMILIES = ("teacher_cnn", "fitnet", "cifar_resnet")


def test_list_models_has_families_with_one_line_descriptions():
    models = list_models()
    assert set(FAMILIES) <= set(models)
    for name in FAMILIES:
        assert models[name] and "\n" not in models[name]
    assert models["cifar_resnet"].startswith("He et al.'s CIFAR ResNet")


def test_model_params_reports_signature_defaults():
    assert model_params("teacher_cnn") == {"width": 32, "depth": 3, "fc": 128, "dropout": 0.0,
                                           "convs_per_block": 2}
    assert model_params("fitnet") == {"widths": (8, 16, 32), "convs_per_stage": 3, "fc": 0}
    assert model_params("cifar_resnet") == {"depth": 20, "width": 16}


def test_unknown_name_suggests_closest_and_lists_names():
    with pytest.raises(ModelError) as err:
        create_model("fitnett", in_channels=1, num_classes=10, input_size=8)
    assert "did you mean 'fitnet'" in err.value.message
    assert all(name in err.value.hint for name in FAMILIES)
    with pytest.raises(ModelError, match="did you mean 'cifar_resnet'"):
        model_params("cifar_resnt")


def test_unknown_param_names_it_the_accepted_ones_and_the_closest():
    with pytest.raises(ModelError) as err:
        create_model("cifar_resnet", in_channels=3, num_classes=10, input_size=32, widht=8)
    assert "'widht'" in err.value.message and "did you mean 'width'" in err.value.message
    assert "depth" in err.value.hint and "width" in err.value.hint


@pytest.mark.parametrize("name, params, fragment", [
    ("cifar_resnet", {"depth": 21}, r"6n\+2"),
    ("cifar_resnet", {"depth": 4}, "depth"),
    ("teacher_cnn", {"width": 0}, "width"),
    ("teacher_cnn", {"depth": 2.5}, "depth"),
    ("teacher_cnn", {"dropout": 1.0}, "dropout"),
    ("teacher_cnn", {"fc": True}, "fc"),
    ("fitnet", {"widths": []}, "widths"),
    ("fitnet", {"widths": [8, -1]}, "widths"),
    ("fitnet", {"convs_per_stage": 0}, "convs_per_stage"),
])
def test_invalid_values_raise_model_error(name, params, fragment):
    with pytest.raises(ModelError, match=fragment):
        create_model(name, in_channels=1, num_classes=10, input_size=8, **params)


def test_depth_hint_suggests_valid_depths():
    with pytest.raises(ModelError) as err:
        create_model("cifar_resnet", in_channels=3, num_classes=10, input_size=32, depth=21)
    assert "20" in err.value.hint and "26" in err.value.hint


@pytest.mark.parametrize("kwargs", [
    {"in_channels": 0, "num_classes": 10, "input_size": 8},
    {"in_channels": 1, "num_classes": 0, "input_size": 8},
    {"in_channels": 1, "num_classes": 10, "input_size": (8,)},
    {"in_channels": 1, "num_classes": 10, "input_size": "8"},
])
def test_bad_data_shape_arguments(kwargs):
    with pytest.raises(ModelError):
        create_model("fitnet", **kwargs)


def test_non_square_input_size_and_list_widths():
    model = create_model("fitnet", in_channels=1, num_classes=4, input_size=[8, 12], widths=[4, 8])
    assert model(torch.randn(2, 1, 8, 12)).shape == (2, 4)


def test_register_model_custom_family_and_guards():
    @register_model("_test_tiny")
    def tiny(in_channels, num_classes, input_size, hidden: int = 4):
        """A tiny test model.

        More text that is not part of the description.
        """
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size[0] * input_size[1],
                                                     num_classes))

    try:
        assert list_models()["_test_tiny"] == "A tiny test model."
        assert model_params("_test_tiny") == {"hidden": 4}
        model = create_model("_test_tiny", in_channels=1, num_classes=3, input_size=4)
        assert model(torch.zeros(1, 1, 4, 4)).shape == (1, 3)
        with pytest.raises(ValueError, match="already registered"):
            register_model("_test_tiny")(tiny)
    finally:
        MODELS.unregister("_test_tiny")

    with pytest.raises(TypeError, match="needs a default"):
        register_model("_test_bad")(lambda in_channels, num_classes, input_size, width: None)
    with pytest.raises(TypeError, match="must start with"):
        register_model("_test_bad")(lambda num_classes, in_channels, input_size: None)
    assert "_test_bad" not in list_models()
