"""The training loop: learning, determinism, NaN guard, checkpoints/resume, best-model selection."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgec.errors import DataError, RecipeError, TrainingDiverged
from edgec.train import TrainConfig, TrainResult, evaluate, fit, set_seed
from tests.tiny_models import K, blobs

TRAIN, VAL = blobs(192, 1), blobs(96, 2)  # 6 batches of 32 per epoch
STEPS = 6


def make_model(seed: int = 0, dropout: float = 0.0) -> nn.Module:
    set_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(32, K))


def cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 32, "lr": 1e-2, **kw})


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class CountingLoss:
    """Cross-entropy passed through ``hook(n, loss)``; n = 1-based call number (= global step)."""

    def __init__(self, hook):
        self.calls, self.hook = 0, hook

    def __call__(self, model, x, y):
        self.calls += 1
        return self.hook(self.calls, F.cross_entropy(model(x), y))


def nan_at(call: int) -> CountingLoss:
    return CountingLoss(lambda n, loss: loss * float("nan") if n == call else loss)


def interrupt_at(call: int) -> CountingLoss:
    def hook(n, loss):
        if n == call:
            raise KeyboardInterrupt
        return loss
    return CountingLoss(hook)


def test_fit_learns_separable_data():
    model = make_model()
    result = fit(model, TRAIN, VAL, cfg(epochs=4), progress=False)
    assert isinstance(result, TrainResult) and result.model is model
    assert result.best_val_accuracy >= 0.95
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert set(result.history[0]) == {"epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds"}
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert not model.training  # returned ready for inference
    _, acc = evaluate(model, *VAL)
    assert acc == result.best_val_accuracy
    assert result.resumed_from_epoch is None
    json.dumps(result.to_dict())  # JSON-serialisable, no model inside


def test_same_seed_gives_identical_weights_and_other_seed_differs():
    a = fit(make_model(dropout=0.2), TRAIN, VAL, cfg(), progress=False)
    b = fit(make_model(dropout=0.2), TRAIN, VAL, cfg(), progress=False)
    c = fit(make_model(dropout=0.2), TRAIN, VAL, cfg(seed=1), progress=False)
    assert same(state(a.model), state(b.model))
    assert not same(state(a.model), state(c.model))  # seed drives shuffling and dropout


def test_nan_loss_stops_and_restores_epoch1_checkpoint(tmp_path):
    model = make_model()
    with pytest.raises(TrainingDiverged) as info:
        fit(model, TRAIN, VAL, cfg(), loss_fn=nan_at(STEPS + 2), workdir=tmp_path, progress=False)
    ckpt_path = tmp_path / "checkpoint.pt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1  # the good checkpoint was kept
    assert same(state(model), ckpt["model"])                   # and the model holds its weights
    msg = str(info.value)
    lr2 = 0.01 * (1 + math.cos(math.pi / 3)) / 2  # cosine schedule, epoch 2 of 3
    for part in ("nan", "epoch 2/3", f"step 2/{STEPS}", f"lr {lr2:.3g}", "lower the learning rate",
                 "grad_clip", "NaN/Inf", "end of epoch 1", str(ckpt_path)):
        assert part in msg, part
    assert info.value.exit_code == 1


def test_nan_in_first_epoch_without_workdir_restores_initial_weights():
    model = make_model()
    initial = state(model)
    with pytest.raises(TrainingDiverged, match="initial weights"):
        fit(model, TRAIN, VAL, cfg(), loss_fn=nan_at(3), progress=False)
    assert same(state(model), initial)


def test_nan_inputs_are_named_as_the_cause():
    x, y = TRAIN[0].copy(), TRAIN[1]
    x[:] = np.nan
    with pytest.raises(TrainingDiverged, match="inputs of that batch contain NaN"):
        fit(make_model(), (x, y), VAL, cfg(), progress=False)


def test_nonfinite_gradient_norm_is_caught_when_grad_clip_is_set():
    def inf_grad(model, x, y):  # finite loss value, infinite gradients
        loss = F.cross_entropy(model(x), y)
        loss.register_hook(lambda g: g * float("inf"))
        return loss

    model = make_model()
    initial = state(model)
    with pytest.raises(TrainingDiverged, match="gradient norm"):
        fit(model, TRAIN, VAL, cfg(grad_clip=1.0), loss_fn=inf_grad, progress=False)
    assert same(state(model), initial)


def test_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path):
    config = cfg(epochs=4)
    ref = fit(make_model(dropout=0.2), TRAIN, VAL, config, workdir=tmp_path / "ref", progress=False)
    ref_last = torch.load(tmp_path / "ref" / "checkpoint.pt", weights_only=True)["model"]

    model = make_model(dropout=0.2)
    with pytest.raises(KeyboardInterrupt):
        fit(model, TRAIN, VAL, config, loss_fn=interrupt_at(2 * STEPS + 3), workdir=tmp_path / "run",
            progress=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    assert same(state(model), ckpt["model"])  # model left at the end of the last full epoch

    # A differently initialised model: everything must come from the checkpoint.
    resumed = fit(make_model(seed=99, dropout=0.2), TRAIN, VAL, config, workdir=tmp_path / "run",
                  progress=False)
    assert resumed.resumed_from_epoch == 2
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert same(state(resumed.model), state(ref.model))
    last = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    assert same(last, ref_last)
    for h, r in zip(resumed.history, ref.history):
        assert h["train_loss"] == r["train_loss"] and h["val_accuracy"] == r["val_accuracy"]


def test_changed_config_starts_over(tmp_path, capsys):
    fit(make_model(), TRAIN, VAL, cfg(epochs=2), workdir=tmp_path, progress=False)
    changed = cfg(epochs=2, lr=5e-3)
    result = fit(make_model(), TRAIN, VAL, changed, workdir=tmp_path, progress=True)
    assert result.resumed_from_epoch is None
    assert "different training config" in capsys.readouterr().err
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["fingerprint"] == changed.fingerprint() and ckpt["history"][0]["lr"] == 5e-3


def test_finished_run_returns_best_model_without_training(tmp_path, capsys):
    first = fit(make_model(), TRAIN, VAL, cfg(), workdir=tmp_path, progress=False)

    def must_not_train(model, x, y):
        raise AssertionError("a finished run must not train again")

    again = fit(make_model(seed=5), TRAIN, VAL, cfg(), loss_fn=must_not_train, workdir=tmp_path)
    assert again.resumed_from_epoch == 3
    assert same(state(again.model), state(first.model))
    assert again.history == first.history and again.best_epoch == first.best_epoch
    assert "already trained" in capsys.readouterr().err


def test_checkpoint_loads_with_weights_only(tmp_path):
    config = cfg(epochs=2)
    result = fit(make_model(), TRAIN, VAL, config, workdir=tmp_path, progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["fingerprint"] == config.fingerprint()
    assert ckpt["config"]["lr"] == config.lr
    assert ckpt["optimizer"]["state"] and ckpt["scheduler"]["last_epoch"] == 2
    assert ckpt["best_epoch"] == result.best_epoch
    assert same(ckpt["best_state"], state(result.model))
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes left no temporaries


def test_best_epoch_is_kept_when_training_gets_worse():
    def poisoned(model, x, y):  # from epoch 3 on (call > 2 * STEPS), learn shifted labels
        poisoned.calls += 1
        target = (y + 1) % K if poisoned.calls > 2 * STEPS else y
        return F.cross_entropy(model(x), target)
    poisoned.calls = 0

    result = fit(make_model(), TRAIN, VAL, cfg(epochs=5, lr=0.05, scheduler="none"), loss_fn=poisoned,
                 progress=False)
    accs = [h["val_accuracy"] for h in result.history]
    assert accs[-1] < 0.5 < max(accs)
    expected = max(i for i, a in enumerate(accs) if a == max(accs)) + 1  # ties -> later epoch
    assert result.best_epoch == expected <= 2
    assert evaluate(result.model, *VAL)[1] == result.best_val_accuracy == max(accs)


def test_ties_go_to_the_later_epoch():
    def no_gradient(model, x, y):
        return (model(x) * 0).sum()

    set_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, K))  # no BatchNorm: nothing changes at all
    result = fit(model, TRAIN, VAL, cfg(), loss_fn=no_gradient, progress=False)
    assert len({h["val_accuracy"] for h in result.history}) == 1
    assert result.best_epoch == 3


@pytest.mark.parametrize("optimizer,scheduler,expected", [
    ("sgd", "step", [0.1, 0.01, 0.001]),
    ("adamw", "none", [0.1, 0.1, 0.1]),
    ("adam", "cosine", [0.1, 0.1 * (1 + math.cos(math.pi / 3)) / 2, 0.1 * (1 + math.cos(2 * math.pi / 3)) / 2]),
])
def test_optimizers_and_lr_schedules(optimizer, scheduler, expected):
    config = cfg(optimizer=optimizer, scheduler=scheduler, lr=0.1, weight_decay=1e-4, grad_clip=5.0)
    result = fit(make_model(), TRAIN, VAL, config, progress=False)
    assert [h["lr"] for h in result.history] == pytest.approx(expected)
    assert result.best_val_accuracy > 0.9


def test_params_restricts_training_to_given_parameters():
    model = make_model()
    before = state(model)
    fit(model, TRAIN, VAL, cfg(epochs=1), params=model[5].parameters(), progress=False)
    after = state(model)
    assert torch.equal(before["1.weight"], after["1.weight"])  # first layer frozen
    assert not torch.equal(before["5.weight"], after["5.weight"])
    with pytest.raises(ValueError, match="parameters of model"):
        fit(model, TRAIN, VAL, cfg(epochs=1), params=nn.Linear(2, 2).parameters(), progress=False)


def test_evaluate_matches_manual_and_restores_mode():
    model = make_model()
    model.train()
    loss, acc = evaluate(model, *VAL, batch_size=40)  # uneven last batch
    assert model.training
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(VAL[0]))
    y = torch.from_numpy(VAL[1])
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert acc == (logits.argmax(1) == y).sum().item() / len(y)


def test_progress_lines_on_non_tty_and_silence_when_disabled(capsys):
    fit(make_model(), TRAIN, VAL, cfg(epochs=2), description="teacher", progress=True)
    out = capsys.readouterr()
    lines = [ln for ln in out.err.splitlines() if ln.startswith("teacher: epoch")]
    assert len(lines) == 2 and "val_acc" in lines[0] and "lr" in lines[0]
    assert "\x1b[" not in out.err  # no terminal control codes in CI logs
    fit(make_model(), TRAIN, VAL, cfg(epochs=2), progress=False)
    assert capsys.readouterr() == ("", "")


def test_config_validation_and_fingerprint():
    with pytest.raises(RecipeError, match="did you mean 'adam'"):
        TrainConfig(optimizer="adma")
    with pytest.raises(RecipeError, match="scheduler"):
        TrainConfig(scheduler="linear")
    with pytest.raises(RecipeError, match="batch_size"):
        TrainConfig(batch_size=0)
    assert TrainConfig().fingerprint() == TrainConfig().fingerprint()
    assert TrainConfig().fingerprint() != TrainConfig(grad_clip=1.0).fingerprint()


def test_bad_data_is_a_data_error():
    x, y = TRAIN
    with pytest.raises(DataError, match="same N"):
        fit(make_model(), (x, y[:-1]), VAL, cfg(), progress=False)
    with pytest.raises(DataError):
        fit(make_model(), (x, y.astype(np.float32)), VAL, cfg(), progress=False)


def test_zero_epochs_only_evaluates():
    model = make_model()
    before = state(model)
    result = fit(model, TRAIN, VAL, cfg(epochs=0), progress=False)
    assert result.history == [] and same(state(model), before)
    assert result.best_val_accuracy == evaluate(model, *VAL)[1]
