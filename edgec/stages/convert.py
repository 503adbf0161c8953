"""Conversion stages: ``export`` (FP32 ONNX), ``quantize`` (INT8 QDQ ONNX), ``engine`` (the runtime)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgec.artifacts import StageWork, sha256_file
from edgec.atomic import atomic_write_json
from edgec.backends import EngineJob, get_backend, resolve_backend  # noqa: F401  (resolve_backend re-exported)
from edgec.console import say

from edgec.stages.defs import parent

if TYPE_CHECKING:
    from edgec.build_context import BuildContext

PARITY_SAMPLES = 256
ONNX = "model.onnx"  # the FP32 ONNX of the export stage


def export(ctx: BuildContext, work: StageWork) -> None:
    """Student -> FP32 ONNX (dynamic batch), full ONNX check, parity against torch on test inputs."""
    from edgec.export.onnx import check_parity, describe_io, export_onnx
    from edgec.models import load_model
    from edgec.stages.compress import STUDENT, student_parent

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
        from edgec.stages.compress import quantized_training

        quantized_training(ctx, work)


def _post_training(ctx: BuildContext, work: StageWork) -> None:
    """FP32 ONNX -> INT8 QDQ ONNX files by calibration on training images, accuracy-aware on the
    validation split: ``model.int8.onnx`` (S8S8, TensorRT-checked) and, for ONNX Runtime on a CPU,
    ``model.int8.cpu.onnx`` in ``quantize.cpu_flavour`` (the file the ``file`` metric names)."""
    import shutil

    from edgec.compress.calibrate import select_calibration_samples
    from edgec.compress.int8_cpu import FLAVOUR_CPUS, choose_cpu_flavour, int8_isa
    from edgec.compress.ptq_accuracy import quantize_within_budget
    from edgec.export.qdq import assert_tensorrt_qdq, qdq_summary

    q = ctx.recipe.quantize
    # Calibration images come from the training split; the budget is checked on the validation split.
    calib = select_calibration_samples(ctx.dataset.train.x, q.calibration.samples, seed=ctx.recipe.seed)
    fp32 = parent(work, "export").file(ONNX)
    options = dict(method=q.calibration.method, percentile=q.calibration.percentile, per_channel=q.per_channel,
                   batch_size=q.calibration.batch_size)
    val = ctx.dataset.val
    cpu_flavour = choose_cpu_flavour(q.cpu_flavour)
    files: dict[str, dict] = {}
    for name, flavour, runtime in (("model.int8.onnx", "s8s8", "tensorrt"), ("model.int8.cpu.onnx", cpu_flavour, "onnxruntime-cpu")):
        out = work.path / name
        if flavour == "s8s8" and files:  # the CPU file is the TensorRT file: same bytes
            shutil.copyfile(work.path / "model.int8.onnx", out)
            files[name] = {**files["model.int8.onnx"], "runtime": runtime}
        else:
            ptq = quantize_within_budget(fp32, out, calib, val.x, val.y, budget_points=q.accuracy_budget,
                                         max_float_layers=q.max_float_layers, flavour=flavour, **options)
            files[name] = {"flavour": flavour, "runtime": runtime, **ptq}
        files[name]["cpus"] = FLAVOUR_CPUS[flavour]
        if flavour in ("s8s8", "reduce_range"):
            assert_tensorrt_qdq(out)  # symmetric INT8 files must stay TensorRT-compatible
        files[name]["qdq"] = qdq_summary(out)
        steps = " -> ".join(f"{s['val_accuracy']:.4f}" for s in files[name]["steps"])
        say(f"  {name} ({flavour}, {runtime}): val accuracy FP32 {files[name]['fp32_val_accuracy']:.4f}, "
            f"INT8 {steps}; float layers: {', '.join(files[name]['float_layers']) or 'none'}")
    work.metrics.update(kind="int8", file="model.int8.cpu.onnx", tensorrt_file="model.int8.onnx", method="ptq",
                        bits=8, cpu_flavour=cpu_flavour, cpu_flavour_setting=q.cpu_flavour,
                        build_cpu_int8=int8_isa() if q.cpu_flavour == "auto" else None,
                        float_layers=files["model.int8.cpu.onnx"]["float_layers"],
                        qdq=files["model.int8.cpu.onnx"]["qdq"], files=files, calibration=q.calibration.model_dump())


def engine(ctx: BuildContext, work: StageWork) -> None:
    """Prepare the deployable runtime for the (quantized) model and check it loads and runs.

    The backend (:mod:`edgec.backends`, resolved once before any training) does the work in its
    :meth:`~edgec.backends.base.Backend.build`: ``onnxruntime`` opens the (QDQ) ONNX, which *is* the
    deployable artifact, and records the providers a session actually got; ``tensorrt`` builds
    ``model.plan`` + ``engine.json``; ``kernels`` converts the FP32 student for edgec's CUDA kernels.
    Each runs one real input. ``engine.json`` records the result (TensorRT's is the plan's manifest).
    """
    from edgec.stages.compress import STUDENT, student_parent

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
