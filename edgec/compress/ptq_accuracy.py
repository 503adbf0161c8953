"""Accuracy-aware post-training INT8: keep the most sensitive layers in float until INT8 is within budget.

After calibration the INT8 model is scored on the *validation* split against the FP32 model. If it
loses more than ``budget_points``, the quantized Conv/Gemm/MatMul layers are ranked by sensitivity
and the most sensitive are left in float (ONNX Runtime's ``nodes_to_exclude``: no Q/DQ around them;
TensorRT then runs them in FP16/FP32), one more at a time, up to ``max_float_layers`` (the idea of
NNCF's ``quantize_with_accuracy_control`` and of ModelOpt's per-layer sensitivity).

Sensitivity is "quantize all but one": each layer is left in float on its own and the validation
accuracy and the logits' mean squared error against FP32 are measured; the layer whose float copy
recovers the most (higher accuracy, then lower error) ranks first. That costs one quantization per
layer (a fraction of a second each on edgec's models; calibration ranges are re-collected each time)
and runs only when the budget is missed.

Scores come from ONNX Runtime with graph optimisations off: Q/DQ run as written, the rest in FP32,
i.e. the arithmetic TensorRT and a non-saturating CPU kernel implement. Decisions therefore do not
depend on the build machine's instruction set (see :mod:`edgec.compress.saturation` for what an
x86 CPU without VNNI adds), and the file's bytes stay reproducible.

Example:
    >>> result = quantize_within_budget("model.onnx", "model.int8.onnx", x_cal, x_val, y_val,
    ...                                 budget_points=1.0, max_float_layers=3)
    >>> result["float_layers"], result["steps"][-1]["val_accuracy"]
    ([], 0.993)
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from edgec.atomic import atomic_path
from edgec.compress.quantize import quantize_qdq
from edgec.errors import VerificationFailed


def reference_logits(path: str | Path, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of an ONNX model by ONNX Runtime on the CPU with graph optimisations off (QDQ as written)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.concatenate([sess.run(None, {name: x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)])


_PASS_THROUGH = ("Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity")


def quantized_layers(path: str | Path) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes of a QDQ model whose weight is dequantized, in graph order."""
    model = onnx.load(str(path))
    dq_out = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return [n.name for n in model.graph.node
            if n.op_type in ("Conv", "Gemm", "MatMul") and n.name and len(n.input) > 1 and n.input[1] in dq_out]


def _float_nodes(fp32_onnx: Path, layers: list[str]) -> list[str]:
    """``layers`` plus the shape-only nodes (Flatten, Reshape, ...) that feed nothing else: excluding
    those as well keeps ONNX Runtime from putting a Q/DQ pair on a float layer's input."""
    model = onnx.load(str(fp32_onnx))
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.name)
    out, todo = list(layers), [n for n in model.graph.node if n.name in layers]
    while todo:
        node = todo.pop()
        src = producer.get(node.input[0]) if node.input else None
        if (src is not None and src.op_type in _PASS_THROUGH and src.name and src.name not in out
                and all(c in out for c in consumers.get(src.output[0], []))):
            out.append(src.name)
            todo.append(src)
    return out


def _score(path: Path, x: np.ndarray, y: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    logits = reference_logits(path, x)
    return float((logits.argmax(1) == y).mean()), float(np.mean((logits - ref) ** 2))


def quantize_within_budget(fp32_onnx: str | Path, out_path: str | Path, calibration_x: np.ndarray,
                           val_x: np.ndarray, val_y: np.ndarray, *, budget_points: float = 1.0,
                           max_float_layers: int = 3, **quantize_options: Any) -> dict[str, Any]:
    """Quantize ``fp32_onnx`` (:func:`edgec.compress.quantize.quantize_qdq` with ``quantize_options``)
    so that its validation accuracy is within ``budget_points`` of FP32; write it to ``out_path``.

    Returns ``fp32_val_accuracy``, ``val_accuracy``, ``float_layers`` (left in float, most sensitive
    first), ``steps`` (the float layers and validation accuracy of every file tried) and
    ``sensitivity`` (the ranking, when it ran). At least one layer stays INT8. Raises :class:`VerificationFailed` (nothing written)
    when the budget cannot be met with ``max_float_layers`` layers in float.
    """
    fp32_onnx, out = Path(fp32_onnx), Path(out_path)
    val_x, val_y = np.asarray(val_x), np.asarray(val_y)
    ref = reference_logits(fp32_onnx, val_x)
    fp32_acc = float((ref.argmax(1) == val_y).mean())
    budget = budget_points / 100.0
    steps: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgec-ptq-") as tmp:
        work = Path(tmp)

        def attempt(exclude: list[str], name: str) -> tuple[Path, float, float]:
            path = quantize_qdq(fp32_onnx, work / name, calibration_x,
                                nodes_to_exclude=_float_nodes(fp32_onnx, exclude), **quantize_options)
            acc, mse = _score(path, val_x, val_y, ref)
            return path, acc, mse

        best, acc, mse = attempt([], "all.onnx")
        steps.append({"float_layers": [], "val_accuracy": acc, "logits_mse": mse})
        result: dict[str, Any] = {"fp32_val_accuracy": fp32_acc, "budget_points": budget_points,
                                  "float_layers": [], "steps": steps}
        layers = quantized_layers(best)
        if fp32_acc - acc > budget + 1e-12 and max_float_layers > 0 and layers:
            ranking = []
            for i, layer in enumerate(layers):
                _, a, m = attempt([layer], f"but-{i}.onnx")
                ranking.append({"layer": layer, "val_accuracy": a, "logits_mse": m})
            ranking.sort(key=lambda r: (-r["val_accuracy"], r["logits_mse"], r["layer"]))
            result["sensitivity"] = ranking
            for k in range(1, min(max_float_layers, len(layers) - 1) + 1):  # one layer at least stays INT8
                exclude = [r["layer"] for r in ranking[:k]]
                best, acc, mse = attempt(exclude, f"float-{k}.onnx")
                steps.append({"float_layers": exclude, "val_accuracy": acc, "logits_mse": mse})
                result["float_layers"] = exclude
                if fp32_acc - acc <= budget + 1e-12:
                    break
        result["val_accuracy"] = acc
        if fp32_acc - acc > budget + 1e-12:
            tried = ", ".join(f"[{', '.join(s['float_layers']) or 'none'}] -> {s['val_accuracy']:.4f}" for s in steps)
            raise VerificationFailed(
                f"INT8 misses quantize.accuracy_budget: validation accuracy {acc:.4f} vs FP32 {fp32_acc:.4f} "
                f"(drop {(fp32_acc - acc) * 100:.2f} points > {budget_points:.2f}) with up to "
                f"{len(steps[-1]['float_layers'])} layers kept in float (quantize.max_float_layers "
                f"{max_float_layers}; one layer at least stays INT8); tried (float layers -> val accuracy): {tried}",
                hint="use quantize.method: qat (quantization-aware training), or raise quantize.max_float_layers "
                     "or quantize.accuracy_budget, or try another quantize.calibration.method")
        with atomic_path(out) as tmp_out:
            shutil.copyfile(best, tmp_out)
    return result


__all__ = ["quantize_within_budget", "quantized_layers", "reference_logits"]
