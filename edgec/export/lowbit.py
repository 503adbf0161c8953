"""Export quantization-trained models faithfully: INT8 QAT as QDQ ONNX, low-bit as ONNX + packed codes.

**INT8 QAT** (:func:`export_qat_qdq`): the fake-quantized model is exported as it is, so every
QuantizeLinear/DequantizeLinear carries the scale learned in training (no re-calibration), then
checked with :func:`edgec.export.qdq.assert_tensorrt_qdq`. Exporter: **TorchScript by default**
for this path. On torch 2.13 the dynamo exporter cannot export a per-tensor fake-quantize with a
symbolic (dynamic) batch: ``torch.export`` has no fake-tensor kernel for
``aten._fake_quantize_per_tensor_affine_cachemask_tensor_qparams``. It does export it with a fixed
batch of 1 (``dynamic_batch=False``), giving an equally valid QDQ file.

**Low-bit** (:func:`export_lowbit`, binary / ternary / k-bit from BinaryConnect or stochastic
rounding, after :func:`edgec.compress.lowbit.finalize_lowbit`): three files side by side::

    <stem>.onnx                 FP32 ONNX; each low-bit layer's weight is exactly scale[c] * code
    <stem>.lowbit.safetensors   per low-bit layer L:  "L.words"  uint32 [Cout, words_per_row]
                                                      "L.scales" float32 [Cout]
                                                      "L.bias"   float32 [Cout]   (if it has one)
    <stem>.lowbit.json          metadata (format "edgec.lowbit/1"): bits, scheme, per-layer shapes...

Packing is edgec's kernel format (:mod:`edgec.kernels.packing`, ``pack_lowbit_codes``): a layer's
weight ``[Cout, Cin/g, kh, kw]`` (or ``[out, in]``) is seen as ``[Cout, K]``, row ``o`` = output
channel, column ``k = (c*kh + r)*kw + s``. Codes are stored in ``container_bits`` = 1, 2, 4 or 8
wide fields (the smallest of those >= bits: 3-bit codes use 4-bit fields, 5..7-bit codes 8-bit
fields): binary +1/-1 as bit 1/0; others as two's complement. Element ``k`` sits in word
``k // (32 // container_bits)`` at bit offset ``container_bits * (k % (32 // container_bits))``,
least significant bits first; each row is zero-padded to whole 32-bit words.
``W[o, k] = scales[o] * code[o, k]``; scales are >= 0 and include any folded BatchNorm.

Example:
    >>> export_qat_qdq(finalize(qat_model), (1, 28, 28), "out/student.int8.onnx")
    >>> files = export_lowbit(finalize(bc_model), (1, 28, 28), "out/student.bin.onnx")
    >>> layers = load_lowbit(files.metadata)          # name -> codes, scales, bias, shape, ...
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import numpy_helper
from safetensors.numpy import load_file, save_file

from edgec.atomic import atomic_path, atomic_write_json
from edgec.compare import compare, torch_outputs
from edgec.errors import ArtifactError, ModelError, VerificationFailed
from edgec.export.onnx import ParityReport, export_onnx
from edgec.export.qdq import assert_tensorrt_qdq
from edgec.kernels.packing import LowBitWeight as Packed
from edgec.kernels.packing import pack_lowbit_codes, unpack_lowbit_codes
from edgec.onnx_files import ort_session

if TYPE_CHECKING:
    from torch import nn

LOWBIT_FORMAT = "edgec.lowbit/1"
QAT_EXPORTER = "torchscript"
BIT_ORDER = ("row-major [Cout, K], K = (c*kh + r)*kw + s; field k of a row in word k // (32 // cb) at "
             "bit cb * (k % (32 // cb)), LSB first; rows zero-padded to 32-bit words; binary: bit 1 = +1, "
             "0 = -1; otherwise cb-bit two's complement")


def export_qat_qdq(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, *,
                   exporter: str = QAT_EXPORTER, dynamic_batch: bool = True, opset: int = 18) -> Path:
    """Export an INT8 QAT model (its learned scales) to a QDQ ONNX file and check it for TensorRT.

    Example:
        >>> export_qat_qdq(finalize(result.model), (1, 8, 8), "out/student.int8.onnx")
        PosixPath('out/student.int8.onnx')
    """
    from edgec.compress.fakequant import FAKEQUANT_LAYERS

    if not any(isinstance(m, FAKEQUANT_LAYERS) for m in model.modules()):
        raise ModelError(f"{type(model).__name__} has no INT8 fake-quant layers",
                         hint="train it with train_quantized(method='qat') and finalize() it first")
    if exporter == "dynamo" and dynamic_batch:
        raise ModelError("the dynamo exporter of this torch cannot export per-tensor fake quantization "
                         "with a dynamic batch (no fake-tensor kernel for "
                         "_fake_quantize_per_tensor_affine_cachemask_tensor_qparams)",
                         hint="use exporter 'torchscript' (the default for QAT), or dynamic_batch: false")
    out = export_onnx(model, input_shape, path, exporter=exporter, dynamic_batch=dynamic_batch, opset=opset)
    assert_tensorrt_qdq(out)
    return out


def run_onnx(path: str | Path, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """ONNX Runtime (CPU) outputs of ``path`` on ``x``, fed in batches its input shape accepts."""
    sess = ort_session(path)
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = fixed or batch_size
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.concatenate([sess.run(None, {inp.name: x[i:i + step]})[0] for i in range(0, len(x), step)])


def verify_qdq(model: nn.Module, path: str | Path, x: np.ndarray, *,
               min_top1_agreement: float = 0.99, atol: float | None = None,
               rtol: float = 0.0) -> ParityReport:
    """Compare ONNX Runtime on the QDQ file with the fake-quantized torch model on ``x``.

    Elementwise differences of one quantization step are expected (ORT divides by the scale,
    torch multiplies by its inverse, so a value on a rounding boundary may round differently);
    the test is top-1 agreement. With ``atol`` the fraction of logits beyond ``atol + rtol * |torch|``
    is reported (``outside_tolerance``), not enforced. The torch reference runs without TF32.
    VerificationFailed below ``min_top1_agreement``.

    Example:
        >>> verify_qdq(model, "out/student.int8.onnx", x_val).top1_agreement
        1.0
    """
    got = run_onnx(path, x)
    ref = torch_outputs(model, x)
    report = compare(ref, got, atol=atol, rtol=rtol)
    if not report.top1_agreement >= min_top1_agreement:
        raise VerificationFailed(f"QDQ model {path} agrees with the fake-quantized torch model on only "
                                 f"{report.top1_agreement:.2%} of {report.n} inputs (needs "
                                 f">= {min_top1_agreement:.0%}); max |diff| {report.max_abs_diff:.3g}",
                                 hint="re-export with the other exporter; check the model was finalize()d")
    return report


def container_bits(bits: int) -> int:
    """Field width used to pack ``bits``-bit codes: the smallest of 1, 2, 4, 8 that holds them.

    Example:
        >>> [container_bits(b) for b in (1, 2, 3, 4, 5, 8)]
        [1, 2, 4, 4, 8, 8]
    """
    return next(c for c in (1, 2, 4, 8) if c >= bits)


@dataclass(frozen=True)
class LowBitFiles:
    """The three files :func:`export_lowbit` writes."""

    onnx: Path
    packed: Path
    metadata: Path


def _onnx_weights(path: Path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _find_weight(inits: dict[str, np.ndarray], name: str, weight: np.ndarray) -> str:
    """The initialiser holding ``weight`` exactly (by name first, then by value); else VerificationFailed."""
    candidates = [f"{name}.weight"] + [k for k in inits if k != f"{name}.weight"]
    for key in candidates:
        arr = inits.get(key)
        if arr is not None and arr.shape == weight.shape and np.array_equal(arr, weight):
            return key
        if arr is not None and arr.ndim == 2 and arr.shape == weight.T.shape and np.array_equal(arr, weight.T):
            return key  # an exporter may store a Linear weight transposed (MatMul B = W^T)
    raise VerificationFailed(f"the ONNX file does not hold layer {name}'s low-bit weight exactly",
                             hint="the exporter changed the weights (folding?); try the other exporter")


def export_lowbit(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, *,
                  exporter: str = "dynamo", dynamic_batch: bool = True, opset: int = 18) -> LowBitFiles:
    """Export a finalized BC/SR model: FP32 ONNX at ``path`` plus the packed codes and metadata.

    Checks that every low-bit layer's weight is in the ONNX file bit-exactly as ``scale * code``.

    Example:
        >>> files = export_lowbit(finalize(result.model), (1, 28, 28), "out/student.ternary.onnx")
        >>> files.packed.name
        'student.ternary.lowbit.safetensors'
    """
    from edgec.compress.lowbit import lowbit_modules  # torch: exporting needs it, reading the files does not

    layers = lowbit_modules(model)
    if not layers:
        raise ModelError(f"{type(model).__name__} has no deployed low-bit layers",
                         hint="finalize() a model trained with method binaryconnect or stochastic_rounding")
    onnx_path = export_onnx(model, input_shape, path, exporter=exporter, dynamic_batch=dynamic_batch, opset=opset)
    stem = onnx_path.with_suffix("")
    packed_path, meta_path = Path(f"{stem}.lowbit.safetensors"), Path(f"{stem}.lowbit.json")
    inits = _onnx_weights(onnx_path)

    tensors: dict[str, np.ndarray] = {}
    entries: list[dict[str, Any]] = []
    for name, m in layers:
        info = m.lowbit
        weight = m.weight.detach().cpu().numpy()
        codes = info.codes.numpy().reshape(weight.shape[0], -1)   # [Cout, K]
        scales = info.scale.numpy().astype(np.float32)            # [Cout]
        cb = container_bits(info.bits)
        packed = pack_lowbit_codes(codes, scales, cb)
        tensors[f"{name}.words"] = np.ascontiguousarray(packed.words, dtype=np.uint32)
        tensors[f"{name}.scales"] = scales
        if m.bias is not None:
            tensors[f"{name}.bias"] = m.bias.detach().cpu().numpy().astype(np.float32)
        conv = hasattr(m, "kernel_size")
        entries.append({
            "name": name, "kind": "conv2d" if conv else "linear", "weight_shape": list(weight.shape),
            "onnx_weight": _find_weight(inits, name, weight), "bits": info.bits, "scheme": info.scheme,
            "container_bits": cb, "in_features_packed": int(codes.shape[1]),
            "words_per_row": int(packed.words.shape[1]), "has_bias": m.bias is not None,
            "folded_batchnorm": info.folded_bn, "rule": info.rule,
            **({"stride": list(m.stride), "padding": list(m.padding), "dilation": list(m.dilation),
                "groups": m.groups} if conv else {})})
    with atomic_path(packed_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": LOWBIT_FORMAT})
    lowbit_names = {n for n, _ in layers}
    float_layers = [n for n, m in model.named_modules()
                    if n not in lowbit_names and type(m).__name__ in ("Conv2d", "Linear")]
    schemes = sorted({(e["scheme"], e["bits"]) for e in entries})
    atomic_write_json(meta_path, {
        "format": LOWBIT_FORMAT, "onnx": onnx_path.name, "packed": packed_path.name,
        "packed_sha256": hashlib.sha256(packed_path.read_bytes()).hexdigest(),
        "scheme": schemes[0][0] if len(schemes) == 1 else "mixed",
        "bits": schemes[0][1] if len(schemes) == 1 else None,
        "bit_order": BIT_ORDER, "weight_formula": "W[o, k] = scales[o] * code[o, k]",
        "layers": entries, "float_layers": float_layers})
    return LowBitFiles(onnx=onnx_path, packed=packed_path, metadata=meta_path)


def load_lowbit(metadata_path: str | Path) -> dict[str, dict[str, Any]]:
    """Read a low-bit export back: ``{layer: {"codes" int8 (weight shape), "scales", "bias", **meta}}``.

    The packed file's sha256 must match the metadata (ArtifactError otherwise).

    Example:
        >>> layers = load_lowbit("out/student.bin.lowbit.json")
        >>> w = layers["features.stage2.conv1"]["scales"][:, None, None, None] * layers[...]["codes"]
    """
    meta_path = Path(metadata_path)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read low-bit metadata {meta_path}: {exc}",
                            hint="re-run the export that wrote it") from exc
    if meta.get("format") != LOWBIT_FORMAT:
        raise ArtifactError(f"{meta_path} is not {LOWBIT_FORMAT} metadata", hint="re-run the export")
    packed_path = meta_path.with_name(meta["packed"])
    if hashlib.sha256(packed_path.read_bytes()).hexdigest() != meta["packed_sha256"]:
        raise ArtifactError(f"{packed_path} does not match its metadata's sha256",
                            hint="the file was changed or truncated; re-run the export")
    tensors = load_file(str(packed_path))
    out: dict[str, dict[str, Any]] = {}
    for e in meta["layers"]:
        name = e["name"]
        packed = Packed(words=tensors[f"{name}.words"], scales=tensors[f"{name}.scales"],
                        bits=e["container_bits"], in_features=e["in_features_packed"])
        codes = unpack_lowbit_codes(packed).reshape(e["weight_shape"])
        out[name] = {**e, "codes": codes, "scales": tensors[f"{name}.scales"],
                     "bias": tensors.get(f"{name}.bias")}
    return out


__all__ = ["BIT_ORDER", "LOWBIT_FORMAT", "QAT_EXPORTER", "LowBitFiles", "container_bits", "export_lowbit",
           "export_qat_qdq", "load_lowbit", "run_onnx", "verify_qdq"]
