"""One call from a trained float student to verified, deployable quantized file(s): the quantize stage.

``quantize_for_deployment(student, train, val, out_dir, input_shape, config)``, ``config`` being the
recipe's ``quantize`` section (:data:`edgec.configs.QuantizeConfig`: one class per method):

==========================  ===================================================  =====================================
method                      what happens                                         files in ``out_dir``
==========================  ===================================================  =====================================
``ptq``                     FP32 export + ORT static calibration                 ``<stem>.fp32.onnx``, ``<stem>.int8.onnx``
``qat``                     INT8 fake-quant fine-tuning, export, checker, ORT    ``<stem>.int8.onnx`` (QDQ, learned scales)
                            vs torch top-1 >= 99%
``binaryconnect`` /         low-bit training, finalize, FP32 export (weights      ``<stem>.w<bits>.onnx``,
``stochastic_rounding``     checked bit-exact), ORT vs torch parity               ``<stem>.w<bits>.lowbit.safetensors``,
                                                                                 ``<stem>.w<bits>.lowbit.json``
==========================  ===================================================  =====================================

Example:
    >>> art = quantize_for_deployment(student, train, val, "runs/q", (1, 28, 28), QatConfig())
    >>> art.onnx, art.verification["top1_agreement"]
    (PosixPath('runs/q/student.int8.onnx'), 1.0)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from edgec.atomic import atomic_path
from edgec.compare import compare
from edgec.compress import calibrate  # calibrate.select_calibration_samples: looked up at call time (tests spy on it)
from edgec.compress.int8_cpu import FLAVOUR_CPUS, choose_cpu_flavour, int8_isa
from edgec.compress.ptq_accuracy import quantize_within_budget
from edgec.compress.qat import check_bits, finalize, train_quantized
from edgec.compress.quantize import quantize_qdq
from edgec.console import say
from edgec.configs import PtqConfig, QatConfig, QuantizeConfig, quantize_config
from edgec.export.lowbit import QAT_EXPORTER, export_lowbit, export_qat_qdq, run_onnx, verify_qdq
from edgec.export.onnx import check_parity, export_onnx
from edgec.export.qdq import assert_tensorrt_qdq, qdq_summary
from edgec.train import TrainResult, evaluate


@dataclass
class QuantizedArtifacts:
    """What :func:`quantize_for_deployment` produced. ``packed``/``metadata``: low-bit methods only."""

    method: str
    bits: int
    onnx: Path
    packed: Path | None = None
    metadata: Path | None = None
    model: nn.Module | None = None          # the deployable torch model (None for ptq)
    train: TrainResult | None = None
    val_accuracy: float | None = None       # the deployable torch model on val
    verification: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Paths and numbers as plain JSON values (for a manifest)."""
        return {"method": self.method, "bits": self.bits, "onnx": str(self.onnx),
                "packed": str(self.packed) if self.packed else None,
                "metadata": str(self.metadata) if self.metadata else None,
                "val_accuracy": self.val_accuracy, "verification": dict(self.verification),
                "train": self.train.to_dict() if self.train is not None else None}


