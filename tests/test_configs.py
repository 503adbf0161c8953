"""edgec.configs: one class per method, shared by the recipe and the library."""

from __future__ import annotations

import hashlib
import json

import pytest

from edgec.configs import (BinaryConnectConfig, EngineConfig, PruneConfig, PtqConfig, QatConfig,
                           StochasticRoundingConfig, TensorRTSettings, TextTeacherConfig, TrainConfig, quantize_config)
from edgec.errors import RecipeError
from edgec.recipe import parse_recipe


def test_the_recipe_sections_are_the_library_classes():
    r = parse_recipe({"edgec": 1, "quantize": {"method": "binaryconnect", "bits": 1}, "prune": {"enabled": True}})
    assert type(r.teacher.train) is TrainConfig and type(r.prune) is PruneConfig and type(r.engine) is EngineConfig
    assert type(r.quantize) is BinaryConnectConfig and isinstance(r.engine, TensorRTSettings)
    assert type(parse_recipe({"edgec": 1}).quantize) is PtqConfig  # method left out: PTQ
    assert type(r.text.teacher) is TextTeacherConfig


@pytest.mark.parametrize("data, cls", [({}, PtqConfig), ({"method": "qat"}, QatConfig),
                                       ({"method": "stochastic_rounding", "bits": 2}, StochasticRoundingConfig)])
def test_quantize_method_picks_the_class(data, cls):
    assert type(quantize_config(data)) is cls


def test_each_quantize_method_takes_only_its_own_fields():
    with pytest.raises(RecipeError, match=r"quantize\.calibration: unknown field \(a setting of quantize\.method ptq, "
                                          r"not of qat\)"):
        parse_recipe({"edgec": 1, "quantize": {"method": "qat", "calibration": {}}})
    with pytest.raises(RecipeError, match=r"quantize\.train: unknown field .*not of ptq"):
        parse_recipe({"edgec": 1, "quantize": {"train": {"epochs": 1}}})
    with pytest.raises(RecipeError, match="quantize.method must be one of"):
        parse_recipe({"edgec": 1, "quantize": {"method": "int4"}})
    with pytest.raises(RecipeError, match="bits"):
        quantize_config({"method": "qat", "bits": 4})


def test_built_in_python_a_bad_value_is_a_recipe_error_naming_the_field():
    with pytest.raises(RecipeError) as err:
        TrainConfig(lr=0, optimizer="sgdd")
    assert "lr=0" in err.value.message and "optimizer='sgdd'" in err.value.message
    assert "did you mean 'sgd'" in err.value.hint
    with pytest.raises(RecipeError, match="min <= opt <= max"):
        TensorRTSettings(min_batch=4, opt_batch=2)
    with pytest.raises(RecipeError, match="unknown setting"):
        PruneConfig(target=0.5)


def test_the_seed_comes_from_the_recipe_and_keeps_the_fingerprint():
    cfg = TrainConfig(epochs=3).with_seed(7)
    assert cfg.seed == 7 and "seed" not in cfg.model_dump()  # dumps (sections, cache keys) never state it
    # The checkpoint fingerprint is the one the former dataclass gave (old checkpoints still resume).
    fields = {**cfg.model_dump(), "seed": 7}
    old = hashlib.sha256(json.dumps(["edgec.train.config/1", fields], sort_keys=True).encode()).hexdigest()[:16]
    assert cfg.fingerprint() == old and cfg.fingerprint() != TrainConfig(epochs=3).fingerprint()
    with pytest.raises(RecipeError, match="teacher.train.seed"):
        parse_recipe({"edgec": 1, "teacher": {"train": {"seed": 3}}})
    section = parse_recipe({"edgec": 1}).teacher.train.model_dump()
    assert parse_recipe({"edgec": 1, "teacher": {"train": section}}).teacher.train == TrainConfig(**section)


def test_tensorrt_settings_of_the_engine_section():
    spec = EngineConfig(max_batch=32, fp16=True, cuda_graph=True, backend="onnxruntime")
    settings = TensorRTSettings.from_spec(spec)
    assert type(settings) is TensorRTSettings and settings.max_batch == 32 and settings.fp16
    assert spec.to_dict() == settings.to_dict() and "cuda_graph" not in settings.to_dict()
