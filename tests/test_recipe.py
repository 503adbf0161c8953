"""Recipe schema: valid recipes load, every kind of mistake gets a precise message."""

from __future__ import annotations

import pytest

from edgec.errors import RecipeError
from edgec.recipe import Recipe, builtin_recipes, load_recipe, parse_recipe


def test_builtin_recipes_load_and_validate():
    names = builtin_recipes()
    assert "digits" in names and "mnist" in names
    for name in names:
        recipe = load_recipe(name)
        assert isinstance(recipe, Recipe) and recipe.edgec == 1
    d = load_recipe("digits")
    assert d.data.name == "digits" and d.student.model == "fitnet" and d.distill.method == "kd"


def test_defaults_fill_every_section():
    r = parse_recipe({"edgec": 1})
    assert r.quantize.calibration.method == "percentile"
    assert r.export.dynamic_batch is True
    assert r.engine.backend == "auto"


def test_data_override():
    r = load_recipe("mnist", data_path="/some/where")
    assert r.data.path == "/some/where"


def test_unknown_recipe_name_suggests_closest():
    with pytest.raises(RecipeError) as e:
        load_recipe("digts")
    assert "unknown recipe 'digts'" in str(e.value)
    assert "did you mean 'digits'" in str(e.value)


def test_unknown_field_gives_path_and_closest_name():
    with pytest.raises(RecipeError) as e:
        parse_recipe({"edgec": 1, "distill": {"params": {}, "temprature": 3}}, source="r.yaml")
    assert "r.yaml: distill.temprature: unknown field" in str(e.value)
    with pytest.raises(RecipeError) as e:
        parse_recipe({"edgec": 1, "quantize": {"calibraton": {}}})
    assert "quantize.calibraton: unknown field (did you mean 'calibration'?)" in str(e.value)


def test_wrong_type_names_field_and_expectation():
    with pytest.raises(RecipeError) as e:
        parse_recipe({"edgec": 1, "teacher": {"train": {"epochs": "many"}}})
    msg = str(e.value)
    assert "teacher.train.epochs" in msg and "integer" in msg and "'many'" in msg


def test_bad_enum_value_lists_choices():
    with pytest.raises(RecipeError) as e:
        parse_recipe({"edgec": 1, "quantize": {"calibration": {"method": "kl"}}})
    msg = str(e.value)
    assert "quantize.calibration.method" in msg and "'entropy'" in msg


def test_schema_version_required_and_checked():
    with pytest.raises(RecipeError, match="edgec: 1"):
        parse_recipe({"data": {}})
    with pytest.raises(RecipeError, match="schema version 1"):
        parse_recipe({"edgec": 2})


def test_yaml_syntax_error_gives_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("edgec: 1\ndata:\n  name: digits\n teacher: [oops\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    assert "YAML syntax error at line 4" in str(e.value)


def test_yaml_tags_are_not_executed(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("edgec: 1\nname: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError, match="YAML"):
        load_recipe(p)


def test_missing_recipe_file():
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe("no/such/recipe.yaml")


def test_prune_target_ratio_must_be_below_one():
    with pytest.raises(RecipeError) as e:
        parse_recipe({"edgec": 1, "prune": {"enabled": True, "target_flops": 1.5}})
    assert "prune.target_flops" in str(e.value) and "less than 1" in str(e.value)


def test_prune_needs_a_target():
    with pytest.raises(RecipeError, match="prune needs a target"):
        parse_recipe({"edgec": 1, "prune": {"enabled": True, "target_flops": None}})


def test_quantize_bits_checked():
    with pytest.raises(RecipeError) as e:
        parse_recipe({"edgec": 1, "quantize": {"method": "binaryconnect", "bits": 0}})
    assert "quantize.bits" in str(e.value) and "greater than or equal to 1" in str(e.value)
    with pytest.raises(RecipeError, match="needs bits"):
        parse_recipe({"edgec": 1, "quantize": {"method": "stochastic_rounding"}})
    with pytest.raises(RecipeError, match="INT8"):
        parse_recipe({"edgec": 1, "quantize": {"method": "qat", "bits": 4}})
    assert parse_recipe({"edgec": 1, "quantize": {"method": "binaryconnect", "bits": 1}}).quantize.bits == 1


def test_split_fractions_checked():
    with pytest.raises(RecipeError, match="less than 10%"):
        parse_recipe({"edgec": 1, "data": {"val_fraction": 0.5, "test_fraction": 0.45}})


def test_tensorrt_engine_profile_must_cover_the_bench_batch():
    with pytest.raises(RecipeError, match="bench.batch_size 128 > engine.max_batch 64"):
        parse_recipe({"edgec": 1, "engine": {"backend": "tensorrt"}, "bench": {"batch_size": 128}})
    # Other backends have no profile; a disabled bench runs no batch.
    assert parse_recipe({"edgec": 1, "bench": {"batch_size": 128}}).engine.max_batch == 64
    parse_recipe({"edgec": 1, "engine": {"backend": "tensorrt"}, "bench": {"enabled": False, "batch_size": 128}})


def test_distill_methods_get_their_own_defaults():
    r = parse_recipe({"edgec": 1, "distill": {"method": "fitnets"}})
    assert r.distill.params == {}  # not kd's temperature/alpha, which fitnets does not take


def test_train_device_defaults_to_auto_and_accepts_cuda_n():
    assert parse_recipe({"edgec": 1}).train.device == "auto"
    for given, kept in (("cpu", "cpu"), ("CUDA", "cuda"), ("cuda:1", "cuda:1"), (" auto ", "auto")):
        assert parse_recipe({"edgec": 1, "train": {"device": given}}).train.device == kept


def test_train_device_errors_name_the_field_and_the_choices():
    with pytest.raises(RecipeError, match=r"train\.device: .*did you mean 'cuda'\?.*auto, cpu, cuda or cuda:N"):
        parse_recipe({"edgec": 1, "train": {"device": "gpu"}})
    with pytest.raises(RecipeError, match=r"train\.device: .*cuda:N"):
        parse_recipe({"edgec": 1, "train": {"device": "cuda:first"}})
    with pytest.raises(RecipeError, match=r"train\.devcie: unknown field \(did you mean 'device'\?\)"):
        parse_recipe({"edgec": 1, "train": {"devcie": "cpu"}})
    with pytest.raises(RecipeError, match=r"train\.epochs: unknown field"):  # optimiser settings stay per stage
        parse_recipe({"edgec": 1, "train": {"epochs": 3}})