def quantize_for_deployment(student: nn.Module, train: tuple[np.ndarray, np.ndarray],
                            val: tuple[np.ndarray, np.ndarray], out_dir: str | Path,
                            input_shape: tuple[int, ...], config: QuantizeConfig | dict[str, Any], *,
                            exporter: str | None = None, stem: str = "student",
                            workdir: str | Path | None = None, progress: bool = True,
                            parity_atol: float = 1e-4, parity_rtol: float = 1e-3,
                            **train_options: Any) -> QuantizedArtifacts:
    """Quantize a trained float ``student`` as ``config`` says and write verified deployable files.

    ``input_shape`` is one sample's shape (no batch). ``config`` is a :class:`~edgec.configs.PtqConfig`
    (its calibration), :class:`~edgec.configs.QatConfig`, :class:`~edgec.configs.BinaryConnectConfig` or
    :class:`~edgec.configs.StochasticRoundingConfig` (bits, scheme and the ``train`` settings; its
    ``distill`` is the pipeline's business: pass the KD loss as ``loss_fn``), or the same as a dict
    (``{"method": "binaryconnect", "bits": 1}``). ``train_options`` go to :func:`train_quantized`
    (``quantize_first``, ``quantize_last``, ``act_observer``, ``stochastic_forward``, ``loss_fn``).
    ``exporter`` defaults to ``torchscript`` for QAT (see :mod:`edgec.export.lowbit`) and
    ``dynamo`` otherwise. ``parity_atol``/``parity_rtol`` (the recipe's ``export.parity_atol/rtol``)
    bound the low-bit ONNX against the deployed torch model (reference in FP32 without TF32) and are
    reported for QAT. Raises RecipeError for bad settings, VerificationFailed when a file disagrees
    with its torch model.

    Example:
        >>> art = quantize_for_deployment(student, train, val, "out", (1, 8, 8), BinaryConnectConfig(bits=1))
        >>> art.packed.name
        'student.w1.lowbit.safetensors'
    """
    config = quantize_config(config) if isinstance(config, dict) else config
    method = config.method
    bits = check_bits(method, config.bits, getattr(config, "scheme", None))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x_val = np.asarray(val[0], dtype=np.float32)
    if isinstance(config, PtqConfig):
        cal = config.calibration
        fp32 = export_onnx(student, input_shape, out / f"{stem}.fp32.onnx", exporter=exporter or "dynamo")
        calib = calibrate.select_calibration_samples(np.asarray(train[0]), cal.samples)
        int8 = quantize_qdq(fp32, out / f"{stem}.int8.onnx", calib,
                            method=cal.method, percentile=cal.percentile, per_channel=config.per_channel,
                            batch_size=cal.batch_size)
        # PTQ changes the function: report (not enforce) how often INT8 ORT agrees with float torch.
        agree = compare(run_onnx(fp32, x_val), run_onnx(int8, x_val)).to_dict()
        return QuantizedArtifacts(method, bits, int8, verification={"vs_fp32_onnx": agree})

    result = train_quantized(student, train, val, config.train, method=method, bits=bits,
                             scheme=getattr(config, "scheme", None),
                             workdir=workdir, progress=progress,
                             **train_options)
    # Exported, checked and shipped from the CPU, wherever it trained: the same export as a CPU build,
    # and a parity reference in plain FP32 (a GPU's TF32 moved logits by ~2e-3 on an H200).
    deployed = finalize(result.model).cpu()
    val_acc = evaluate(deployed, x_val, np.asarray(val[1]))[1]
    if isinstance(config, QatConfig):
        path = export_qat_qdq(deployed, input_shape, out / f"{stem}.int8.onnx",
                              exporter=exporter or QAT_EXPORTER, dynamic_batch=(exporter or QAT_EXPORTER) != "dynamo")
        report = verify_qdq(deployed, path, x_val, atol=parity_atol, rtol=parity_rtol)
        return QuantizedArtifacts(method, bits, path, model=deployed, train=result, val_accuracy=val_acc,
                                  verification=report.to_dict())
    files = export_lowbit(deployed, input_shape, out / f"{stem}.w{bits}.onnx", exporter=exporter or "dynamo")
    report = check_parity(deployed, files.onnx, x_val[:256], atol=parity_atol, rtol=parity_rtol)
    return QuantizedArtifacts(method, bits, files.onnx, files.packed, files.metadata, model=deployed,
                              train=result, val_accuracy=val_acc, verification=report.to_dict())


