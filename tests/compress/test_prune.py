"""The iterative schedule: targets, rounding, budgets, losses, saving, and its error messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgec.compress.prune import prune
from edgec.compress.prune_schedule import choose_maps, min_widths
from edgec.compress.prune_graph import channel_groups, conv_widths
from edgec.configs import PruneConfig
from edgec.data import load_dataset
from edgec.errors import RecipeError
from edgec.models import ModelSpec, count_flops, count_params, load_model, save_model
from edgec.train import TrainConfig, evaluate, fit, set_seed

SPEC = ModelSpec("teacher_cnn", {"width": 12, "depth": 2, "fc": 16}, 1, 10, 8)
# Fine-tuning between steps only (no final epochs), no target unless a test sets one.
FINETUNE = TrainConfig(epochs=0, lr=1e-2, optimizer="sgd", momentum=0.9, batch_size=64, scheduler="none")


def settings(**kwargs) -> PruneConfig:
    return PruneConfig(**{"target_flops": None, "train": FINETUNE, **kwargs})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained():
    ds = load_dataset("digits", seed=0)
    set_seed(0)
    model = SPEC.build()
    fit(model, (ds.train.x, ds.train.y), (ds.val.x, ds.val.y), TrainConfig(epochs=3, lr=3e-3),
        progress=False)
    return model, (ds.train.x, ds.train.y), (ds.val.x, ds.val.y)


def test_taylor_reaches_the_flops_target_with_a_smaller_dense_model(trained, tmp_path):
    model, train, val = trained
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small, spec, report = prune(model, SPEC, train, val, settings(criterion="taylor", target_flops=0.5,
                                num_steps=3, finetune_batches=15, criterion_batches=2),
                                progress=False)
    flops = count_flops(small, spec.input_shape())
    base = count_flops(model, SPEC.input_shape())
    assert 0.4 < flops / base <= 0.5 and report["flops_ratio"] == pytest.approx(flops / base)
    assert report["final"]["params"] == count_params(small) < count_params(model)
    assert len(report["steps"]) == 3 and report["stopped"] == "target reached"
    assert spec.params["channels"] == conv_widths(small)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # input untouched
    # Fine-tuning between steps keeps the (briefly trained) model's accuracy.
    assert evaluate(small, *val)[1] >= report["original"]["val_accuracy"] - 0.05
    # Round trip through the model file format: same spec, same outputs.
    loaded, loaded_spec = load_model(save_model(small, spec, tmp_path / "p.safetensors"))
    x = torch.randn(4, *spec.input_shape())
    assert loaded_spec == spec and torch.allclose(loaded(x), small.eval()(x))


def test_round_to_eight_keeps_multiples_of_eight_never_zero_never_more(trained):
    model, train, val = trained
    small, spec, _ = prune(model, SPEC, train, val, settings(criterion="weight", target_flops=0.4,
                           round_to=8, finetune_batches=0), progress=False)
    original = conv_widths(model)
    for name, width in conv_widths(small).items():
        assert 0 < width <= original[name]
        assert width % 8 == 0 or width == original[name], (name, width)
    assert conv_widths(small) != original


def test_chunks_go_down_to_the_next_multiple_and_stop_at_the_floor():
    scores = {"a": torch.arange(12.0), "b": torch.arange(16.0) + 100, "c": torch.zeros(4)}
    sizes = {"a": 12, "b": 16, "c": 4}
    groups = [type("G", (), {"name": n, "size": s})() for n, s in sizes.items()]
    floors = min_widths(groups, min_channels=1, round_to=8)
    assert floors == {"a": 8, "b": 8, "c": 4}
    keep = choose_maps(scores, sizes, floors, 8, 1000, lambda s: False)
    assert keep == {"a": list(range(4, 12)), "b": list(range(8, 16))}   # c (< 8) is never cut
    # Without rounding, single maps go in global score order (the four zeros: a's first map,
    # then c's, whose last one stays: a group keeps at least one channel).
    ones = min_widths(groups, 1, 1)
    assert choose_maps(scores, sizes, ones, 1, 4, lambda s: False) == {"a": list(range(1, 12)),
                                                                  "c": [3]}
    # The stop condition is checked before every removal.
    assert choose_maps(scores, sizes, ones, 1, 99, lambda s: s["c"] <= 2) == {
        "a": list(range(1, 12)), "c": [2, 3]}


def test_accuracy_budget_undoes_the_step_that_crossed_it(trained):
    model, train, val = trained
    small, spec, report = prune(model, SPEC, train, val, settings(criterion="random",
                                max_accuracy_drop=0.0, maps_per_step=30, finetune_batches=0),
                                progress=False)
    assert report["stopped"].startswith("accuracy budget")
    assert conv_widths(small) == conv_widths(model) and report["steps"] == []
    assert report["final"]["val_accuracy"] == report["original"]["val_accuracy"]


def test_loss_fn_is_used_for_the_criterion_and_fine_tuning(trained):
    model, train, val = trained
    calls = []

    def kd_like(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(len(y))
        return nn.functional.cross_entropy(m(x), y)

    _, _, report = prune(model, SPEC, train, val, settings(criterion="taylor", target_params=0.8,
                         num_steps=1, finetune_batches=2, criterion_batches=3,
                         train=TrainConfig(epochs=1, batch_size=32, max_batches_per_epoch=4)),
                         loss_fn=kd_like, progress=False)
    # 3 criterion batches + 2 fine-tuning steps, then the final fit's 4 batches (config.epochs=1).
    assert calls == [32] * 9
    assert report["final_finetune"]["best_epoch"] == 1


@pytest.mark.parametrize("kwargs, fragment", [
    ({"target_flops": 1.0}, "target_flops"),
    ({"target_flops": 0}, "target_flops"),
    ({"target_flops": -0.5}, "target_flops"),
    ({"target_params": 2}, "target_params"),
    ({}, "needs a target"),
    ({"target_flops": 0.5, "criterion": "taylr"}, "criterion"),
    ({"max_accuracy_drop": 1.5}, "max_accuracy_drop"),
    ({"target_flops": 0.5, "round_to": 0}, "round_to"),
    ({"target_flops": 0.5, "flops_lambda": -1}, "flops_lambda"),
    ({"max_accuracy_drop": 0.01, "num_steps": 3}, "num_steps"),
])
def test_bad_settings_raise_recipe_errors(kwargs, fragment):
    model = SPEC.build()
    data = (torch.zeros(4, 1, 8, 8).numpy(), torch.zeros(4, dtype=torch.long).numpy())
    with pytest.raises(RecipeError, match=fragment) as err:
        prune(model, SPEC, data, data, settings(**kwargs), progress=False)
    assert err.value.hint
    if kwargs.get("criterion") == "taylr":
        assert "did you mean 'taylor'" in err.value.hint
