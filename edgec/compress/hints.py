"""FitNets hint training (Romero et al., "FitNets: Hints for Thin Deep Nets", arXiv 1412.6550)
and multi-layer feature distillation, as distillation methods ``fitnets`` and ``features``.

What the paper specifies, and where (section numbers of arXiv v4):
- Sec. 2.1, Eq. (1)-(2): ``L_KD = H(y, P_S) + lambda * H(P_T^tau, P_S^tau)``, P^tau = softmax(a / tau),
  H the cross-entropy. No tau^2 factor (unlike :func:`edgec.compress.distill.kd_loss`).
- Sec. 2.2, Eq. (3): ``L_HT = 1/2 ||u_h(x) - r(v_g(x))||^2``; hint = the teacher's middle layer,
  guided = the student's middle layer; r is a convolutional regressor with kernel
  ``k_i = N_g,i - N_h,i + 1`` and "the same non-linearity" as the hint.
- Sec. 2.3, Algorithm 1: stage 1 trains W_Guided (first layer .. guided layer) and W_r on Eq. (3);
  stage 2 trains the whole student from there on Eq. (2).
- Sec. 2.4: lambda is annealed "with a linear decay" during training (a curriculum).
- App. A.1.2 (CIFAR-10): lambda "initialized to 4 and decayed linearly during 500 epochs reaching
  lambda = 1", tau = 3. App. A.2 (MNIST): lambda from 4, "decayed it for the first 150 epochs until
  it reached 1", tau = 3; both stages stop on validation error. The temperature is not annealed.

Choices where the paper leaves room (the defaults below):
- The schedule is per epoch (the authors' ``TeacherDecayOverEpoch`` updates it once per epoch):
  epoch e of stage 2 (1-based) uses ``lambda_init + (lambda_final - lambda_init) * min(1, (e-1)/(A-1))``,
  so epoch 1 uses 4 and epoch A uses 1; A = ``anneal_epochs``, by default all of stage 2.
- Stage 1 keeps the epoch with the lowest Eq. (3) on the validation data (the authors' code
  monitors ``valid_cost_wrt_teacher``); it runs as many epochs as stage 2 unless ``hint_epochs``
  says otherwise (the paper uses "the same hyper-parameters" for both stages).
- The regressor's ReLU is added when the teacher's hint is non-negative (a ReLU output, as in
  edgec's models); Eq. (3) is summed over the hint's elements and averaged over the batch.

Example:
    >>> result = distill(student, teacher, train, val, TrainConfig(epochs=20), method="fitnets",
    ...                  method_params={"hint_epochs": 10}, workdir="runs/fitnet")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgec.compress.distill_methods import DistillStage, _number, kd_loss, register_distill_method
from edgec.compress.features import capture, find_layer, hint_loss, make_regressor, params_up_to
from edgec.errors import RecipeError
from edgec.train import LossFn


class StudentWithRegressors(nn.Module):
    """The student plus the regressors trained with it, so one checkpoint holds both.

    Its forward is the student's (validation accuracy stays meaningful); after training only
    ``student`` is kept. State-dict keys: ``student.*``, ``regressors.<i>.*``.
    ``forward(x, features=[...], stop=...)`` returns :func:`capture`'s ``(maps, logits)`` of the
    student instead: the losses call it that way, so under torchrun the capture runs inside
    DistributedDataParallel's forward (which must see every training forward).
    """

    def __init__(self, student: nn.Module, regressors: Sequence[nn.Module]):
        super().__init__()
        self.student = student
        self.regressors = nn.ModuleList(regressors)

    def forward(self, x: torch.Tensor, features: Sequence[str] | None = None, stop: bool = False):
        if features is not None:
            return capture(self.student, x, features, stop=stop)
        return self.student(x)


def fitnets_lambda(epoch: int, anneal_epochs: int, lambda_init: float = 4.0,
                   lambda_final: float = 1.0) -> float:
    """The KD weight of stage-2 epoch ``epoch`` (1-based): linear from ``lambda_init`` at epoch 1
    to ``lambda_final`` at epoch ``anneal_epochs``, constant after (paper Sec. 2.4, App. A).

    Example:
        >>> [fitnets_lambda(e, 4) for e in (1, 2, 3, 4, 5)]
        [4.0, 3.0, 2.0, 1.0, 1.0]
    """
    progress = min(1.0, max(0, epoch - 1) / max(1, anneal_epochs - 1))
    return lambda_init + (lambda_final - lambda_init) * progress


def soft_cross_entropy(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                       temperature: float) -> torch.Tensor:
    """``H(P_T^tau, P_S^tau) = -sum_k P_T^tau log P_S^tau``, batch mean; logits (B, K).

    Example:
        >>> soft_cross_entropy(torch.zeros(1, 4), torch.zeros(1, 4), 3.0)   # log 4
        tensor(1.3863)
    """
    p_t = F.softmax(teacher_logits.detach() / temperature, dim=-1)       # (B, K)
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)        # (B, K)
    return -(p_t * log_p_s).sum(dim=-1).mean()


def _student_features(model: nn.Module, x: torch.Tensor, names: Sequence[str], stop: bool = False):
    """``capture`` on the student that ``model`` is or holds (through a DDP wrapper's forward too)."""
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    if isinstance(inner, StudentWithRegressors):
        return model(x, features=names, stop=stop)
    return capture(model, x, names, stop=stop)


def _build_regressors(teacher: nn.Module, student: nn.Module, pairs: Sequence[tuple[str, str]],
                      sample: torch.Tensor, seed: int) -> list[nn.Module]:
    """One regressor per (hint, guided) pair, sized by a forward of ``sample`` in eval mode."""
    modes = [(m, m.training) for m in (*teacher.modules(), *student.modules())]
    teacher.eval()
    student.eval()
    try:
        with torch.no_grad():
            hints, _ = capture(teacher, sample, [h for h, _ in pairs])
            guided, _ = capture(student, sample, [g for _, g in pairs])
    finally:
        for m, training in modes:
            m.training = training
    regressors = []
    # Own generator state: the same seed gives the same regressor, whatever ran before.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for h, g in pairs:
            relu = bool((hints[h] >= 0).all())  # a ReLU hint needs a ReLU regressor (Sec. 2.2)
            regressors.append(make_regressor(guided[g].shape[1:], hints[h].shape[1:], relu))
    return [r.to(sample.device) for r in regressors]


def _optional_int(method: str, name: str, value: Any) -> int | None:
    if value is None:
        return None
    return int(_number(method, name, value, lambda v: 1 <= v < 1e9 and v == int(v),
                       "a whole number >= 1 (or null for the default)"))


@register_distill_method("fitnets")
class FitNets:
    """FitNets: stage "hints" (Eq. 3 on the guided layer's regressor), then stage "kd" (Eq. 2
    with lambda annealed per epoch). See the module docstring for the paper's settings.

    ``hint_layer`` / ``guided_layer`` default to the models' ``hint_layer_default`` /
    ``guided_layer_default``; ``hint_epochs`` (default: the run's epochs) sets stage 1's length;
    ``anneal_epochs`` (default: all of stage 2) the length of lambda's decay.

    Example:
        >>> method = FitNets(teacher, student, hint_layer="features.block2", temperature=3.0)
        >>> method.bind(x[:2], seed=0); [s.name for s in method.stages()]
        ['hints', 'kd']
    """

    name = "fitnets"

    def __init__(self, teacher: nn.Module, student: nn.Module, hint_layer: str | None = None,
                 guided_layer: str | None = None, hint_epochs: int | None = None,
                 temperature: float = 3.0, lambda_init: float = 4.0, lambda_final: float = 1.0,
                 anneal_epochs: int | None = None):
        self.teacher, self.student = teacher, student
        self.hint_layer = hint_layer or getattr(teacher, "hint_layer_default", "")
        self.guided_layer = guided_layer or getattr(student, "guided_layer_default", "")
        find_layer(teacher, self.hint_layer, "teacher hint layer (distill.params.hint_layer)")
        find_layer(student, self.guided_layer, "student guided layer (distill.params.guided_layer)")
        self.hint_epochs = _optional_int("fitnets", "hint_epochs", hint_epochs)
        self.anneal_epochs = _optional_int("fitnets", "anneal_epochs", anneal_epochs)
        self.temperature = _number("fitnets", "temperature", temperature,
                                   lambda v: 0 < v < float("inf"), "a positive number (the paper uses 3)")
        self.lambda_init, self.lambda_final = (
            _number("fitnets", n, v, lambda x: 0 <= x < float("inf"), "a number >= 0 (the paper: 4 -> 1)")
            for n, v in (("lambda_init", lambda_init), ("lambda_final", lambda_final)))
        self.lam = self.lambda_init  # the current KD weight; set per epoch by stage 2
        self.regressor: nn.Module | None = None
        self.guided_params: list[nn.Parameter] = []

    def hyperparameters(self) -> dict[str, Any]:
        return {"hint_layer": self.hint_layer, "guided_layer": self.guided_layer,
                "hint_epochs": self.hint_epochs, "temperature": self.temperature,
                "lambda_init": self.lambda_init, "lambda_final": self.lambda_final,
                "anneal_epochs": self.anneal_epochs}

    def bind(self, sample: torch.Tensor, seed: int = 0) -> None:
        """Size the regressor and find W_Guided from ``sample`` (B >= 1 training inputs)."""
        self.regressor = _build_regressors(self.teacher, self.student,
                                           [(self.hint_layer, self.guided_layer)], sample, seed)[0]
        self.guided_params = params_up_to(self.student, self.guided_layer, sample)

    def hint_loss_fn(self) -> LossFn:
        """Stage 1's loss, Eq. (3) (call :meth:`bind` first)."""
        teacher, hint_layer, guided_layer = self.teacher, self.hint_layer, self.guided_layer
        regressor = self.regressor

        def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if teacher.training:
                teacher.eval()
            with torch.no_grad():
                hint = capture(teacher, x, [hint_layer], stop=True)[0][hint_layer]   # (B, O_h, N_h1, N_h2)
            guided = _student_features(model, x, [guided_layer], stop=True)[0][guided_layer]
            return hint_loss(regressor(guided), hint)  # r: (B, O_g, N_g1, N_g2) -> hint's shape

        return loss

    def loss_fn(self) -> LossFn:
        """Stage 2's loss, Eq. (2), with the current ``self.lam``."""
        teacher, temperature = self.teacher, self.temperature

        def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if teacher.training:
                teacher.eval()
            with torch.no_grad():
                t_logits = teacher(x)  # (B, K)
            s_logits = model(x)  # (B, K)
            return F.cross_entropy(s_logits, y) + self.lam * soft_cross_entropy(s_logits, t_logits,
                                                                                 temperature)

        return loss

    def _anneal(self, epoch: int, epochs: int) -> None:
        self.lam = fitnets_lambda(epoch, self.anneal_epochs or epochs, self.lambda_init,
                                  self.lambda_final)

    def stages(self) -> list[DistillStage]:
        if self.regressor is None:
            raise RuntimeError("FitNets.bind(sample) must run before stages() (distill() does it)")
        wrapper = StudentWithRegressors(self.student, [self.regressor])
        hints = DistillStage("hints", self.hint_loss_fn(), model=wrapper,
                             params=[*self.guided_params, *self.regressor.parameters()],
                             monitor="val_objective",
                             config_overrides={"epochs": self.hint_epochs} if self.hint_epochs else {})
        return [hints, DistillStage("kd", self.loss_fn(), on_epoch_start=self._anneal)]


def _check_pairs(pairs: Any) -> list[tuple[str, str]]:
    ok = isinstance(pairs, (list, tuple)) and len(pairs) > 0 and all(
        isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(n, str) for n in p)
        for p in pairs)
    if not ok:
        raise RecipeError(f"distill features: pairs={pairs!r} is invalid",
                          hint="give a list of [teacher_layer, student_layer] pairs, e.g. "
                               "[[features.block1, features.stage1], [features.block2, features.stage2]]")
    return [(str(t), str(s)) for t, s in pairs]