def post_training_int8(fp32_onnx: str | Path, out_dir: str | Path, train_x: np.ndarray,
                       val: tuple[np.ndarray, np.ndarray], config: PtqConfig, *, seed: int = 0,
                       more_cpu_flavours: tuple[str, ...] = (), score: str = "val accuracy") -> dict[str, Any]:
    """The PTQ stage's files: FP32 ONNX -> ``model.int8.onnx`` (S8S8, checked TensorRT-compatible) and
    ``model.int8.cpu.onnx`` in ``config.cpu_flavour`` (for ONNX Runtime on a CPU; a copy when that is
    S8S8 too), each calibrated on ``config.calibration.samples`` seeded training images and accuracy-aware
    on ``val`` (:func:`edgec.compress.ptq_accuracy.quantize_within_budget`). ``more_cpu_flavours`` adds
    ``model.int8.<flavour>.onnx`` files (``edgec quantize --flavour a,b``, benchmarks); ``score`` names what
    ``val`` measures in the progress lines (edgec quantize without labels: agreement with FP32). Returns the stage's
    metrics (``file``, ``tensorrt_file``, ``files`` with each file's flavour, CPUs, float layers, accuracy
    steps and QDQ summary, ...).

    Example:
        >>> m = post_training_int8("model.onnx", "out", x_train, (x_val, y_val), PtqConfig())
        >>> m["file"], m["files"]["model.int8.cpu.onnx"]["flavour"]
        ('model.int8.cpu.onnx', 'u8s8_reduce_range')
    """
    out_dir = Path(out_dir)
    cal = config.calibration
    calib = calibrate.select_calibration_samples(train_x, cal.samples, seed=seed)
    options = dict(method=cal.method, percentile=cal.percentile, per_channel=config.per_channel,
                   batch_size=cal.batch_size)
    cpu_flavour = choose_cpu_flavour(config.cpu_flavour)
    files: dict[str, dict] = {}
    extra = [choose_cpu_flavour(f) for f in more_cpu_flavours]
    plan = [("model.int8.onnx", "s8s8", "tensorrt"), ("model.int8.cpu.onnx", cpu_flavour, "onnxruntime-cpu"),
            *((f"model.int8.{f}.onnx", f, "onnxruntime-cpu") for f in dict.fromkeys(extra) if f not in (cpu_flavour, "s8s8"))]
    for name, flavour, runtime in plan:
        out = out_dir / name
        if flavour == "s8s8" and files:  # the CPU file is the TensorRT file: same bytes
            with atomic_path(out) as tmp:
                shutil.copyfile(out_dir / "model.int8.onnx", tmp)
            files[name] = {**files["model.int8.onnx"], "runtime": runtime}
        else:
            ptq = quantize_within_budget(fp32_onnx, out, calib, val[0], val[1], budget_points=config.accuracy_budget,
                                         max_float_layers=config.max_float_layers, flavour=flavour, **options)
            files[name] = {"flavour": flavour, "runtime": runtime, **ptq}
        files[name]["cpus"] = FLAVOUR_CPUS[flavour]
        if flavour in ("s8s8", "reduce_range"):
            assert_tensorrt_qdq(out)  # symmetric INT8 files must stay TensorRT-compatible
        files[name]["qdq"] = qdq_summary(out)
        steps = " -> ".join(f"{s['val_accuracy']:.4f}" for s in files[name]["steps"])
        say(f"  {name} ({flavour}, {runtime}): {score} FP32 {files[name]['fp32_val_accuracy']:.4f}, "
            f"INT8 {steps}; float layers: {', '.join(files[name]['float_layers']) or 'none'}")
    return dict(kind="int8", file="model.int8.cpu.onnx", tensorrt_file="model.int8.onnx", method="ptq",
                bits=8, cpu_flavour=cpu_flavour, cpu_flavour_setting=config.cpu_flavour,
                build_cpu_int8=int8_isa() if config.cpu_flavour == "auto" else None,
                float_layers=files["model.int8.cpu.onnx"]["float_layers"],
                qdq=files["model.int8.cpu.onnx"]["qdq"], files=files, calibration=cal.model_dump())


__all__ = ["QuantizedArtifacts", "post_training_int8", "quantize_for_deployment"]
