"""Conversion stages: ``export`` (FP32 ONNX), ``quantize`` (INT8 QDQ ONNX), ``engine`` (the runtime)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from edgec.artifacts import StageWork, sha256_file
from edgec.atomic import atomic_write_json
from edgec.console import say, warn
from edgec.errors import EdgecError, MissingDependencyError

if TYPE_CHECKING:
    from edgec.pipeline import BuildContext

PARITY_SAMPLES = 256


def export(ctx: BuildContext, work: StageWork) -> None:
    """Student -> FP32 ONNX (dynamic batch), full ONNX check, parity against torch on test inputs."""
    from edgec.export.onnx import check_parity, describe_io, export_onnx
    from edgec.models import load_model
    from edgec.stages.compress import STUDENT, student_parent

    spec_x = ctx.recipe.export
    model, _ = load_model(student_parent(work).file(STUDENT))
    onnx_path = export_onnx(model, ctx.dataset.input_shape, work.path / "model.onnx", opset=spec_x.opset,
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
    """FP32 ONNX -> INT8 QDQ ONNX by calibration on training images; TensorRT-checked."""
    from edgec.compress.calibrate import select_calibration_samples
    from edgec.compress.quantize import quantize_qdq
    from edgec.export.qdq import assert_tensorrt_qdq, qdq_summary
    from edgec.stages import parent

    q = ctx.recipe.quantize
    calib = select_calibration_samples(ctx.dataset.train.x, q.calibration.samples, seed=ctx.recipe.seed)
    out = quantize_qdq(parent(work, "export").file("model.onnx"), work.path / "model.int8.onnx", calib,
                       method=q.calibration.method, percentile=q.calibration.percentile,
                       per_channel=q.per_channel, batch_size=q.calibration.batch_size)
    assert_tensorrt_qdq(out)
    work.metrics.update(kind="int8", file=out.name, method="ptq", bits=8, qdq=qdq_summary(out),
                        calibration=q.calibration.model_dump())


def resolve_backend(requested: str) -> str:
    """The backend ``engine.backend`` means on this machine.

    ``auto`` picks TensorRT where it is installed and can build engines, else ONNX Runtime.
    """
    has_trt = importlib.util.find_spec("tensorrt") is not None
    if requested == "tensorrt" and not has_trt:
        raise MissingDependencyError("tensorrt", "trt", "engine.backend: tensorrt")
    if requested == "tensorrt":
        raise EdgecError("building TensorRT engines is not available in this edgec version yet",
                         hint="set engine.backend: onnxruntime (or auto) for now")
    if requested == "auto" and has_trt:
        warn("TensorRT is installed but edgec cannot build TensorRT engines yet; using ONNX Runtime")
    return "onnxruntime"


def engine(ctx: BuildContext, work: StageWork) -> None:
    """Prepare the deployable runtime for the (quantized) model and check it loads and runs.

    For ONNX Runtime the QDQ ONNX file *is* the deployable artifact, so this stage records which
    file, its sha256 and the execution providers a session actually got, after one real inference.
    """
    from edgec.runtimes import open_runner

    (src,) = work.parents
    name = src.metrics["file"] if src.stage == "quantize" else "model.onnx"
    model_file = src.file(name)
    backend = resolve_backend(ctx.recipe.engine.backend)
    options = {"intra_op_threads": ctx.recipe.engine.intra_op_threads} if ctx.recipe.engine.intra_op_threads else {}
    with open_runner(model_file, runtime=backend, **options) as runner:
        runner.infer(ctx.dataset.test.x[:1])
        described = runner.describe()
    info = {"backend": backend, "model": f"{src.stage}-{src.key}/{name}", "model_sha256": sha256_file(model_file),
            "runner": described}
    atomic_write_json(work.path / "engine.json", info)
    work.metrics.update(info)