@register_distill_method("features")
class FeatureKD:
    """Logit KD plus ``weight`` * MSE(regressor_i(student layer), teacher layer) summed over
    ``pairs`` of (teacher_layer, student_layer), trained jointly in one stage with per-pair
    regressors (sized as in FitNets). Default pairs: the models' hint/guided defaults.

    Example:
        >>> FeatureKD(teacher, student, pairs=[["features.block1", "features.stage1"],
        ...                                    ["features.block2", "features.stage2"]], weight=1.0)
    """

    name = "features"

    def __init__(self, teacher: nn.Module, student: nn.Module,
                 pairs: list[list[str]] | None = None, weight: float = 1.0,
                 temperature: float = 4.0, alpha: float = 0.9):
        self.teacher, self.student = teacher, student
        self.pairs = _check_pairs(pairs if pairs is not None else [
            [getattr(teacher, "hint_layer_default", ""), getattr(student, "guided_layer_default", "")]])
        for t, s in self.pairs:
            find_layer(teacher, t, "teacher layer (distill.params.pairs)")
            find_layer(student, s, "student layer (distill.params.pairs)")
        self.weight = _number("features", "weight", weight, lambda v: 0 <= v < float("inf"),
                              "a number >= 0")
        self.temperature = _number("features", "temperature", temperature,
                                   lambda v: 0 < v < float("inf"), "a positive number")
        self.alpha = _number("features", "alpha", alpha, lambda v: 0 <= v <= 1, "a number in [0, 1]")
        self.regressors: list[nn.Module] = []

    def hyperparameters(self) -> dict[str, Any]:
        return {"pairs": [list(p) for p in self.pairs], "weight": self.weight,
                "temperature": self.temperature, "alpha": self.alpha}

    def bind(self, sample: torch.Tensor, seed: int = 0) -> None:
        """Size one regressor per pair from ``sample``."""
        self.regressors = _build_regressors(self.teacher, self.student, self.pairs, sample, seed)

    def loss_fn(self) -> LossFn:
        teacher, pairs, regressors = self.teacher, self.pairs, self.regressors
        t_names, s_names = [t for t, _ in pairs], [s for _, s in pairs]
        temperature, alpha, weight = self.temperature, self.alpha, self.weight

        def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if teacher.training:
                teacher.eval()
            with torch.no_grad():
                t_feats, t_logits = capture(teacher, x, t_names)  # one forward: maps + (B, K)
            s_feats, s_logits = _student_features(model, x, s_names)
            total = alpha * kd_loss(s_logits, t_logits, temperature)
            if alpha < 1:
                total = total + (1 - alpha) * F.cross_entropy(s_logits, y)
            for reg, t, s in zip(regressors, t_names, s_names):
                total = total + weight * F.mse_loss(reg(s_feats[s]), t_feats[t])
            return total

        return loss

    def stages(self) -> list[DistillStage]:
        if not self.regressors:
            raise RuntimeError("FeatureKD.bind(sample) must run before stages() (distill() does it)")
        wrapper = StudentWithRegressors(self.student, self.regressors)
        return [DistillStage("features", self.loss_fn(), model=wrapper)]
