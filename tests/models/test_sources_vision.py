"""torchvision: and timm: model sources, for real (the ``vision`` extra; ``.ci/run`` runs these in its
second virtualenv, where torch and torchvision are a matched pair). Skipped, with the reason, where
torchvision or timm is absent or does not load next to the installed torch."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from edgec.errors import ModelError
from edgec.models import ModelSpec, load_model, save_model, sources

pytestmark = pytest.mark.vision


def _load(module: str):
    try:
        return pytest.importorskip(module, reason=f"{module} is not installed (the vision extra)")
    except RuntimeError as exc:  # a CUDA torchvision next to a CPU torch: its C++ ops do not load
        pytest.skip(f"{module} does not load next to torch {torch.__version__}: {exc}")


@pytest.fixture(scope="module")
def tv():
    return _load("torchvision")


@pytest.fixture(scope="module")
def timm():
    _load("torchvision")
    return _load("timm")


@pytest.mark.parametrize("name,in_ch,size", [("torchvision:resnet18", 1, (32, 32)),
                                             ("torchvision:mobilenet_v2", 3, (32, 32)),
                                             ("torchvision:mobilenet_v3_small", 1, (64, 64))])
def test_torchvision_models_take_the_datas_classes_and_channels(tv, tmp_path, name, in_ch, size):
    spec = ModelSpec(name, {}, in_channels=in_ch, num_classes=10, input_size=size)
    model = spec.build().eval()
    assert sources.first_conv(model)[1].in_channels == in_ch  # stem replaced for 1-channel data
    assert model(torch.randn(2, in_ch, *size)).shape == (2, 10)
    path = save_model(model, spec, tmp_path / "m.safetensors")
    loaded, _ = load_model(path)
    x = torch.randn(2, in_ch, *size)
    assert torch.equal(loaded(x), model(x))


def test_torchvision_params_reach_the_constructor(tv):
    model = sources.build_model("torchvision:mobilenet_v2", in_channels=3, num_classes=4, input_size=(32, 32),
                                params={"width_mult": 0.5})
    assert model.features[0][0].out_channels == 16  # 32 * 0.5
    with pytest.raises(ModelError, match="bad params"):
        sources.build_model("torchvision:resnet18", in_channels=3, num_classes=4, input_size=(32, 32),
                            params={"widht": 2})


def test_timm_model_with_one_input_channel(timm):
    spec = ModelSpec("timm:mobilenetv3_small_100", {"drop_rate": 0.1}, in_channels=1, num_classes=6,
                     input_size=(32, 32))
    model = spec.build().eval()
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 6)
    assert sources.first_conv(model)[1].in_channels == 1


def test_unknown_library_names_suggest_the_closest(tv, timm):
    with pytest.raises(ModelError, match="unknown torchvision model 'resnet19'") as info:
        sources.build_model("torchvision:resnet19", in_channels=3, num_classes=4, input_size=(32, 32), params={})
    assert "did you mean 'resnet18'" in info.value.hint
    with pytest.raises(ModelError, match="unknown timm model") as info:
        sources.build_model("timm:mobilenetv3_smal_100", in_channels=3, num_classes=4, input_size=(32, 32), params={})
    assert "mobilenetv3_small_100" in info.value.hint


def test_pretrained_without_network_is_a_clear_error(tv, timm, monkeypatch):
    import timm.models._builder as builder
    import torchvision.models._api as api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(api, "load_state_dict_from_url", offline)
    monkeypatch.setattr(builder, "load_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    for name in ("torchvision:resnet18", "timm:mobilenetv3_small_100"):
        with pytest.raises(ModelError, match=f"cannot get the pretrained weights of {name}") as info:
            sources.pretrained_state_dict(name, in_channels=1, num_classes=10, params={})
        assert "no internet access" in info.value.hint and "weights: FILE" in info.value.hint


def test_torchvision_pretrained_weights_are_adapted_to_the_data(tv, monkeypatch):
    """The real torchvision weights path (WeightsEnum -> state dict), with the download replaced by
    an ImageNet-shaped state dict: the stem is summed to 1 channel, the 1000-class head reset."""
    import torchvision.models._api as api

    imagenet = tv.models.resnet18(num_classes=1000).state_dict()
    monkeypatch.setattr(api, "load_state_dict_from_url", lambda *a, **k: imagenet)
    state = sources.pretrained_state_dict("torchvision:resnet18", in_channels=1, num_classes=10, params={})
    model = sources.build_model("torchvision:resnet18", in_channels=1, num_classes=10, input_size=(32, 32), params={})
    notes = sources.load_weights(model, state, source="pretrained", num_classes=10, allow_new_head=True)
    assert any("stem conv1" in n for n in notes) and any("classifier fc" in n for n in notes)
    assert torch.allclose(model.conv1.weight, imagenet["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.layer4[1].conv2.weight, imagenet["layer4.1.conv2.weight"])


def test_fitnets_between_torchvision_teacher_and_student_on_named_layers(tv):
    from edgec.compress.hints import FitNets

    teacher = sources.build_model("torchvision:resnet18", in_channels=1, num_classes=10, input_size=(32, 32), params={})
    student = sources.build_model("torchvision:mobilenet_v2", in_channels=1, num_classes=10, input_size=(32, 32),
                                  params={})
    x = torch.randn(4, 1, 32, 32)
    method = FitNets(teacher, student, hint_layer="layer2", guided_layer="features.6")
    method.bind(x)
    from edgec.compress.features import capture
    hint = capture(teacher, x, ["layer2"])[0]["layer2"]
    guided = capture(student, x, ["features.6"])[0]["features.6"]
    assert method.regressor(guided).shape == hint.shape
    from edgec.errors import RecipeError
    with pytest.raises(RecipeError) as info:
        FitNets(teacher, student, hint_layer="layer5", guided_layer="features.6")
    assert "did you mean 'layer" in info.value.hint


@pytest.mark.slow
def test_build_with_torchvision_teacher_and_timm_student(tv, timm, tmp_path):
    from edgec.pipeline import build
    from tests.pipeline_helpers import write_recipe

    recipe = write_recipe(
        tmp_path,
        teacher={"model": "torchvision:resnet18", "params": {},
                 "train": {"epochs": 2, "batch_size": 32, "lr": 0.003, "max_batches_per_epoch": 8}},
        student={"model": "timm:mobilenetv3_small_100", "params": {}},
        distill={"method": "kd", "train": {"epochs": 2, "batch_size": 32, "lr": 0.003, "max_batches_per_epoch": 8}},
        bench={"enabled": False})
    result = build(recipe, out=tmp_path / "run", progress=False)
    _, spec = load_model(result.artifacts["distill"].file("student.safetensors"))
    assert spec.name == "timm:mobilenetv3_small_100"
    models = result.report["models"]
    assert set(models) >= {"teacher", "student", "student_fp32_onnx", "student_int8"}
    assert models["student_fp32_onnx"]["accuracy"] == pytest.approx(models["student"]["accuracy"], abs=0.01)
    assert models["teacher"]["params"] > 10_000_000  # a real ResNet-18
