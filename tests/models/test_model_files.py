"""Model files (.safetensors + spec) and user weight files."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from edgec.errors import ModelError
from edgec.models import (ModelSpec, create_model, load_model, load_state_dict_file, save_model)

FAMILIES = ("teacher_cnn", "fitnet", "cifar_resnet")


def _trained_like(spec: ModelSpec) -> nn.Module:
    """A model whose BN running stats are not the defaults, so a round trip really tests buffers."""
    torch.manual_seed(1)
    model = spec.build().train()
    with torch.no_grad():
        model(torch.randn(8, *spec.input_shape()))
    return model.eval()


@pytest.mark.parametrize("name", FAMILIES)
def test_round_trip_gives_identical_outputs_and_spec(tmp_path, name):
    spec = ModelSpec(name, {}, in_channels=1, num_classes=10, input_size=8)
    model = _trained_like(spec)
    path = save_model(model, spec, tmp_path / "m.safetensors", {"dataset": "digits"})
    loaded, loaded_spec = load_model(path)
    assert loaded_spec == spec and not loaded.training
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(loaded(x), model(x))
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]   # no temp leftovers
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
    assert meta["dataset"] == "digits"
    assert json.loads(meta["edgec_model_spec"])["name"] == name


def test_spec_completes_defaults_and_survives_json():
    spec = ModelSpec("fitnet", {"widths": (4, 8)}, 3, 5, [16, 16])
    assert spec.params == {"widths": [4, 8], "convs_per_stage": 3, "fc": 0}
    assert spec.input_size == (16, 16) and spec.input_shape() == (3, 16, 16)
    again = ModelSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.build()(torch.zeros(1, 3, 16, 16)).shape == (1, 5)


def test_spec_rejects_bad_input():
    with pytest.raises(ModelError, match="did you mean 'depth'"):
        ModelSpec("cifar_resnet", {"dept": 20}, 3, 10, 32)
    with pytest.raises(ModelError, match="unknown model"):
        ModelSpec.from_dict({"name": "resnet", "params": {}, "in_channels": 3, "num_classes": 10,
                             "input_size": [32, 32]})
    with pytest.raises(ModelError, match="missing"):
        ModelSpec.from_dict({"name": "fitnet"})
    with pytest.raises(ModelError, match="version"):
        ModelSpec.from_dict({**ModelSpec("fitnet", {}, 1, 2, 8).to_dict(), "version": 99})


def test_non_contiguous_and_shared_tensors_are_saved(tmp_path):
    spec = ModelSpec("fitnet", {}, 1, 10, 8)
    model = spec.build()
    out = model.classifier.out
    out.bias.data = out.weight.data[:, 0]          # a strided view sharing the weight's storage
    path = save_model(model, spec, tmp_path / "m.safetensors")
    loaded, _ = load_model(path)
    assert torch.equal(loaded.classifier.out.bias, out.weight[:, 0])


@pytest.mark.parametrize("cut", ["half", "header", "garbage", "empty"])
def test_corrupt_or_truncated_file_is_model_error_naming_it(tmp_path, cut):
    spec = ModelSpec("fitnet", {}, 1, 10, 8)
    good = save_model(spec.build(), spec, tmp_path / "good.safetensors").read_bytes()
    blob = {"half": good[: len(good) // 2], "header": good[:20], "garbage": b"not a model" * 9,
            "empty": b""}[cut]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(blob)
    with pytest.raises(ModelError, match="bad.safetensors") as err:
        load_model(bad)
    assert err.value.hint


def test_missing_file_and_plain_safetensors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, plain)
    with pytest.raises(ModelError, match="not an edgec model file"):
        load_model(plain)


def _write_with_spec(path, tensors, spec):
    save_file(tensors, path, metadata={"edgec_model_spec": json.dumps(spec.to_dict())})


def test_wrong_architecture_is_model_error_saying_what(tmp_path):
    small = ModelSpec("fitnet", {}, 1, 10, 8)
    big = ModelSpec("fitnet", {"widths": [8, 16, 64]}, 1, 10, 8)
    tensors = {k: v.contiguous() for k, v in big.build().state_dict().items()}
    _write_with_spec(tmp_path / "shape.safetensors", tensors, small)
    with pytest.raises(ModelError, match=r"shape mismatch: features\.stage3\.conv1\.weight"):
        load_model(tmp_path / "shape.safetensors")

    fewer = {k: v for k, v in small.build().state_dict().items() if "stage3.conv3" not in k}
    _write_with_spec(tmp_path / "missing.safetensors", fewer, small)
    with pytest.raises(ModelError, match=r"missing keys: features\.stage3\.conv3\.weight"):
        load_model(tmp_path / "missing.safetensors")

    more = {**small.build().state_dict(), "extra.weight": torch.zeros(3)}
    _write_with_spec(tmp_path / "extra.safetensors", more, small)
    with pytest.raises(ModelError, match=r"unexpected keys: extra\.weight"):
        load_model(tmp_path / "extra.safetensors")


def test_save_refuses_a_model_that_does_not_fit_its_spec(tmp_path):
    model = create_model("fitnet", in_channels=1, num_classes=10, input_size=8, widths=[4, 8, 16])
    with pytest.raises(ModelError, match="does not match its spec"):
        save_model(model, ModelSpec("fitnet", {}, 1, 10, 8), tmp_path / "m.safetensors")
    assert not any(tmp_path.iterdir())


def test_save_argument_checks(tmp_path):
    spec = ModelSpec("fitnet", {}, 1, 10, 8)
    model = spec.build()
    with pytest.raises(ModelError, match=".safetensors"):
        save_model(model, spec, tmp_path / "m.pt")
    with pytest.raises(ModelError, match="str to str"):
        save_model(model, spec, tmp_path / "m.safetensors", {"epoch": 3})
    with pytest.raises(ModelError, match="reserved"):
        save_model(model, spec, tmp_path / "m.safetensors", {"edgec_model_spec": "{}"})


def test_save_overwrites_atomically(tmp_path):
    spec = ModelSpec("fitnet", {}, 1, 10, 8)
    path = tmp_path / "m.safetensors"
    save_model(spec.build(), spec, path)
    second = spec.build()
    save_model(second, spec, path)
    loaded, _ = load_model(path)
    assert torch.equal(loaded.classifier.out.weight, second.classifier.out.weight)
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


# ---- load_state_dict_file ---------------------------------------------------------------------

def _reference():
    torch.manual_seed(0)
    return create_model("cifar_resnet", in_channels=1, num_classes=10, input_size=8, depth=8)


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_load_state_dict_file_torch_formats(tmp_path, suffix):
    model = _reference()
    path = tmp_path / f"w{suffix}"
    torch.save(model.state_dict(), path)
    state = load_state_dict_file(path)
    fresh = create_model("cifar_resnet", in_channels=1, num_classes=10, input_size=8, depth=8)
    fresh.load_state_dict(state, strict=True)
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(fresh.eval()(x), model.eval()(x))


def test_load_state_dict_file_unwraps_checkpoints_and_dataparallel(tmp_path):
    model = _reference()
    wrapped = {"epoch": 7, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ckpt.pt")
    state = load_state_dict_file(tmp_path / "ckpt.pt")
    assert state.keys() == model.state_dict().keys()


def test_load_state_dict_file_safetensors(tmp_path):
    model = _reference()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors")
    state = load_state_dict_file(tmp_path / "w.safetensors")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # an edgec model file is also a valid weights file
    spec = ModelSpec("fitnet", {}, 1, 10, 8)
    path = save_model(spec.build(), spec, tmp_path / "m.safetensors")
    assert "features.stage1.conv1.weight" in load_state_dict_file(path)


class _NotATensor:
    pass


def test_load_state_dict_file_refuses_pickled_objects_and_bad_files(tmp_path):
    torch.save(_reference(), tmp_path / "whole_model.pt")              # a pickled nn.Module
    with pytest.raises(ModelError, match="will not unpickle") as err:
        load_state_dict_file(tmp_path / "whole_model.pt")
    assert "state_dict()" in err.value.hint
    torch.save({"w": _NotATensor()}, tmp_path / "obj.pt")
    with pytest.raises(ModelError, match="will not unpickle"):
        load_state_dict_file(tmp_path / "obj.pt")
    torch.save({"lr": 0.1, "steps": [1, 2]}, tmp_path / "nostate.pt")
    with pytest.raises(ModelError, match="does not hold a state dict"):
        load_state_dict_file(tmp_path / "nostate.pt")
    good = tmp_path / "w.pt"
    torch.save(_reference().state_dict(), good)
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:100])
    with pytest.raises(ModelError, match="trunc.pt"):
        load_state_dict_file(tmp_path / "trunc.pt")
    (tmp_path / "w.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="unsupported"):
        load_state_dict_file(tmp_path / "w.onnx")
    with pytest.raises(ModelError, match="not found"):
        load_state_dict_file(tmp_path / "missing.pt")
