"""Fine-grained sparsity: exact masks, the 2:4 layout, masks kept through training, saving."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from edgec.compress.sparsity import (apply_masks, check_nm, keep_masks, masks_from_zeros,
                                     nm_masks, sparsity_metadata, sparsity_report,
                                     unstructured_masks, verify_nm, weight_scores)
from edgec.errors import RecipeError
from edgec.models import ModelSpec, load_model, save_model
from edgec.train import TrainConfig, fit

SPEC = ModelSpec("teacher_cnn", {"width": 8, "depth": 2, "fc": 16}, 1, 10, 8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_check_nm_follows_tensorrts_definition():
    # [K=1, C=8, R=1, S=1]: groups of four consecutive input channels.
    assert check_nm(torch.tensor([1.0, 0, 2, 0, 0, 0, 0, 3]).view(1, 8, 1, 1))
    assert not check_nm(torch.tensor([1.0, 1, 1, 0, 0, 0, 0, 0]).view(1, 8, 1, 1))
    # The groups run along C for each (k, r, s), not along the kernel's spatial axes: this weight
    # has 2 non-zeros per 4 consecutive *memory* elements but 4 in one input-channel group.
    w = torch.zeros(1, 4, 2, 2)
    w[0, :, 0, 0] = 1.0
    assert not check_nm(w)
    assert not check_nm(torch.ones(2, 6))            # C % 4 != 0: the pattern cannot apply


def test_nm_masks_keep_the_two_largest_of_every_input_channel_group():
    torch.manual_seed(0)
    w = torch.randn(3, 8, 3, 3)
    mask = nm_masks({"conv": w.abs()})["conv"]
    assert check_nm(w * mask) and mask.float().mean() == 0.5
    group = w[1, 4:8, 2, 0].abs()                    # output 1, kernel pixel (2, 0), channels 4..7
    assert set(torch.nonzero(mask[1, 4:8, 2, 0]).flatten().tolist()) == \
        set(group.topk(2).indices.tolist())
    lin = nm_masks({"fc": torch.tensor([[4.0, 1, 3, 2, 0, 9, 8, 7]])}, 2, 4)["fc"]
    assert lin.tolist() == [[True, False, True, False, False, True, True, False]]
    assert nm_masks({"first": torch.randn(4, 1, 3, 3)}) == {}   # 1 input channel: left dense


def test_unstructured_masks_hit_the_target_per_layer_or_globally():
    scores = {"a": torch.arange(10.0), "b": torch.arange(100.0, 130.0)}
    per_layer = unstructured_masks(scores, 0.6)
    assert per_layer["a"].tolist() == [False] * 6 + [True] * 4
    assert int((~per_layer["b"]).sum()) == 18
    glob = unstructured_masks(scores, 0.25, scope="global")   # 10 of 40 go: all of a's
    assert not glob["a"].any() and glob["b"].all()


def test_taylor_weight_scores_are_weight_times_mean_gradient():
    model = nn.Sequential(nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -2.0, 0.5, 0.0], [3.0, 1.0, -1.0, 2.0]]))
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    # loss = sum of outputs, so dloss/dW[o, i] = x[i] for both rows; two identical batches.
    scores = weight_scores(model, "taylor", batches=[(x, None), (x, None)],
                           loss_fn=lambda m, xb, yb: m(xb).sum())
    expected = (model[0].weight.detach() * x).abs()
    assert torch.allclose(scores["0"], expected)


def test_masks_hold_through_fine_tuning_and_survive_saving(tmp_path, ):
    torch.manual_seed(0)
    model = SPEC.build()
    masks = nm_masks(weight_scores(model))
    assert "features.block1.conv1" not in masks and "classifier.hidden" in masks
    start = {n: m.weight.detach().clone() for n, m in model.named_modules() if n in masks}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    for optimizer in ("adamw", "sgd"):
        with keep_masks(model, masks):
            fit(model, (x, y), (x[:32], y[:32]), TrainConfig(epochs=2, batch_size=32, lr=1e-2,
                optimizer=optimizer, weight_decay=1e-2), progress=False)
        assert all(verify_nm(model).values()) and len(verify_nm(model)) == len(masks)
    mods = dict(model.named_modules())
    for name, mask in masks.items():
        w = mods[name].weight.detach()
        assert torch.equal(w[~mask], torch.zeros_like(w[~mask]))      # pruned stay exactly 0
        assert not torch.equal(w[mask], start[name][mask])            # kept ones trained
    report = sparsity_report(model)
    assert report["features.block2.conv1"]["sparsity"] == pytest.approx(0.5)
    assert report["features.block1.conv1"]["sparsity"] == 0.0
    # Saved with the model: masks are recomputed from the zeros; the header names the pattern.
    path = save_model(model, SPEC, tmp_path / "sparse.safetensors",
                      metadata=sparsity_metadata(model, "2:4"))
    loaded, _ = load_model(path)
    again = masks_from_zeros(loaded)
    assert all(torch.equal(again[n], masks[n]) for n in masks)
    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["edgec_sparsity"])
    assert meta["pattern"] == "2:4" and meta["sparsity"]["classifier.hidden"] == 0.5


def test_apply_masks_zeroes_in_place():
    model = nn.Sequential(nn.Linear(8, 4))
    mask = unstructured_masks(weight_scores(model), 0.75)
    apply_masks(model, {"0": mask["0"]})
    assert sparsity_report(model)["0"]["zeros"] == 24


@pytest.mark.parametrize("call", [
    lambda: unstructured_masks({"a": torch.ones(4)}, 1.0),
    lambda: unstructured_masks({"a": torch.ones(4)}, -0.1),
    lambda: unstructured_masks({"a": torch.ones(4)}, 0.5, scope="everywhere"),
    lambda: nm_masks({"a": torch.ones(4, 8)}, 4, 4),
    lambda: weight_scores(nn.Linear(2, 2), "magnitud"),
    lambda: weight_scores(nn.Linear(2, 2), "taylor"),
])
def test_bad_values_are_recipe_errors(call):
    with pytest.raises(RecipeError) as err:
        call()
    assert err.value.hint


def test_keeper_masks_gradients_and_comes_off():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4))
    masks = nm_masks(weight_scores(model))
    keeper = keep_masks(model, masks)
    model(torch.randn(3, 8)).sum().backward()
    grad = model[0].weight.grad
    assert torch.equal(grad[~masks["0"]], torch.zeros(16)) and grad[masks["0"]].abs().sum() > 0
    keeper.remove()
    model.zero_grad()
    model(torch.randn(3, 8)).sum().backward()
    assert model[0].weight.grad[~masks["0"]].abs().sum() > 0       # hooks are gone
