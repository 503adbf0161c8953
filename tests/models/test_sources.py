"""Model sources without torchvision/timm: the ``python:`` form on realistic topologies, weights
loading with stem/classifier adaptation, errors, and a whole build with the user's own models."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from torch import nn

from edgec.errors import ModelError, RecipeError
from edgec.models import ModelSpec, load_model, load_state_dict_file, save_model, sources
from edgec.recipe import load_recipe, parse_recipe
from tests.pipeline_helpers import write_recipe

RESNET = "python:tests.realistic_models:resnet"
MOBILENET = "python:tests.realistic_models:mobilenet"


def test_kind_and_name_forms():
    assert [sources.kind(n) for n in ("fitnet", "torchvision:resnet18", "timm:resnet18", RESNET)] == [
        "builtin", "torchvision", "timm", "python"]
    assert sources.check_name("python:pkg.sub.models:build") == "python:pkg.sub.models:build"
    for bad, why in [("pytorch:resnet18", "unknown model source 'pytorch'"),
                     ("python:pkg.models", "python:package.module:function"),
                     ("python:os.system('x'):f", "python:package.module:function"),
                     ("torchvision:", "torchvision:MODEL_NAME"), ("", "a model name is required")]:
        with pytest.raises(ValueError, match=__import__("re").escape(why)):
            sources.check_name(bad)


@pytest.mark.parametrize("name,in_ch,size", [(RESNET, 1, (8, 8)), (MOBILENET, 3, (32, 32)), (MOBILENET, 1, (28, 28))])
def test_python_models_build_with_the_data_shape_and_round_trip_files(tmp_path, name, in_ch, size):
    spec = ModelSpec(name, {}, in_channels=in_ch, num_classes=7, input_size=size)
    model = spec.build().eval()
    assert model(torch.randn(3, in_ch, *size)).shape == (3, 7)
    assert ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    path = save_model(model, spec, tmp_path / "m.safetensors")
    loaded, spec2 = load_model(path)
    assert spec2 == spec
    x = torch.randn(2, in_ch, *size)
    assert torch.equal(loaded(x), model(x))


def test_python_params_reach_the_factory_and_in_channels_only_when_accepted(tmp_path, monkeypatch):
    (tmp_path / "user_models_a.py").write_text(textwrap.dedent("""
        from torch import nn
        CALLS = []
        def only_classes(num_classes, width=4):
            CALLS.append(dict(num_classes=num_classes, width=width))
            return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, num_classes))
        def not_a_module(num_classes):
            return "model"
        def broken(num_classes):
            raise ValueError("width must be even")
        def no_classes(width=3):
            return nn.Linear(64, 10)
        def wrong_output(num_classes):
            return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes + 1))
    """))
    sources.add_search_dir(tmp_path)
    model = sources.build_model("python:user_models_a:only_classes", in_channels=1, num_classes=5,
                                input_size=(8, 8), params={"width": 9})
    import user_models_a
    assert user_models_a.CALLS[-1] == {"num_classes": 5, "width": 9}  # no in_channels/input_size: not accepted
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 5)
    cases = [("python:user_models_a:not_a_module", {}, "returned a str, not a torch nn.Module"),
             ("python:user_models_a:broken", {}, "raised ValueError: width must be even"),
             ("python:user_models_a:no_classes", {}, "does not take num_classes"),
             ("python:user_models_a:wrong_output", {}, r"returns \(2, 6\).*\(2, 5\)"),
             ("python:user_models_a:only_clases", {}, "has no attribute 'only_clases'"),
             ("python:user_models_a:only_classes", {"num_classes": 3}, "set by edgec from the data"),
             ("python:no_such_user_pkg.models:build", {}, "no module named 'no_such_user_pkg.models'")]
    for name, params, message in cases:
        with pytest.raises(ModelError, match=message) as info:
            sources.build_model(name, in_channels=1, num_classes=5, input_size=(8, 8), params=params)
        assert info.value.hint
    with pytest.raises(ModelError) as info:
        sources.build_model("python:user_models_a:only_clases", in_channels=1, num_classes=5, input_size=(8, 8),
                            params={})
    assert "did you mean 'only_classes'" in info.value.hint


def test_a_recipe_files_folder_is_searched_and_the_module_digest_tracks_edits(tmp_path):
    (tmp_path / "user_models_b.py").write_text("from torch import nn\n"
                                               "def build(num_classes, in_channels, input_size):\n"
                                               "    h, w = input_size\n"
                                               "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels*h*w, num_classes))\n")
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("edgec: 1\nstudent: {model: 'python:user_models_b:build'}\n")
    recipe = load_recipe(recipe_file)
    spec = ModelSpec(recipe.student.model, {}, in_channels=2, num_classes=3, input_size=(4, 4))
    assert spec.build()(torch.zeros(1, 2, 4, 4)).shape == (1, 3)
    before = sources.source_digest(recipe.student.model)
    (tmp_path / "user_models_b.py").write_text((tmp_path / "user_models_b.py").read_text() + "# edited\n")
    assert sources.source_digest(recipe.student.model) != before
    assert sources.source_digest("fitnet") is None


def test_recipe_checks_model_sources_and_pretrained():
    with pytest.raises(RecipeError, match="unknown model source 'tv'"):
        parse_recipe({"edgec": 1, "teacher": {"model": "tv:resnet18"}})
    with pytest.raises(RecipeError, match="pretrained: true is for torchvision: and timm: models"):
        parse_recipe({"edgec": 1, "student": {"model": RESNET, "pretrained": True}})
    with pytest.raises(RecipeError, match="either pretrained: true or weights"):
        parse_recipe({"edgec": 1, "teacher": {"model": "timm:resnet18", "pretrained": True, "weights": "t.pt"}})
    r = parse_recipe({"edgec": 1, "teacher": {"model": "torchvision:resnet18", "pretrained": True},
                      "student": {"model": MOBILENET, "weights": "s.safetensors"}})
    assert r.teacher.pretrained and r.student.weights == "s.safetensors"


def _imagenet_like_resnet() -> nn.Module:
    from tests.realistic_models import resnet
    return resnet(num_classes=1000, in_channels=3, widths=[8, 16])


def test_weights_from_another_task_adapt_the_stem_and_reinitialise_the_classifier(tmp_path):
    src = _imagenet_like_resnet()
    torch.save({"state_dict": src.state_dict(), "epoch": 90}, tmp_path / "imagenet.pt")
    state = load_state_dict_file(tmp_path / "imagenet.pt")
    from tests.realistic_models import resnet
    target = resnet(num_classes=10, in_channels=1, widths=[8, 16])
    fresh_fc = target.fc.weight.detach().clone()
    notes = sources.load_weights(target, state, source="imagenet.pt", num_classes=10, allow_new_head=True)
    assert any("stem conv1: 3-channel filters adapted to 1" in n for n in notes)
    assert any("classifier fc" in n and "1000 classes" in n for n in notes)
    assert torch.allclose(target.conv1.weight, src.conv1.weight.sum(dim=1, keepdim=True))
    assert torch.equal(target.layers[0][0].conv1.weight, src.layers[0][0].conv1.weight)
    assert torch.equal(target.fc.weight, fresh_fc)  # left as initialised: it is trained
    # A trained teacher's weights must fit exactly: no new classifier.
    with pytest.raises(ModelError, match=r"shape mismatch: fc.weight: file \(1000, 16\)"):
        sources.load_weights(resnet(num_classes=10, in_channels=3, widths=[8, 16]), state, source="t.pt",
                             num_classes=10, allow_new_head=False)
    # Anything else that differs is an error that names it.
    with pytest.raises(ModelError, match=r"shape mismatch: conv1.weight: file \(8, 3, 3, 3\) vs model \(4, 3, 3, 3\)"):
        sources.load_weights(resnet(num_classes=10, in_channels=3, widths=[4, 16]), state, source="t.pt",
                             num_classes=10, allow_new_head=True)
    partial = {k: v for k, v in state.items() if not k.startswith("layers.1.")}
    with pytest.raises(ModelError, match="missing keys: layers.1"):
        sources.load_weights(resnet(num_classes=1000, in_channels=3, widths=[8, 16]), partial, source="t.pt",
                             num_classes=1000, allow_new_head=True)


def test_pretrained_is_refused_for_python_models():
    with pytest.raises(ModelError, match="for torchvision: and timm: models"):
        sources.pretrained_state_dict(RESNET, in_channels=1, num_classes=10, params={})


def test_missing_vision_library_names_the_extra(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name == "torchvision" or name.startswith("torchvision."):
            raise ImportError("No module named 'torchvision'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    monkeypatch.delitem(__import__("sys").modules, "torchvision", raising=False)
    with pytest.raises(ModelError) as info:
        sources.build_model("torchvision:resnet18", in_channels=3, num_classes=10, input_size=(32, 32), params={})
    assert 'pip install "edgec[vision]"' in info.value.hint and "torchvision" in info.value.message


@pytest.mark.slow
def test_build_with_the_users_own_resnet_teacher_and_mobilenet_student(tmp_path):
    """The whole chain (train, KD, FitNets-free export, INT8, verify) on realistic user topologies,
    with the student starting from a weights file."""
    from edgec.pipeline import build
    from tests.realistic_models import mobilenet

    init = mobilenet(num_classes=4, in_channels=1)
    torch.save(init.state_dict(), tmp_path / "student_init.pt")
    recipe = write_recipe(
        tmp_path,
        teacher={"model": RESNET, "params": {"widths": [8, 16]},
                 "train": {"epochs": 2, "batch_size": 64, "lr": 0.003}},
        student={"model": MOBILENET, "params": {}, "weights": str(tmp_path / "student_init.pt")},
        distill={"method": "kd", "train": {"epochs": 4, "batch_size": 32, "lr": 0.01}})
    result = build(recipe, out=tmp_path / "run", progress=False)
    teacher, _ = load_model(result.artifacts["teacher"].file("teacher.safetensors"))
    student, spec = load_model(result.artifacts["distill"].file("student.safetensors"))
    assert (type(teacher).__name__, type(student).__name__, spec.name) == ("ResNet", "MobileNet", MOBILENET)
    acc = {k: m["accuracy"] for k, m in result.report["models"].items()}
    assert acc["teacher"] > 0.5 and acc["student"] > 0.4  # 4 classes: chance is 0.25
    assert acc["student_fp32_onnx"] == pytest.approx(acc["student"], abs=0.01)
    assert acc["student_int8"] >= acc["student_fp32_onnx"] - 0.05
