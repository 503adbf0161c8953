"""Training stages: ``teacher`` (train it, or load given weights) and ``distill`` (the student).

They train on the recipe's ``train.device`` (:func:`training_device`: the GPU when there is one, by
default). Under torchrun every rank runs them (on its GPU with NCCL); only rank 0 saves (see
:mod:`edgec.distributed`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from edgec import distributed
from edgec.artifacts import StageWork, sha256_file
from edgec.compress.distill import distill as run_distill
from edgec.configs import TrainConfig
from edgec.console import say
from edgec.errors import RecipeError
from edgec.models import ModelSpec, count_flops, count_params, load_model, load_state_dict_file, save_model, sources
from edgec.stages import onnx_student
from edgec.stages.defs import parent
from edgec.train import evaluate, fit, set_seed

if TYPE_CHECKING:
    from edgec.build_context import BuildContext

CHECKPOINT = "checkpoint*.pt"  # every training checkpoint (multi-stage methods write several)
TEACHER, STUDENT = "teacher.safetensors", "student.safetensors"  # the model files of teacher / distill / prune


def weights_digest(path: str | None, role: str = "teacher") -> str | None:
    """sha256 of user-given weights, so replacing the file re-runs the stage that reads it."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise RecipeError(f"{role}.weights: file not found: {p}",
                          hint="give the path of a .safetensors or .pt state dict"
                               + (", or remove teacher.weights to train one" if role == "teacher" else ""))
    return sha256_file(p)


def model_key(section, role: str) -> dict[str, str | None]:
    """What a model section adds to its training stage's cache key besides the section itself: the
    digest of its weights file and, for a ``python:`` model, of the user's module source (editing
    either re-runs the stage; machine paths stay out of the key)."""
    key = {"weights_sha256": weights_digest(section.weights, role),
           "model_source_sha256": sources.source_digest(section.model)}
    # Unset entries stay out, so the keys of builds that use neither are unchanged (the teacher's
    # weights entry has always been there).
    return {k: v for k, v in key.items() if v is not None or (role == "teacher" and k == "weights_sha256")}


def _initial_weights(section, spec: ModelSpec, model, role: str, *, trained: bool) -> None:
    """Load the section's ``weights`` file or the library's pretrained weights into ``model``.

    ``trained``: the weights are the final model (teacher.weights: training is skipped), so they
    must fit exactly; otherwise they are a starting point, and a classifier for another class count
    is left freshly initialised (it is trained)."""
    if section.weights:
        state, origin = load_state_dict_file(section.weights), f"{role}.weights {section.weights}"
    elif section.pretrained:
        say(f"{role}: {section.model}: loading the library's pretrained weights")
        state, origin = sources.pretrained_state_dict(spec.name, in_channels=spec.in_channels,
                                                      num_classes=spec.num_classes, params=spec.params), \
            f"the pretrained {section.model}"
    else:
        return
    for note in sources.load_weights(model, state, source=origin, num_classes=spec.num_classes,
                                     allow_new_head=not trained):
        say(f"{role}: {note}")


def training_device(ctx: BuildContext):
    """The ``torch.device`` the recipe's ``train.device`` resolves to in this process (RecipeError if it cannot)."""
    return distributed.device(ctx.recipe.train.device)


def device_config(ctx: BuildContext) -> dict[str, str]:
    """What the training device adds to a training stage's cache config: nothing on the CPU (CPU builds
    keep their keys), ``{"train_device": "cuda:<GPU name>"}`` on a GPU (its numbers differ from the
    CPU's and from another GPU model's). Resolving it here makes ``train.device: cuda`` without a GPU
    fail before any work.

    Example:
        >>> device_config(ctx)          # on a CPU-only machine
        {}
    """
    dev = training_device(ctx)
    if dev.type != "cuda":
        return {}
    import torch

    return {"train_device": f"cuda:{torch.cuda.get_device_name(dev)}"}


def train_config(spec: TrainConfig, seed: int) -> TrainConfig:
    """A recipe ``train`` section (a :class:`~edgec.configs.TrainConfig`) with the recipe's seed."""
    return spec.with_seed(seed)


