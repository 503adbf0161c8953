"""FitNets hints and multi-layer feature distillation on real registry models and real digits.

Also covers the fit() options they rely on (monitor, checkpoint_name, on_epoch_start).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgec.compress.distill import distill, make_distill_method
from edgec.compress.features import (capture, hint_loss, make_regressor, params_up_to,
                                     regressor_kernel)
from edgec.compress.hints import FeatureKD, FitNets, fitnets_lambda, soft_cross_entropy
from edgec.data import load_dataset
from edgec.errors import RecipeError
from edgec.models import create_model
from edgec.train import TrainConfig, fit, set_seed

CFG = TrainConfig(epochs=3, batch_size=64, lr=3e-3)


def teacher_cnn(size: int, seed: int = 0) -> nn.Module:
    set_seed(seed)
    return create_model("teacher_cnn", in_channels=1, num_classes=10, input_size=size)


def fitnet(size: int, seed: int = 1) -> nn.Module:
    set_seed(seed)
    return create_model("fitnet", in_channels=1, num_classes=10, input_size=size)


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", seed=0, limit=640)  # 576 train / 64 val 8x8 digits
    return (ds.train.x, ds.train.y), (ds.val.x, ds.val.y)


@pytest.fixture(scope="module")
def teacher(digits):
    model = teacher_cnn(8)
    assert fit(model, *digits, CFG, progress=False).best_val_accuracy >= 0.85
    return model


# --- regressors ------------------------------------------------------------------------------

@pytest.mark.parametrize("size, stage1_side, hint_side", [(8, 4, 2), (28, 14, 7)])
def test_regressor_shapes_on_registry_models(size, stage1_side, hint_side):
    t, s = teacher_cnn(size), fitnet(size)
    x = torch.zeros(2, 1, size, size)
    hint = capture(t, x, ["features.block2"])[0]["features.block2"]  # (2, 64, h, h)
    assert hint.shape == (2, 64, hint_side, hint_side)

    same = FitNets(t, s)  # defaults: features.block2 <- features.stage2, both h x h
    same.bind(x)
    conv = same.regressor.conv
    assert conv.kernel_size == (1, 1) and (conv.in_channels, conv.out_channels) == (16, 64)
    assert isinstance(same.regressor.relu, nn.ReLU)  # the hint is a ReLU output (Sec. 2.2)

    wider = FitNets(t, s, guided_layer="features.stage1")  # stage1_side > hint_side
    wider.bind(x)
    k = stage1_side - hint_side + 1  # N_g - k + 1 = N_h
    assert wider.regressor.conv.kernel_size == (k, k)
    assert sum(p.numel() for p in wider.regressor.parameters()) == k * k * 8 * 64 + 64
    guided = capture(s, x, ["features.stage1"])[0]["features.stage1"]
    assert wider.regressor(guided).shape == hint.shape

    # A guided map smaller than the hint: a valid convolution cannot grow it, so the regressor
    # resizes it to the hint's size and maps channels with a 1x1 convolution.
    smaller = FitNets(t, s, hint_layer="features.block1", guided_layer="features.stage3")
    smaller.bind(x)
    hint1 = capture(t, x, ["features.block1"])[0]["features.block1"]
    guided3 = capture(s, x, ["features.stage3"])[0]["features.stage3"]
    assert guided3.shape[-1] < hint1.shape[-1]
    assert isinstance(smaller.regressor.resize, nn.Upsample) and smaller.regressor.conv.kernel_size == (1, 1)
    assert smaller.regressor(guided3).shape == hint1.shape
    with pytest.raises(RecipeError, match="smaller than the teacher's hint"):
        regressor_kernel((2, 2), (4, 4))  # the paper's valid-convolution rule itself still refuses


def test_regressor_kernel_formula_and_vector_layers():
    assert regressor_kernel((14, 10), (7, 5)) == (8, 6)
    assert regressor_kernel((7, 7), (7, 7)) == (1, 1)
    lin = make_regressor((16,), (128,), relu=False)
    assert isinstance(lin.linear, nn.Linear) and lin(torch.zeros(3, 16)).shape == (3, 128)
    with pytest.raises(RecipeError, match="same kind"):
        make_regressor((16, 2, 2), (128,), relu=True)


# --- losses and schedule ---------------------------------------------------------------------

def test_hint_loss_is_half_squared_l2_per_example_averaged():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    hint = torch.tensor([[0.0, 0.0], [1.0, 1.0]], requires_grad=True)
    # example 1: 0.5 * (1 + 4) = 2.5; example 2: 0.5 * (4 + 9) = 6.5; mean 4.5
    loss = hint_loss(pred, hint)
    assert loss.item() == pytest.approx(4.5)
    loss.backward()
    assert hint.grad is None and torch.allclose(pred.grad, (pred - hint).detach() / 2)
    maps = hint_loss(torch.ones(2, 3, 2, 2), torch.zeros(2, 3, 2, 2))  # 12 elements per example
    assert maps.item() == pytest.approx(6.0)


def test_lambda_schedule_matches_the_linear_decay():
    # lambda_e = 4 + (1 - 4) * min(1, (e - 1) / (A - 1)): 4 at epoch 1, 1 from epoch A on.
    assert [fitnets_lambda(e, 5) for e in range(1, 7)] == [4.0, 3.25, 2.5, 1.75, 1.0, 1.0]
    assert fitnets_lambda(76, 151) == pytest.approx(2.5)  # App. A.2: 4 -> 1 over 150 epochs
    assert fitnets_lambda(3, 3, lambda_init=2.0, lambda_final=0.0) == 0.0
    assert fitnets_lambda(1, 1) == 4.0


def test_stage2_loss_is_ce_plus_lambda_soft_cross_entropy(teacher):
    s = fitnet(8)
    m = FitNets(teacher, s, temperature=3.0)
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 10
    m.lam = 2.5
    with torch.no_grad():
        t_logits, s_logits = teacher.eval()(x), s(x)
        p_t = torch.softmax(t_logits / 3, dim=1)
        want = F.cross_entropy(s_logits, y) - 2.5 * (p_t * torch.log_softmax(s_logits / 3, 1)).sum(1).mean()
        assert m.loss_fn()(s, x, y).item() == pytest.approx(want.item(), rel=1e-5)
    assert soft_cross_entropy(torch.zeros(1, 4), torch.zeros(1, 4), 3.0).item() == pytest.approx(np.log(4))


# --- the two stages --------------------------------------------------------------------------

def test_stage1_trains_only_up_to_the_guided_layer_then_stage2_trains_everything(teacher, digits):
    s = fitnet(8)
    m = make_distill_method("fitnets", teacher, s, hint_epochs=4, anneal_epochs=3)
    x = torch.from_numpy(digits[0][0][:2])
    m.bind(x)
    names = {id(p): n for n, p in s.named_parameters()}
    assert sorted(names[id(p)] for p in params_up_to(s, "features.stage2", x)) == sorted(
        n for n in names.values() if n.startswith(("features.stage1.", "features.stage2.")))
    hints, kd = m.stages()
    assert (hints.name, hints.monitor, hints.config_overrides) == ("hints", "val_objective", {"epochs": 4})

    before = state(s)
    def hint_val() -> float:  # Eq. (3) on the 64 validation digits, one batch
        return hints.loss_fn(hints.model.eval(), *map(torch.from_numpy, digits[1])).item()

    loss0 = hint_val()
    res = fit(hints.model, *digits, CFG.model_copy(update=hints.config_overrides),
              loss_fn=hints.loss_fn, params=hints.params, monitor=hints.monitor, progress=False)
    after1 = state(s)
    assert hint_val() < 0.5 * loss0  # the regressed guided layer now predicts the hint
    assert res.history[-1]["val_objective"] == pytest.approx(hint_val(), rel=1e-5)
    early = ("features.stage1.", "features.stage2.")
    changed = {k for k in before if not torch.equal(before[k], after1[k])}
    assert changed and all(k.startswith(early) for k in changed)
    # Later layers (params and BatchNorm statistics) are bit-identical: never run in train mode.
    assert all(torch.equal(before[k], after1[k]) for k in before if not k.startswith(early))

    lams: list[float] = []
    stage2_loss = kd.loss_fn

    def recording(model, xb, yb):
        lams.append(m.lam)
        return stage2_loss(model, xb, yb)

    steps = -(-len(digits[0][1]) // CFG.batch_size)
    fit(s, *digits, CFG, loss_fn=recording, on_epoch_start=kd.on_epoch_start, progress=False)
    assert lams == [l for e in (1, 2, 3) for l in [fitnets_lambda(e, 3)] * steps]
    after2 = {n: p.detach() for n, p in s.named_parameters()}
    assert [n for n, p in after2.items() if torch.equal(p, after1[n])] == []  # all trained


# --- errors ----------------------------------------------------------------------------------

def test_bad_layer_names_and_params_are_recipe_errors_with_suggestions():
    t, s = teacher_cnn(8), fitnet(8)
    with pytest.raises(RecipeError, match="did you mean 'features.block2'") as info:
        make_distill_method("fitnets", t, s, hint_layer="features.blok2")
    assert "valid module names" in str(info.value) and "features.block1.conv1" in str(info.value)
    with pytest.raises(RecipeError, match="(?s)guided layer.*did you mean 'features.stage2'"):
        make_distill_method("fitnets", t, s, guided_layer="features.stag2")
    with pytest.raises(RecipeError, match="did you mean 'hint_layer'"):
        make_distill_method("fitnets", t, s, hint_layers="features.block2")
    with pytest.raises(RecipeError, match="hint_epochs"):
        make_distill_method("fitnets", t, s, hint_epochs=0)
    with pytest.raises(RecipeError, match="lambda_init"):
        make_distill_method("fitnets", t, s, lambda_init=-1)
    with pytest.raises(RecipeError, match="did you mean 'features.stage1'"):
        make_distill_method("features", t, s, pairs=[["features.block1", "features.stage_1"]])
    with pytest.raises(RecipeError, match="pairs"):
        make_distill_method("features", t, s, pairs=["features.block1"])
    with pytest.raises(RecipeError, match="did you mean 'last'"):
        fit(s, (np.zeros((4, 1, 8, 8), np.float32), np.zeros(4, np.int64)),
            (np.zeros((4, 1, 8, 8), np.float32), np.zeros(4, np.int64)), CFG, monitor="lats")


# --- distill() end to end ----------------------------------------------------------------------

def test_fitnets_resumes_through_distill_and_returns_a_plain_student(teacher, digits, tmp_path, capsys):
    first = distill(fitnet(8), teacher, *digits, CFG, method="fitnets",
                    method_params={"hint_epochs": 2}, workdir=tmp_path, progress=True)
    assert type(first.model).__name__ == "ConvClassifier"
    assert first.model.state_dict().keys() == fitnet(8).state_dict().keys()  # no regressor left
    assert first.best_val_accuracy >= 0.7
    hints_ckpt = torch.load(tmp_path / "checkpoint-hints.pt", weights_only=True)
    assert hints_ckpt["epoch"] == 2 and hints_ckpt["monitor"] == "val_objective"
    assert any(k.startswith("regressors.0.") for k in hints_ckpt["model"])
    trained = state(first.model)

    (tmp_path / "checkpoint.pt").unlink()  # interrupted after stage 1: only the hints remain
    capsys.readouterr()
    second = distill(fitnet(8), teacher, *digits, CFG, method="fitnets",
                     method_params={"hint_epochs": 2}, workdir=tmp_path, progress=True)
    assert "already trained (2 epochs" in capsys.readouterr().err
    assert second.resumed_from_epoch is None
    assert all(torch.equal(trained[k], v) for k, v in state(second.model).items())  # same run

    third = distill(fitnet(8), teacher, *digits, CFG, method="fitnets",
                    method_params={"hint_epochs": 2}, workdir=tmp_path, progress=False)
    assert third.resumed_from_epoch == CFG.epochs
    assert all(torch.equal(trained[k], v) for k, v in state(third.model).items())


def test_features_method_with_two_layer_pairs(teacher, digits, tmp_path):
    pairs = [["features.block1", "features.stage1"], ["features.block2", "features.stage2"]]
    s = fitnet(8)
    m = FeatureKD(teacher, s, pairs=pairs, weight=0.5)
    x, y = map(torch.from_numpy, (digits[0][0][:16], digits[0][1][:16]))
    m.bind(x[:2])
    assert [r.conv.kernel_size for r in m.regressors] == [(1, 1), (1, 1)]
    with torch.no_grad():  # = logit KD + 0.5 * sum of per-pair MSEs
        tf, tl = capture(teacher.eval(), x, ["features.block1", "features.block2"])
        sf, sl = capture(s, x, ["features.stage1", "features.stage2"])
        kd = make_distill_method("kd", teacher, s).loss_fn()(s, x, y)
        mse = sum(F.mse_loss(r(sf[p[1]]), tf[p[0]]) for r, p in zip(m.regressors, pairs))
        assert m.loss_fn()(s, x, y).item() == pytest.approx((kd + 0.5 * mse).item(), rel=1e-5)

    result = distill(fitnet(8), teacher, *digits, CFG.model_copy(update={"epochs": 6}), method="features",
                     method_params={"pairs": pairs, "weight": 0.5}, workdir=tmp_path, progress=False)
    assert result.best_val_accuracy >= 0.8 and type(result.model).__name__ == "ConvClassifier"
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {k.split(".")[1] for k in ckpt["model"] if k.startswith("regressors.")} == {"0", "1"}
    assert '"pairs": [["features.block1"' in ckpt["resume_key"]


# --- the fit() options FitNets relies on -------------------------------------------------------

def test_fit_monitor_checkpoint_name_and_epoch_hook(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(64, 1, 2, 2)).astype(np.float32), rng.integers(0, 2, 64))
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.05)
    seen: list[tuple[int, int]] = []
    set_seed(0)
    last = fit(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), data, data, cfg, monitor="last",
               workdir=tmp_path, checkpoint_name="checkpoint-x.pt", progress=False,
               on_epoch_start=lambda e, n: seen.append((e, n)))
    assert last.best_epoch == 4 and seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert (tmp_path / "checkpoint-x.pt").is_file() and not (tmp_path / "checkpoint.pt").exists()
    by_loss = fit(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), data, data, cfg, monitor="train_loss",
                  progress=False)
    losses = [h["train_loss"] for h in by_loss.history]
    assert by_loss.best_epoch == 1 + max(i for i, v in enumerate(losses) if v == min(losses))
    # A checkpoint that picked its epoch by another criterion is not resumed.
    again = fit(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), data, data, cfg, monitor="val_objective",
                workdir=tmp_path, checkpoint_name="checkpoint-x.pt", progress=True)
    assert again.resumed_from_epoch is None and "starting over" in capsys.readouterr().err
    assert all("val_objective" in h for h in again.history)
