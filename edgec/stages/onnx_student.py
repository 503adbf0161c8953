"""Recipes starting from ONNX files trained elsewhere: ``student: {model: "onnx:path/student.onnx"}`` and/or
``teacher: {model: "onnx:path/teacher.onnx"}``.

An ONNX teacher is imported instead of trained (:func:`import_teacher`, the ``teacher`` stage) and KD
reads its logits from ONNX Runtime (:class:`OnnxTeacher`, wherever the build loads the teacher); only
logit distillation works (``distill.method: kd``), since ONNX gives no intermediate features.

The student is already trained, so distillation and pruning are skipped; the chain is the image chain
with two stages swapped (:data:`edgec.stages.tasks.ONNX_STUDENT`):

- ``distill`` -> :func:`import_student`: check the file (:func:`edgec.onnx_input.inspect_onnx`: corrupt
  files, external data outside its folder, not an image classifier), check that it takes the recipe's
  data (input C, H, W; number of classes) and keep a copy (``student.onnx``, external data inlined), with
  its parameters, multiply-accumulates and validation accuracy;
- ``export`` -> :func:`prepare_student`: the FP32 ``model.onnx`` as the build quantizes it (Conv+BN
  folded, opset >= 13) and its parity with the user's file on test images.

Quantize (PTQ only), engine, verify, bench, report and ``deploy/`` are the image chain's. The teacher
is trained as usual unless it is ONNX too (the report compares against it); the ONNX student reads the recipe's data as
edgec prepares it, so its normalisation must be what the model was trained with. What an ONNX
student cannot do (prune, FitNets hints, quantized training) is a RecipeError before anything runs
(:func:`onnx_student_problems`).

Example (recipe)::

    student: {model: "onnx:models/student.onnx"}
    prune: {enabled: false}
    quantize: {method: ptq}
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import torch
from torch import nn

from edgec.artifacts import StageWork, sha256_file
from edgec.atomic import atomic_path
from edgec.compare import compare
from edgec.compress.ptq_accuracy import reference_logits
from edgec.console import say
from edgec.errors import DataError, RecipeError, VerificationFailed
from edgec.onnx_files import describe_io, load_onnx, ort_session
from edgec.onnx_input import inspect_onnx, prepare_fp32
from edgec.stages.defs import parent

if TYPE_CHECKING:
    from edgec.build_context import BuildContext
    from edgec.recipe import Recipe

PREFIX = "onnx:"
STUDENT_ONNX = "student.onnx"  # the user's file as the build keeps it (the distill stage's model)
TEACHER_ONNX = "teacher.onnx"  # an ONNX teacher's copy (the teacher stage's model)
PARITY_SAMPLES = 256


def is_onnx_model(name: str) -> bool:
    """Whether a recipe model name is an ONNX file (``onnx:PATH``)."""
    return isinstance(name, str) and name.startswith(PREFIX)


def onnx_path(name: str) -> Path:
    """The file of an ``onnx:PATH`` model name (relative paths from the current folder, as ``weights``)."""
    return Path(name[len(PREFIX):])


def onnx_teacher_problems(recipe: Recipe) -> list[str]:
    """Why ``recipe`` cannot run with its ONNX teacher (empty when it can, or when the teacher is not ONNX)."""
    if not is_onnx_model(recipe.teacher.model):
        return []
    problems = []
    uses_teacher = (recipe.distill.enabled and not is_onnx_model(recipe.student.model)) or (
        recipe.prune.enabled and recipe.prune.distill) or getattr(recipe.quantize, "distill", False)
    if uses_teacher and recipe.distill.method != "kd":
        problems.append(f"distill.method {recipe.distill.method}: an ONNX teacher gives logits only (ONNX Runtime), "
                        "not the intermediate features FitNets/feature methods match; use distill.method: kd")
    if recipe.teacher.weights or recipe.teacher.pretrained:
        problems.append("teacher.weights/pretrained: the ONNX file holds the teacher's weights")
    if recipe.data.name == "sst2":
        problems.append("ONNX teachers are image classifiers here; text recipes fine-tune their BERT teacher")
    return problems


def onnx_student_problems(recipe: Recipe) -> list[str]:
    """Why ``recipe`` cannot run with its ONNX student (empty when it can, or when the student is not ONNX)."""
    if not is_onnx_model(recipe.student.model):
        return []
    why = "an ONNX student is already trained and has no torch modules to change"
    problems = []
    if recipe.prune.enabled:
        problems.append(f"prune.enabled: pruning removes channels from a torch model during training; {why} "
                        "(set prune.enabled: false, or prune the model where it was trained)")
    if recipe.distill.method.startswith("fitnet"):
        problems.append(f"distill.method {recipe.distill.method}: FitNets hints train the student's layers; {why}")
    if recipe.quantize.method != "ptq":
        problems.append(f"quantize.method {recipe.quantize.method}: quantized training needs the student's torch "
                        f"weights; {why} (use quantize.method: ptq)")
    if recipe.student.weights or getattr(recipe.student, "pretrained", False):
        problems.append("student.weights/pretrained: the ONNX file holds the student's weights")
    if recipe.engine.backend == "kernels":
        problems.append("engine.backend kernels runs edgec's own torch students on its CUDA kernels, not ONNX files")
    if recipe.data.name == "sst2":
        problems.append("ONNX students are image classifiers; text recipes train their BiLSTM student")
    return problems


def check_onnx_recipe(recipe: Recipe) -> None:
    """RecipeError listing every problem of :func:`onnx_teacher_problems` and :func:`onnx_student_problems`."""
    for role, problems, hint in (
            ("teacher", onnx_teacher_problems(recipe), "an ONNX teacher is not trained; the student learns from "
                                                       "its logits (distill.method: kd)"),
            ("student", onnx_student_problems(recipe), "an ONNX student goes straight to quantize (ptq), verify "
                                                       "and bench")):
        if problems:
            raise RecipeError(f"{role}.model {getattr(recipe, role).model!r}: " + "; ".join(problems), hint=hint)


def model_key(recipe: Recipe, role: str) -> dict[str, Any]:
    """An import stage's cache key: the section and the file's bytes (not its path on this machine)."""
    path = onnx_path(getattr(recipe, role).model)
    return {role: recipe.section(role), f"{role}_onnx_sha256": sha256_file(path) if path.is_file() else None}


def _macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates of the Conv/Gemm/MatMul nodes at batch 1 (shapes from ONNX shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else 1 for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    for t in model.graph.initializer:
        shapes[t.name] = list(t.dims)
    total = 0
    for n in model.graph.node:
        out, w = shapes.get(n.output[0]), shapes.get(n.input[1]) if len(n.input) > 1 else None
        if not out or not w:
            continue
        if n.op_type == "Conv":  # out elements x (in channels per group x kernel)
            total += int(np.prod(out[1:])) * int(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            total += int(np.prod(out[1:])) * int(w[0] if n.op_type == "MatMul" or not _transposed(n) else w[1])
    return total


def _transposed(node: onnx.NodeProto) -> bool:
    return any(a.name == "transB" and a.i for a in node.attribute)


def _import(ctx: BuildContext, work: StageWork, role: str, file: str) -> str:
    """Check the ONNX ``role`` (teacher/student) model against the recipe's data, keep a copy as ``file``
    (external data inlined) and record its parameters, MACs and validation accuracy. Returns a summary."""
    name = getattr(ctx.recipe, role).model
    path = onnx_path(name)
    info = inspect_onnx(path)
    ds = ctx.dataset
    want = tuple(ds.input_shape)
    got = tuple(info.input_shape[1:])
    fits = all(g is None or g == w for g, w in zip(got, want))
    if not fits:
        raise DataError(f"{role} {name}: input {list(info.input_shape)} does not take the recipe's images "
                        f"{list(want)} (channels, height, width)",
                        hint="use data settings (image_size, grayscale) that give the model's input shape")
    if info.num_classes is not None and info.num_classes != ds.num_classes:
        raise DataError(f"{role} {name} has {info.num_classes} outputs but the data has {ds.num_classes} classes",
                        hint=f"the {role} must be trained on the same classes, in sorted folder-name order")
    model = load_onnx(path)  # external data (checked to lie beside the file) is inlined into the copy
    with atomic_path(work.path / file) as tmp:
        onnx.save(model, str(tmp))
    logits = reference_logits(work.path / file, ds.val.x)
    val_acc = float((logits.argmax(1) == ds.val.y).mean())
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    flops = _macs(model)
    work.metrics.update(params=params, flops=flops, val_accuracy=val_acc, model=name)
    return f"{role} {path.name} (ONNX): {params:,} parameters, {flops:,} MACs, val accuracy {val_acc:.4f}"


def import_student(ctx: BuildContext, work: StageWork) -> None:
    """Check the ONNX student against the recipe's data and keep a copy (the ``distill`` stage's model)."""
    say(f"  {_import(ctx, work, 'student', STUDENT_ONNX)}; trained elsewhere: distill and prune skipped")


def import_teacher(ctx: BuildContext, work: StageWork) -> None:
    """Check the ONNX teacher against the recipe's data and keep a copy (the ``teacher`` stage's model):
    it is not trained; distillation reads its logits from ONNX Runtime (:class:`OnnxTeacher`)."""
    say(f"  {_import(ctx, work, 'teacher', TEACHER_ONNX)}; not trained here: its logits come from ONNX Runtime")


class OnnxTeacher(nn.Module):
    """An ONNX teacher as a module for logit distillation: ``forward(x)`` runs ONNX Runtime on the CPU and
    returns the logits on ``x``'s device (no gradient: a teacher is a constant). A fixed batch size in
    the file is honoured by running in chunks of it."""

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.session = ort_session(self.path)
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None
        self.register_buffer("_device", torch.zeros(0), persistent=False)  # follows .to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = np.ascontiguousarray(x.detach().float().cpu().numpy())
        step = self.fixed_batch or len(a)
        outs = []
        for i in range(0, len(a), step):
            chunk = a[i:i + step]
            short = step - len(chunk)
            if short:  # pad the last chunk to the file's fixed batch, then drop the padding
                chunk = np.concatenate([chunk, np.zeros((short, *chunk.shape[1:]), chunk.dtype)])
            outs.append(self.session.run(None, {self.input_name: chunk})[0][:step - short])
        return torch.from_numpy(np.concatenate(outs)).to(x.device)




def prepare_student(ctx: BuildContext, work: StageWork) -> None:
    """The FP32 ``model.onnx`` the build quantizes (Conv+BN folded) and its parity with the user's file."""
    src = parent(work, "distill").file(STUDENT_ONNX)
    info = inspect_onnx(src)
    out = work.path / "model.onnx"
    folded = prepare_fp32(info, out, tuple(ctx.dataset.input_shape[1:]))
    x = ctx.dataset.test.x[:PARITY_SAMPLES]
    spec_x = ctx.recipe.export
    parity = compare(reference_logits(src, x), reference_logits(out, x), atol=spec_x.parity_atol,
                     rtol=spec_x.parity_rtol)
    if parity.outside_tolerance > 0:  # folding BatchNorm must not change the function
        raise VerificationFailed(f"the prepared ONNX student differs from {STUDENT_ONNX}: {parity.outside_tolerance:.2%} "
                                 f"of logits outside export.parity_atol/rtol (max |diff| {parity.max_abs_diff:.3g})",
                                 hint="report this with the model; meanwhile fold BatchNorm before exporting")
    work.metrics.update(parity={**parity.to_dict(), **folded}, io=describe_io(out))
    say(f"  ONNX student prepared: {folded['folded_batchnorm']} Conv+BatchNorm folded, max |diff| "
        f"{parity.max_abs_diff:.2e}, top-1 agreement {parity.top1_agreement:.3f}")


__all__ = ["OnnxTeacher", "STUDENT_ONNX", "TEACHER_ONNX", "check_onnx_recipe", "import_student", "import_teacher",
           "is_onnx_model", "model_key", "onnx_student_problems", "onnx_teacher_problems", "prepare_student"]
