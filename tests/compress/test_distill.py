"""Distillation: kd_loss maths, the method registry, and distill() end to end on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgec.compress.distill_methods as distill_methods
from edgec.compress.distill import (DistillMethod, DistillStage, LogitKD, distill, kd_loss,
                                    make_distill_method, register_distill_method)
from edgec.errors import ModelError, RecipeError
from edgec.train import TrainConfig, evaluate, fit, set_seed
from tests.tiny_models import K, blobs

TRAIN, VAL = blobs(192, 1), blobs(96, 2)
CFG = TrainConfig(epochs=4, batch_size=32, lr=1e-2)


def make_teacher(seed: int = 0) -> nn.Module:
    set_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.BatchNorm1d(32), nn.ReLU(),
                         nn.Dropout(0.1), nn.Linear(32, K))


def make_student(seed: int = 1) -> nn.Module:
    set_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, K))


@pytest.fixture(scope="module")
def teacher() -> nn.Module:
    model = make_teacher()
    result = fit(model, TRAIN, VAL, CFG, progress=False)
    assert result.best_val_accuracy >= 0.95
    return model


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- kd_loss ---------------------------------------------------------------------------------

def test_kd_loss_is_zero_for_equal_logits():
    z = torch.randn(16, 10) * 5
    for t in (1.0, 4.0, 20.0):
        assert kd_loss(z, z.clone(), t).item() == pytest.approx(0.0, abs=1e-5)


def test_kd_loss_matches_manual_kl_times_t_squared():
    torch.manual_seed(0)
    s, t = torch.randn(8, 5), torch.randn(8, 5)
    for temp in (1.0, 2.0, 4.0):
        p_t = torch.softmax(t / temp, dim=1)
        log_p_s = torch.log_softmax(s / temp, dim=1)
        kl = (p_t * (p_t.log() - log_p_s)).sum(dim=1).mean()  # per-sample KL, batch mean
        assert kd_loss(s, t, temp).item() == pytest.approx(temp**2 * kl.item(), rel=1e-5)


def test_kd_loss_t_squared_keeps_scale_at_high_temperature():
    # KL at temperature T shrinks like 1/T^2; the T^2 factor makes the loss (and its gradients)
    # converge to a T-independent value, so alpha weighs soft vs hard targets the same at any T.
    torch.manual_seed(1)
    s, t = torch.randn(32, 10), torch.randn(32, 10)
    ratio = kd_loss(s, t, 20.0).item() / kd_loss(s, t, 40.0).item()
    assert ratio == pytest.approx(1.0, abs=0.02)
    raw = (kd_loss(s, t, 20.0) / 20**2).item() / (kd_loss(s, t, 40.0) / 40**2).item()
    assert raw == pytest.approx(4.0, rel=0.02)


def test_kd_loss_gradient_reaches_only_the_student():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    kd_loss(s, t, 2.0).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def test_kd_loss_shape_mismatch_is_a_model_error():
    with pytest.raises(ModelError, match="as many outputs"):
        kd_loss(torch.randn(4, 3), torch.randn(4, 10), 4.0)


# --- registry --------------------------------------------------------------------------------

def test_unknown_method_suggests_kd():
    with pytest.raises(RecipeError) as info:
        make_distill_method("kdd", nn.Linear(2, 2), nn.Linear(2, 2))
    assert "did you mean 'kd'" in str(info.value)
    with pytest.raises(RecipeError, match="'kd'"):
        distill(make_student(), make_teacher(), TRAIN, VAL, CFG, method="hinton", progress=False)


def test_unknown_or_invalid_params_are_recipe_errors():
    t, s = make_teacher(), make_student()
    with pytest.raises(RecipeError, match="did you mean 'temperature'"):
        make_distill_method("kd", t, s, temprature=2.0)
    with pytest.raises(RecipeError, match="temperature"):
        make_distill_method("kd", t, s, temperature=0)
    with pytest.raises(RecipeError, match="alpha"):
        make_distill_method("kd", t, s, alpha=1.5)
    method = make_distill_method("kd", t, s, temperature=2, alpha=0.5)
    assert isinstance(method, LogitKD) and isinstance(method, DistillMethod)
    assert method.hyperparameters() == {"temperature": 2.0, "alpha": 0.5}
    assert [st.name for st in method.stages()] == ["kd"]


def test_logit_kd_loss_combines_soft_and_hard_terms():
    t, s = make_teacher(), make_student()
    t.eval()
    x, y = torch.from_numpy(TRAIN[0][:16]), torch.from_numpy(TRAIN[1][:16])
    got = LogitKD(t, s, temperature=3.0, alpha=0.7).loss_fn()(s, x, y)
    with torch.no_grad():
        tl = t(x)
    sl = s(x)
    want = 0.7 * kd_loss(sl, tl, 3.0) + 0.3 * F.cross_entropy(sl, y)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)


# --- distill() -------------------------------------------------------------------------------

def test_teacher_is_never_updated(teacher):
    teacher.train()  # even when handed over in train mode (BatchNorm stats, dropout)
    before = snapshot(teacher)
    distill(make_student(), teacher, TRAIN, VAL, CFG, progress=False)
    after = snapshot(teacher)
    assert [k for k in before if not torch.equal(before[k], after[k])] == []
    assert teacher.training  # its mode is given back
    assert all(p.grad is None for p in teacher.parameters())


def test_student_learns_from_the_teacher_alone(teacher, tmp_path):
    # alpha=1 ignores labels: with *random* training labels, only the teacher can teach.
    rng = np.random.default_rng(0)
    noise = (TRAIN[0], rng.integers(0, K, len(TRAIN[1])).astype(np.int64))
    student = make_student()
    result = distill(student, teacher, noise, VAL, CFG, method_params={"alpha": 1.0},
                     workdir=tmp_path, progress=False)
    assert result.model is student
    assert result.best_val_accuracy >= 0.85  # chance is 1/3
    assert evaluate(student, *VAL)[1] == result.best_val_accuracy
    # The same student trained on those labels alone stays near chance.
    plain = fit(make_student(), noise, VAL, CFG, progress=False)
    assert plain.best_val_accuracy < 0.7
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == CFG.epochs and '"alpha": 1.0' in ckpt["resume_key"]


def test_default_kd_beats_chance_and_resumes_only_with_same_params(teacher, tmp_path, capsys):
    first = distill(make_student(), teacher, TRAIN, VAL, CFG, workdir=tmp_path, progress=False)
    assert first.best_val_accuracy >= 0.9
    again = distill(make_student(), teacher, TRAIN, VAL, CFG, workdir=tmp_path, progress=False)
    assert again.resumed_from_epoch == CFG.epochs
    changed = distill(make_student(), teacher, TRAIN, VAL, CFG, method_params={"temperature": 2.0},
                      workdir=tmp_path, progress=True)
    assert changed.resumed_from_epoch is None  # a T=4 checkpoint is not a T=2 run
    assert "starting over" in capsys.readouterr().err


def test_a_registered_multi_stage_method_runs_its_stages_in_order(teacher, tmp_path, monkeypatch):
    monkeypatch.setattr(distill_methods, "METHODS", distill_methods.METHODS.copy())
    calls: list[str] = []

    @register_distill_method("two_stage")
    class TwoStage:  # shape of FitNets: a partial first stage, then KD on the whole student
        name = "two_stage"

        def __init__(self, teacher, student, warmup_epochs: int = 1):
            self.kd = LogitKD(teacher, student)
            self.student, self.warmup_epochs = student, warmup_epochs

        def hyperparameters(self):
            return {"warmup_epochs": self.warmup_epochs}

        def loss_fn(self):
            return self.kd.loss_fn()

        def stages(self):
            def tagged(tag, fn):
                def loss(model, x, y):
                    calls.append(tag)
                    return fn(model, x, y)
                return loss
            head = list(self.student[3].parameters())
            return [DistillStage("warmup", tagged("warmup", self.kd.loss_fn()), params=head,
                                 config_overrides={"epochs": self.warmup_epochs}),
                    DistillStage("kd", tagged("kd", self.kd.loss_fn()))]

    result = distill(make_student(), teacher, TRAIN, VAL, CFG, method="two_stage",
                     workdir=tmp_path, progress=False)
    steps = 6  # 192 samples / 32
    assert calls == ["warmup"] * steps + ["kd"] * steps * CFG.epochs
    assert torch.load(tmp_path / "checkpoint-warmup.pt", weights_only=True)["epoch"] == 1
    assert len(result.history) == CFG.epochs
    with pytest.raises(RecipeError, match="warmup_epochs"):
        make_distill_method("two_stage", teacher, make_student(), warmup=2)


def test_distill_trains_with_the_configs_seed(teacher, monkeypatch):
    """The recipe's seed reaches every distillation stage's fit() (a config rebuilt from a dump lost it)."""
    import edgec.compress.distill as distill_module

    seen = []
    real_fit = distill_module.fit

    def spy(model, train, val, config, **kwargs):
        seen.append(config.seed)
        return real_fit(model, train, val, config, **kwargs)

    monkeypatch.setattr(distill_module, "fit", spy)
    distill(make_student(), teacher, TRAIN, VAL, CFG.replace(epochs=1).with_seed(7), method="kd", progress=False)
    assert seen == [7]
    assert CFG.with_seed(7).replace(lr=0.5).seed == 7 and CFG.with_seed(7).replace(lr=0.5).lr == 0.5
