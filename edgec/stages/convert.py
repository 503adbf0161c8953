"""Conversion stages: ``export`` (FP32 ONNX), ``quantize`` (INT8 QDQ ONNX), ``engine`` (the runtime)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgec.artifacts import StageWork, sha256_file
from edgec.atomic import atomic_write_json
from edgec.console import say
from edgec.engine import resolve_backend  # noqa: F401  (re-exported: edgec.stages.convert.resolve_backend)

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
    """FP32 ONNX -> INT8 QDQ ONNX files by calibration on training images, accuracy-aware on the
    validation split: ``model.int8.onnx`` (S8S8, TensorRT-checked) and, for ONNX Runtime on a CPU,
    ``model.int8.cpu.onnx`` in ``quantize.cpu_flavour`` (the file the ``file`` metric names)."""
    import shutil

    from edgec.compress.calibrate import select_calibration_samples
    from edgec.compress.int8_cpu import FLAVOUR_CPUS, choose_cpu_flavour, int8_isa
    from edgec.compress.ptq_accuracy import quantize_within_budget
    from edgec.export.qdq import assert_tensorrt_qdq, qdq_summary
    from edgec.stages import parent

    q = ctx.recipe.quantize
    # Calibration images come from the training split; the budget is checked on the validation split.
    calib = select_calibration_samples(ctx.dataset.train.x, q.calibration.samples, seed=ctx.recipe.seed)
    fp32 = parent(work, "export").file("model.onnx")
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

    ``onnxruntime``: the QDQ ONNX file *is* the deployable artifact, so this stage records which
    file, its sha256 and the execution providers a session actually got, after one real inference.
    ``tensorrt``: builds ``model.plan`` + ``engine.json`` (:mod:`edgec.engine.tensorrt`) and runs it once.
    ``kernels``: converts the student for edgec's CUDA kernels (:mod:`edgec.engine.kernels`) and runs it once.
    """
    from edgec.runtimes import open_runner
    from edgec.stages.compress import STUDENT, student_parent

    src = work.parents[0]
    backend = work.config["backend"]  # resolved once, before any training (stages.run_all)
    name = src.metrics["file"] if src.stage == "quantize" else "model.onnx"
    if backend == "tensorrt" and src.stage == "quantize":  # PTQ: the S8S8 file is TensorRT's
        name = src.metrics.get("tensorrt_file", name)
    model_file = src.file(name)
    spec, sample = ctx.recipe.engine, ctx.dataset.test.x[:1]
    info: dict = {"backend": backend, "model": f"{src.stage}-{src.key}/{name}", "model_sha256": sha256_file(model_file)}
    if backend == "tensorrt":
        from edgec.engine.tensorrt import BuildSettings, build_engine

        built = build_engine(model_file, work.path, BuildSettings.from_spec(spec))
        with open_runner(built.plan, runtime="tensorrt", cuda_graph=spec.cuda_graph) as runner:
            runner.infer(sample)
            info["runner"] = runner.describe()
        info.update(engine_file=built.plan.name, **{k: built.manifest[k] for k in (
            "key", "tensorrt", "gpu", "build", "profile", "sparse_weights", "dla", "layers")})
    elif backend == "kernels":
        from edgec.engine.kernels import prepare_kernels_engine, runner_options

        student = student_parent(work)
        info.update(model=f"{student.stage}-{student.key}/{STUDENT}", model_sha256=sha256_file(student.file(STUDENT)),
                    **prepare_kernels_engine(student.file(STUDENT), sample, **runner_options(spec)))
    else:
        options = {"intra_op_threads": spec.intra_op_threads} if spec.intra_op_threads else {}
        with open_runner(model_file, runtime=backend, **options) as runner:
            runner.infer(sample)
            info["runner"] = runner.describe()
    if backend != "tensorrt":  # a TensorRT build wrote engine.json already: the plan's manifest
        atomic_write_json(work.path / "engine.json", info)
    work.metrics.update(info)
