"""Post-training static INT8 quantization to QDQ ONNX files for TensorRT and for ONNX Runtime on a CPU.

The default flavour (``s8s8``) has the settings TensorRT's ONNX parser needs (DESIGN.md section 8):
QDQ format, INT8 weights and activations, symmetric ranges (every zero point 0), per-channel weight
scales on the output-channel axis, and float biases (``QuantizeBias: False``; TensorRT rejects INT32
bias DQ). That file can saturate ONNX Runtime's INT8 kernels on x86 CPUs without VNNI
(:mod:`edgec.compress.saturation`); the ``reduce_range``, ``u8u8`` and ``u8s8_reduce_range`` flavours
cannot, and only the uint8-activation flavours (``u8s8``, ``u8s8_reduce_range``) run faster than FP32 in
ONNX Runtime on x86 (``benchmarks/results/realistic*.json``).

Example:
    >>> x_cal = select_calibration_samples(x_train, 256)
    >>> quantize_qdq("runs/digits/model.onnx", "runs/digits/model.int8.onnx", x_cal, method="entropy")
    PosixPath('runs/digits/model.int8.onnx')
    >>> qdq_problems("runs/digits/model.int8.onnx")
    []
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import inspect

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static
from onnxruntime.quantization import calibrate as ort_calibrate
from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

from edgec.atomic import atomic_path
from edgec.compress.calibrate import CalibrationReader, calibration_method
from edgec.console import warn
from edgec.errors import DataError, EdgecError, ModelError, RecipeError
from edgec.onnx_files import describe_io, load_onnx


@contextlib.contextmanager
def _quiet_ort() -> Iterator[list[logging.LogRecord]]:
    """Keep ONNX Runtime's quantization tool off the terminal; yield the warnings it logged.

    The tool prints calibration progress to stdout, logs through the *root* logger (whose first
    use would also install a stderr handler for the whole process via ``basicConfig``), and its
    sessions log C++ warnings. All are captured or raised to error level for the call only.
    """
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    root.handlers = [_Keep(logging.WARNING)]
    root.setLevel(logging.WARNING)
    ort.set_default_logger_severity(3)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield records
    finally:
        root.handlers, root.level = saved_handlers, saved_level
        ort.set_default_logger_severity(2)  # ORT's default (warning)


def _calibration_batches(x: np.ndarray, input_shape: list, batch_size: int) -> tuple[int, bool]:
    """Batch size to calibrate with, and whether a short last batch must be dropped."""
    if x.ndim != len(input_shape) or any(isinstance(d, int) and d != s
                                         for d, s in zip(input_shape[1:], x.shape[1:])):
        raise DataError(f"calibration data has shape {tuple(x.shape)} but the model expects "
                        f"{tuple(input_shape)} (batch first)",
                        hint="calibrate with samples from the data the model was trained on")
    batch = input_shape[0]
    if isinstance(batch, int) and batch > 0:  # exported with a fixed batch: feed exactly that size
        if len(x) < batch:
            raise DataError(f"calibration set has {len(x)} samples but the model's fixed batch is {batch}",
                            hint="provide more calibration samples or export with a dynamic batch")
        return batch, True
    return batch_size, False


# Entropy calibration histogram: ORT's default (128 bins, 128 quantized bins) leaves the KL search a
# single candidate, the full range, i.e. it silently equals min-max. TensorRT's classic 2048 bins
# cost ~1 s per tensor in ORT's pure-Python KL loop; 512 bins (193 candidate thresholds, a
# resolution of max|x|/256) cost ~0.15 s per tensor and still clip outliers.
ENTROPY_BINS = 512
ENTROPY_QUANTIZED_BINS = 128


def _entropy_ranges(model: Path, reader: CalibrationReader, work: Path, symmetric: bool = True) -> Path | None:
    """Run ORT's entropy calibrator with a useful histogram; return a calibration cache file.

    quantize_static cannot pass histogram sizes to its calibrator, but (ORT >= 1.31) it takes
    ranges from ``calibration_cache_path``. Older ORT: None, and quantize_static's defaults apply.
    """
    if ("calibration_cache_path" not in inspect.signature(quantize_static).parameters
            or not hasattr(ort_calibrate, "save_tensors_data")):
        warn("this onnxruntime cannot take precomputed calibration ranges, so 'entropy' calibration "
             "falls back to its default histogram, which gives min-max ranges; upgrade onnxruntime (>= 1.31)")
        return None
    # Calibrate the same op types quantize_static would (its default: both registries).
    op_types = sorted(set(QLinearOpsRegistry) | set(QDQRegistry))
    calibrator = ort_calibrate.create_calibrator(
        model, op_types, augmented_model_path=str(work / "entropy-augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"symmetric": symmetric, "num_bins": ENTROPY_BINS,
                       "num_quantized_bins": ENTROPY_QUANTIZED_BINS})
    calibrator.collect_data(reader)
    ranges = calibrator.compute_data()
    del calibrator  # releases its ONNX Runtime session before the folder is removed
    cache = work / "entropy-ranges.json"
    ort_calibrate.save_tensors_data(ranges, cache)
    return cache


# INT8 flavours: (activation type, weight type, symmetric activations, symmetric weights, reduce_range).
# s8s8 is TensorRT's; reduce_range (7-bit weights), u8u8 and u8s8_reduce_range cannot saturate ONNX Runtime's
# non-VNNI x86 kernels (edgec.compress.saturation); u8s8 is ORT's classic default (fast; saturates without
# VNNI); u8s8_reduce_range, the build's CPU file by default, is as fast and cannot saturate.
FLAVOURS: dict[str, tuple[str, str, bool, bool, bool]] = {
    "s8s8": ("QInt8", "QInt8", True, True, False),
    "reduce_range": ("QInt8", "QInt8", True, True, True),
    "u8u8": ("QUInt8", "QUInt8", False, False, False),
    "u8s8": ("QUInt8", "QInt8", False, True, False),
    "u8s8_reduce_range": ("QUInt8", "QInt8", False, True, True),  # ORT's AVX2 recipe: 7-bit weights
}


def quantize_qdq(fp32_onnx: str | Path, out_path: str | Path, calibration_x: np.ndarray, *,
                 method: str = "minmax", percentile: float = 99.999, per_channel: bool = True,
                 batch_size: int = 32, flavour: str = "s8s8",
                 nodes_to_exclude: list[str] | None = None) -> Path:
    """Quantize an FP32 ONNX model to an INT8 QDQ ONNX file, written atomically.

    ``calibration_x`` holds the calibration inputs (batch first); ``method`` is ``minmax``,
    ``percentile`` (clipping at ``percentile``) or ``entropy``. ``flavour`` (:data:`FLAVOURS`):
    ``s8s8`` (default) is the symmetric INT8 file TensorRT needs; ``reduce_range`` is the same with
    7-bit weights (still TensorRT-compatible; cannot saturate ONNX Runtime on x86 without VNNI);
    ``u8u8`` / ``u8s8`` / ``u8s8_reduce_range`` use asymmetric UINT8 activations (ONNX Runtime only; on
    x86 the u8s8 ones run on ORT's fast integer kernels). ``nodes_to_exclude``
    names nodes left in float (no Q/DQ around them).

    Example:
        >>> quantize_qdq("model.onnx", "model.int8.onnx", x_cal, method="percentile", percentile=99.99)
        PosixPath('model.int8.onnx')
    """
    src, out = Path(fp32_onnx), Path(out_path)
    calib = calibration_method(method)
    if flavour not in FLAVOURS:
        raise RecipeError(f"unknown INT8 flavour '{flavour}'", hint=f"valid flavours: {', '.join(FLAVOURS)}")
    act_type, weight_type, act_sym, weight_sym, reduce_range = FLAVOURS[flavour]
    if not 0.0 < float(percentile) <= 100.0:
        raise RecipeError(f"quantize.calibration.percentile must be in (0, 100], got {percentile}",
                          hint="use a value such as 99.99 or 99.999")
    load_onnx(src)  # clear errors for missing/corrupt files; refuses unsafe external-data paths
    io_desc = describe_io(src)
    if len(io_desc["inputs"]) != 1:
        raise ModelError(f"{src} has {len(io_desc['inputs'])} inputs; quantize_qdq calibrates single-input "
                         "models only", hint="export the model with one input tensor")
    inp = io_desc["inputs"][0]
    x = np.asarray(calibration_x)
    if x.size == 0:
        raise DataError("calibration set is empty", hint="provide calibration samples (quantize.calibration)")
    if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
        raise DataError("calibration data contains NaN or infinite values",
                        hint="check the data pipeline (normalisation, missing values)")
    bs, drop_last = _calibration_batches(x, inp["shape"], batch_size)
    dtype = np.dtype(inp["dtype"]).type if inp["dtype"] != "unknown" else np.float32

    extra_options = {
        "ActivationSymmetric": act_sym,   # zero point 0 for activations (TensorRT: symmetric only)
        "WeightSymmetric": weight_sym,
        "QuantizeBias": False,         # keep float biases; TensorRT rejects INT32 bias DequantizeLinear
        "CalibPercentile": float(percentile),  # ORT's extra-option name; used only by "percentile"
    }
    # Percentile uses ORT's 2048-bin histogram (cheap: one cumulative sum per tensor).

    # Everything ORT writes (pre-processed model, its own "ort.quant.*" folder with the augmented
    # calibration model, the quantized model) lives in a private temporary folder; only the finished
    # file is copied next to its final name and renamed into place.
    with tempfile.TemporaryDirectory(prefix="edgec-quant-") as work:
        pre = Path(work) / "preprocessed.onnx"
        qdq = Path(work) / "quantized.onnx"
        with _quiet_ort() as logged:
            try:
                # Shape inference only. ORT's graph optimisation is skipped: the exporters already
                # fold BatchNorm and constants in eval mode, and the optimiser's output is tailored
                # to ORT (it declares com.microsoft/nchwc domains) while this file must suit TensorRT.
                quant_pre_process(str(src), str(pre), skip_optimization=True)
                reader = CalibrationReader(x, inp["name"], bs, drop_last=drop_last, dtype=dtype)
                cache = (_entropy_ranges(pre, reader, Path(work), symmetric=act_sym)
                         if calib == CalibrationMethod.Entropy else None)
                quantize_static(str(pre), str(qdq), None if cache else reader,
                                quant_format=QuantFormat.QDQ, activation_type=QuantType[act_type],
                                weight_type=QuantType[weight_type], per_channel=per_channel,
                                reduce_range=reduce_range, nodes_to_exclude=list(nodes_to_exclude or []),
                                calibrate_method=calib, extra_options=extra_options,
                                **({"calibration_cache_path": str(cache)} if cache else {}))
            except EdgecError:
                raise
            except Exception as exc:  # ORT's pybind errors derive from Exception directly
                notes = "; ".join(r.getMessage() for r in logged[-3:])
                raise ModelError(f"ONNX Runtime could not quantize {src}: {exc}" + (f" ({notes})" if notes else ""),
                                 hint="check that the model runs in ONNX Runtime (check_parity) and that the "
                                      "calibration data matches its input") from exc
        with atomic_path(out) as tmp:
            shutil.copyfile(qdq, tmp)
    return out


__all__ = ["FLAVOURS", "quantize_qdq"]
