"""Compression stages beyond distillation: ``prune`` (channels removed for real) and the
quantized-training branches of ``quantize`` (INT8 QAT, BinaryConnect, stochastic rounding)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgec import distributed
from edgec.artifacts import Artifact, StageWork
from edgec.compress.distill import make_distill_method
from edgec.compress.int8_cpu import FLAVOUR_CPUS
from edgec.compress.prune import prune as run_prune
from edgec.compress.qat import train_quantized
from edgec.compress.qdq_unsigned import to_unsigned_qdq
from edgec.console import say
from edgec.export.quantized import quantize_for_deployment
from edgec.models import load_model
from edgec.stages.train import CHECKPOINT, STUDENT, load_teacher, save_student, train_config, training_device
from edgec.train import set_seed

if TYPE_CHECKING:
    from edgec.build_context import BuildContext


def student_parent(work: StageWork) -> Artifact:
    """The parent holding the FP32 student (``prune`` when pruning ran, else ``distill``)."""
    by_stage = {a.stage: a for a in work.parents}
    return by_stage.get("prune") or by_stage["distill"]


def _kd_loss(ctx: BuildContext, work: StageWork, student):
    """The recipe's logit-KD loss against the teacher, for fine-tuning a compressed student."""
    teacher = load_teacher(ctx, work).to(next(student.parameters()).device)
    params = {k: v for k, v in ctx.recipe.distill.params.items() if k in ("temperature", "alpha")}
    return make_distill_method("kd", teacher, student, **params).loss_fn()


def prune(ctx: BuildContext, work: StageWork) -> None:
    """Iteratively prune the distilled student's feature maps and remove them physically."""
    p, ds = ctx.recipe.prune, ctx.dataset
    student, spec = load_model(student_parent(work).file(STUDENT))
    student = student.to(training_device(ctx))
    loss_fn = _kd_loss(ctx, work, student) if p.distill else None
    work.scratch.add(CHECKPOINT)  # the final fine-tuning's checkpoint (resumable after Ctrl-C)
    settings = p.model_copy(update={"train": train_config(p.train, ctx.recipe.seed)})
    result = run_prune(student, spec, (ds.train.x, ds.train.y), (ds.val.x, ds.val.y), settings,
                       loss_fn=loss_fn, progress=ctx.progress, workdir=work.path)
    save_student(ctx, work, result.model.eval(), result.spec)
    work.metrics["prune"] = result.report
    say(f"  pruned: {result.report.get('flops_ratio', 0):.2f} of the FLOPs and "
        f"{result.report.get('params_ratio', 0):.2f} of the parameters kept")


def quantized_training(ctx: BuildContext, work: StageWork) -> None:
    """Train the FP32 student with quantized weights (``quantize.method`` qat / BC / SR) and export it
    through :func:`edgec.export.quantized.quantize_for_deployment`.

    INT8 QAT -> ``model.int8.onnx`` (QDQ, learned scales, checked against the fake-quant model).
    BC / SR  -> ``model.w<bits>.onnx`` (weights exactly ``scale * code``) + ``.lowbit.safetensors``
    (packed codes for the low-bit kernels) + ``.lowbit.json``.
    """
    q, ds, r = ctx.recipe.quantize, ctx.dataset, ctx.recipe
    student, _ = load_model(student_parent(work).file(STUDENT))
    student = student.to(training_device(ctx))
    work.scratch.add(CHECKPOINT)
    set_seed(r.seed)  # SR rounds the initial weights stochastically before training starts
    if not distributed.is_main():  # train along with rank 0, which exports and verifies
        train_quantized(student, (ds.train.x, ds.train.y), (ds.val.x, ds.val.y), train_config(q.train, r.seed),
                        method=q.method, bits=q.bits, scheme=getattr(q, "scheme", None), workdir=work.path, progress=False,
                        loss_fn=_kd_loss(ctx, work, student) if q.distill else None)
        return
    art = quantize_for_deployment(
        student, (ds.train.x, ds.train.y), (ds.val.x, ds.val.y), work.path, ds.input_shape,
        q.model_copy(update={"train": train_config(q.train, r.seed)}),
        exporter=None if q.method == "qat" else r.export.exporter, stem="model", workdir=work.path,
        progress=ctx.progress, loss_fn=_kd_loss(ctx, work, student) if q.distill else None,
        parity_atol=r.export.parity_atol, parity_rtol=r.export.parity_rtol)
    info = art.to_dict()
    for key in ("onnx", "packed", "metadata"):  # absolute paths into the .work folder -> file names
        info[key] = Path(info[key]).name if info[key] else None
    work.metrics.update(info, kind="int8" if q.method == "qat" else "lowbit", file=info["onnx"])
    if q.method == "qat":
        _qat_cpu_file(work, info, art.val_accuracy)
    say(f"  {q.method} ({art.bits}-bit): val accuracy {art.val_accuracy:.4f}; "
        f"ONNX vs torch top-1 agreement {art.verification.get('top1_agreement', float('nan')):.4f}")


def _qat_cpu_file(work: StageWork, info: dict, val_accuracy: float) -> None:
    """QAT's ONNX Runtime CPU file: the learned S8S8 model rewritten exactly as U8U8
    (:mod:`edgec.compress.qdq_unsigned`), which cannot saturate x86 CPUs without VNNI; the S8S8 file stays
    TensorRT's. Recorded in the metrics like PTQ's two files (``files``, ``file``, ``tensorrt_file``)."""
    cpu = "model.int8.cpu.onnx"
    to_unsigned_qdq(work.path / info["onnx"], work.path / cpu)
    common = {"float_layers": [], "fp32_val_accuracy": None, "val_accuracy": val_accuracy,
              "steps": [{"float_layers": [], "val_accuracy": val_accuracy}]}
    files = {info["onnx"]: {"flavour": "s8s8", "runtime": "tensorrt", "cpus": FLAVOUR_CPUS["s8s8"], **common},
             cpu: {"flavour": "u8u8", "runtime": "onnxruntime-cpu", "cpus": FLAVOUR_CPUS["u8u8"], **common}}
    work.metrics.update(file=cpu, tensorrt_file=info["onnx"], cpu_flavour="u8u8", files=files)

