"""The BiLSTM student to ONNX (one ``LSTM`` node), its parity with torch, and INT8 in ONNX Runtime.

- :func:`export_student`: TorchScript exporter (the dynamo exporter cannot keep ``nn.LSTM`` as the
  ONNX LSTM op); input ``input_ids`` int64 ``[batch, seq]`` (both dynamic), output ``logits``
  ``[batch, classes]``; lengths are read from the padding inside the graph, so a server feeds one
  array. The full ONNX checker runs on the result.
- :func:`student_parity`: torch vs ONNX Runtime on real token ids, batched (varied lengths, padding)
  and one sentence at a time (no padding, as a batch-1 server calls it).
- :func:`quantize_student`: ONNX Runtime *dynamic* quantization, which is what ORT supports well
  for recurrent models: ``LSTM`` -> ``DynamicQuantizeLSTM`` (INT8 weights, activations quantized
  per call), ``Gemm``/``MatMul`` -> ``MatMulInteger``, the embedding ``Gather`` -> an INT8 table.
  Static QDQ (the vision path) has no LSTM support in ORT's quantizer and TensorRT's INT8 LSTM
  support is limited, so the text INT8 model is for ONNX Runtime on CPU.

Example:
    >>> export_student(model, "model.onnx")
    >>> student_parity(model, "model.onnx", ids).max_abs_diff < 1e-4
    True
    >>> quantize_student("model.onnx", "model.int8.onnx")
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from onnxruntime.quantization import QuantType, quantize_dynamic

from edgec.atomic import atomic_path
from edgec.compare import compare, torch_outputs
from edgec.compress.quantize import _quiet_ort
from edgec.errors import ModelError, VerificationFailed
from edgec.export.onnx import check_onnx, quiet_exporters
from edgec.onnx_files import load_onnx, ort_session

INPUT, OUTPUT = "input_ids", "logits"


def export_student(model: Any, path: str | Path, opset: int = 18) -> Path:
    """Export the BiLSTM (eval mode) to one ONNX file with dynamic batch and sequence axes."""
    import torch  # the text package keeps torch out of its import (edgec.text's docstring)

    target = Path(path)
    model.eval()
    example = torch.tensor([[4, 5, 6], [7, 8, 0]], dtype=torch.long)  # two lengths: nothing gets specialised
    with atomic_path(target) as tmp:
        try:
            with quiet_exporters(), torch.no_grad():
                torch.onnx.export(model, (example,), str(tmp), dynamo=False, input_names=[INPUT], output_names=[OUTPUT],
                                  dynamic_axes={INPUT: {0: "batch", 1: "seq"}, OUTPUT: {0: "batch"}},
                                  opset_version=opset, do_constant_folding=True)
        except Exception as exc:  # the exporter raises many types; all mean "did not export"
            raise ModelError(f"could not export the BiLSTM student to ONNX (opset {opset}): {type(exc).__name__}: {exc}",
                             hint="try another export.opset (>= 14)") from exc
        check_onnx(tmp)
    return target


def _torch_logits(model: Any, ids: np.ndarray) -> np.ndarray:
    return torch_outputs(model, ids, dtype=np.int64)  # on the model's device, FP32 without TF32


def student_parity(model: Any, onnx_path: str | Path, ids: np.ndarray, *, atol: float = 1e-4, rtol: float = 1e-3,
                   batch_size: int = 64, singles: int = 32):
    """Compare torch and ORT on ``ids`` (N, T) in batches, and on the first ``singles`` sentences one
    by one without padding, by :func:`edgec.compare.compare` (every logit within ``atol + rtol * |torch|``,
    top-1 agreement >= 0.99); :class:`VerificationFailed` with the numbers when they differ."""
    sess = ort_session(onnx_path)
    ref, got = [], []
    for s in range(0, len(ids), batch_size):
        chunk = ids[s:s + batch_size]
        chunk = chunk[:, :max(1, int((chunk != 0).sum(1).max()))]  # like a server: pad to the batch's longest
        ref.append(_torch_logits(model, chunk))
        got.append(sess.run(None, {INPUT: chunk})[0])
    for row in ids[:singles]:
        one = row[row != 0][None, :] if (row != 0).any() else row[None, :1]
        ref.append(_torch_logits(model, one))
        got.append(sess.run(None, {INPUT: one})[0])
    report = compare(np.concatenate(ref), np.concatenate(got), atol=atol, rtol=rtol)
    if not report.passed(min_top1_agreement=0.99):
        raise VerificationFailed(
            f"ONNX student {onnx_path} disagrees with torch: {report.describe()}",
            hint="loosen export.parity_atol/parity_rtol if the gap is numerical noise")
    return report


def quantize_student(src: str | Path, dst: str | Path) -> Path:
    """FP32 ONNX -> dynamic INT8 ONNX (see the module docstring); written atomically."""
    target = Path(dst)
    with atomic_path(target) as tmp, _quiet_ort():
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8,
                         op_types_to_quantize=["LSTM", "MatMul", "Gemm", "Gather"])
    return target


def op_counts(path: str | Path) -> dict[str, int]:
    """How many nodes of each type the graph has (e.g. proof that the LSTM was quantized)."""
    return dict(sorted(Counter(n.op_type for n in load_onnx(path).graph.node).items()))
