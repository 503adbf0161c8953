"""Conversion stages: ``export`` (FP32 ONNX), ``quantize`` (INT8 QDQ ONNX), ``engine`` (the runtime)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgec.artifacts import StageWork, sha256_file
from edgec.atomic import atomic_write_json
from edgec.backends import EngineJob, get_backend, resolve_backend
from edgec.console import say
from edgec.export.onnx import check_parity, describe_io, export_onnx
from edgec.export.quantized import post_training_int8
from edgec.models import load_model
from edgec.stages.compress import STUDENT, quantized_training, student_parent
from edgec.stages.defs import parent


if TYPE_CHECKING:
    from edgec.build_context import BuildContext

PARITY_SAMPLES = 256
ONNX = "model.onnx"  # the FP32 ONNX of the export stage


def export(ctx: BuildContext, work: StageWork) -> None:
    """Student -> FP32 ONNX (dynamic batch), full ONNX check, parity against torch on test inputs."""
    spec_x = ctx.recipe.export
    model, _ = load_model(student_parent(work).file(STUDENT))
    onnx_path = export_onnx(model, ctx.dataset.input_shape, work.path / ONNX, opset=spec_x.opset,
                            dynamic_batch=spec_x.dynamic_batch, exporter=spec_x.exporter)
    # Values must match within atol/rtol; top-1 may flip only where two logits are within that noise.
    parity = check_parity(model, onnx_path, ctx.dataset.test.x[:PARITY_SAMPLES],
                          atol=spec_x.parity_atol, rtol=spec_x.parity_rtol, min_top1_agreement=0.99)
    work.metrics.update(parity=parity.to_dict(), io=describe_io(onnx_path))
    say(f"  parity torch vs ONNX Runtime: max |diff| {parity.max_abs_diff:.2e}, top-1 agreement {parity.top1_agreement:.3f}")


def quantize(ctx: BuildContext, work: StageWork) -> None:
    """The quantized deployable model: PTQ of the FP32 ONNX, or quantized training (QAT, BC, SR).

    Records ``kind`` ("int8" | "lowbit") and ``file`` (the ONNX to deploy) in the metrics.
    """
    if ctx.recipe.quantize.method == "ptq":
        _post_training(ctx, work)
    else:
        quantized_training(ctx, work)


def _post_training(ctx: BuildContext, work: StageWork) -> None:
    """FP32 ONNX -> INT8 QDQ ONNX files by calibration on training images, accuracy-aware on the
    validation split: ``model.int8.onnx`` (S8S8, TensorRT-checked) and, for ONNX Runtime on a CPU,
    ``model.int8.cpu.onnx`` in ``quantize.cpu_flavour`` (the file the ``file`` metric names)."""
    fp32 = parent(work, "export").file(ONNX)
    val = ctx.dataset.val
    work.metrics.update(**post_training_int8(fp32, work.path, ctx.dataset.train.x, (val.x, val.y),
                                             ctx.recipe.quantize, seed=ctx.recipe.seed))


def engine(ctx: BuildContext, work: StageWork) -> None:
    """Prepare the deployable runtime for the (quantized) model and check it loads and runs.

    The backend (:mod:`edgec.backends`, resolved once before any training) does the work in its
    :meth:`~edgec.backends.base.Backend.build`: ``onnxruntime`` opens the (QDQ) ONNX, which *is* the
    deployable artifact, and records the providers a session actually got; ``tensorrt`` builds
    ``model.plan`` + ``engine.json``; ``kernels`` converts the FP32 student for edgec's CUDA kernels.
    Each runs one real input. ``engine.json`` records the result (TensorRT's is the plan's manifest).
    """
    src = work.parents[0]
    backend = get_backend(work.config["backend"])
    name = backend.deployed_onnx(src)
    model_file = src.file(name)
    student = student_parent(work) if backend.needs_student else None
    deployed, label = (student.file(STUDENT), f"{student.stage}-{student.key}/{STUDENT}") if student else (
        model_file, f"{src.stage}-{src.key}/{name}")
    job = EngineJob(onnx=model_file, student=student.file(STUDENT) if student else None,
                    sample=ctx.task.sample(ctx.dataset), spec=ctx.recipe.engine, out=work.path)
    info: dict = {"backend": backend.name, "model": label, "model_sha256": sha256_file(deployed), **backend.build(job)}
    if not (work.path / "engine.json").exists():  # a TensorRT build wrote it already: the plan's manifest
        atomic_write_json(work.path / "engine.json", info)
    work.metrics.update(info)