def _spec(ctx: BuildContext, section):
    ds = ctx.dataset
    return ModelSpec(name=section.model, params=dict(section.params), in_channels=ds.input_shape[0],
                     num_classes=ds.num_classes, input_size=tuple(ds.input_shape[1:]))


def build_seeded(ctx: BuildContext, spec):
    """``spec.build()`` with torch seeded from the recipe first: a model's initial weights must not
    depend on the process it happens to be built in (else two builds of one recipe differ)."""
    set_seed(ctx.recipe.seed)
    return spec.build()


def _save(ctx: BuildContext, work: StageWork, model, spec, filename: str, result=None) -> None:
    if not distributed.is_main():  # the other ranks trained along; rank 0 publishes
        return
    trained_on = next(model.parameters()).device
    model = model.cpu()
    ds = ctx.dataset
    meta = {"normalization": json.dumps(ds.normalization()), "labels": json.dumps(ds.labels)}
    save_model(model, spec, work.path / filename, metadata=meta)
    _, val_acc = evaluate(model, ds.val.x, ds.val.y)
    work.metrics.update(params=count_params(model), flops=count_flops(model, ds.input_shape),
                        val_accuracy=val_acc, model=spec.to_dict(), device=_describe(trained_on))
    if result is not None:
        work.metrics["training"] = result.to_dict()


def _describe(device) -> str:
    """``cpu``, or ``cuda:0 (NVIDIA H200)``: where a stage trained, for its metrics and the report."""
    if device.type != "cuda":
        return str(device)
    import torch

    return f"{device} ({torch.cuda.get_device_name(device)})"


def save_student(ctx: BuildContext, work: StageWork, model, spec, result=None) -> None:
    """Save the FP32 student of a stage (distill, prune) as ``student.safetensors`` with its metrics."""
    _save(ctx, work, model, spec, STUDENT, result)


def load_teacher(ctx: BuildContext, work: StageWork) -> nn.Module:
    """The finished teacher among ``work``'s parents: the torch model, or an ONNX teacher's
    :class:`~edgec.stages.onnx_student.OnnxTeacher` (logits from ONNX Runtime)."""
    art = parent(work, "teacher")
    if onnx_student.is_onnx_model(ctx.recipe.teacher.model):
        return onnx_student.OnnxTeacher(art.file(onnx_student.TEACHER_ONNX))
    return load_model(art.file(TEACHER))[0]


def teacher(ctx: BuildContext, work: StageWork) -> None:
    """Train the teacher on the recipe's data (from ``pretrained`` weights if asked), or load
    ``teacher.weights`` (safetensors / .pt, weights only) and skip training."""
    r, ds = ctx.recipe, ctx.dataset
    spec = _spec(ctx, r.teacher)
    model = build_seeded(ctx, spec)
    result = None
    _initial_weights(r.teacher, spec, model, "teacher", trained=bool(r.teacher.weights))
    model = model.to(training_device(ctx))
    if not r.teacher.weights:
        work.scratch.add(CHECKPOINT)
        result = fit(model, (ds.train.x, ds.train.y), (ds.val.x, ds.val.y), train_config(r.teacher.train, r.seed),
                     workdir=work.path, description="teacher", progress=ctx.progress)
        model = result.model
    _save(ctx, work, model.eval(), spec, TEACHER, result)


def distill(ctx: BuildContext, work: StageWork) -> None:
    """Train the student: distilled from the teacher (``distill.enabled``) or from labels alone."""
    r, ds = ctx.recipe, ctx.dataset
    spec = _spec(ctx, r.student)
    student = build_seeded(ctx, spec)
    _initial_weights(r.student, spec, student, "student", trained=False)
    student = student.to(training_device(ctx))
    cfg = train_config(r.distill.train, r.seed)
    work.scratch.add(CHECKPOINT)
    train, val = (ds.train.x, ds.train.y), (ds.val.x, ds.val.y)
    if r.distill.enabled:
        teacher_model = load_teacher(ctx, work).to(training_device(ctx))
        result = run_distill(student, teacher_model, train, val, cfg, method=r.distill.method,
                             method_params=dict(r.distill.params), workdir=work.path, progress=ctx.progress)
    else:
        result = fit(student, train, val, cfg, workdir=work.path, description="student", progress=ctx.progress)
    save_student(ctx, work, result.model.eval(), spec, result)
