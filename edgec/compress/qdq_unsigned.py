"""A symmetric S8S8 QDQ model rewritten as the same model in U8U8, exactly, for ONNX Runtime on any CPU.

Quantization-aware training exports symmetric INT8 (S8S8: every zero point 0), the file TensorRT wants.
ONNX Runtime runs S8S8 on x86 CPUs without VNNI through VPMADDUBSW, whose int16 pair sums saturate
(:mod:`edgec.compress.saturation`); its U8U8 kernel widens to int16 first and cannot saturate
(:mod:`edgec.compress.int8_cpu`). Unlike post-training quantization, QAT's scales were *learned*, so the
CPU file must not be re-calibrated. It need not be: shifting every INT8 tensor by 128 is exact,

    Q_s8(x) = clamp(round(x / s), -128, 127)        DQ_s8(q) = q * s
    Q_u8(x) = clamp(round(x / s) + 128, 0, 255)     DQ_u8(q) = (q - 128) * s

so ``Q_u8 = Q_s8 + 128`` and ``DQ_u8(Q_u8(x)) = DQ_s8(Q_s8(x))`` for every x: each int8 zero point
becomes uint8 128 and each int8 weight initializer ``w`` becomes ``w + 128`` (uint8). Scales and the
graph are untouched, so the two files compute the same function.

Example:
    >>> to_unsigned_qdq("model.int8.onnx", "model.int8.cpu.onnx")
    {'zero_points': 12, 'weights': 6}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgec.atomic import atomic_path
from edgec.errors import ModelError

_QDQ = ("QuantizeLinear", "DequantizeLinear")


def to_unsigned_qdq(src: str | Path, dst: str | Path) -> dict[str, int]:
    """Rewrite the symmetric INT8 QDQ model ``src`` as the equivalent UINT8 one at ``dst`` (atomically).

    Returns how many zero points and INT8 initializers (weights) were shifted. Raises
    :class:`ModelError` when ``src`` is not symmetric INT8 (a non-zero INT8 zero point), since the shift
    is exact only there.
    """
    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    # The TorchScript exporter shares one initializer between several inputs through Identity nodes.
    identity = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "Identity"}

    def constant(name: str) -> str | None:
        while name not in inits and name in identity:
            name = identity[name]
        return name if name in inits else None

    zero_points: set[str] = set()
    int8_inputs: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in _QDQ:
            continue
        zp_name = constant(node.input[2]) if len(node.input) >= 3 else None
        if zp_name is None:
            raise ModelError(f"{src}: {node.op_type} {node.name!r} has no constant zero point",
                             hint="export the model with explicit INT8 zero points (symmetric QDQ)")
        zp = inits[zp_name]
        if zp.data_type != onnx.TensorProto.INT8:
            continue  # already unsigned (or another type): left as it is
        if np.any(numpy_helper.to_array(zp) != 0):
            raise ModelError(f"{src}: {node.op_type} {node.name!r} has a non-zero INT8 zero point",
                             hint="only symmetric INT8 QDQ files (zero points 0) convert exactly to UINT8")
        zero_points.add(zp.name)
        weight = constant(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if weight is not None:  # a quantized weight stored as INT8 (PTQ); QAT stores float + QuantizeLinear
            int8_inputs.add(weight)
    for name in sorted(zero_points):
        _replace(model, inits[name], np.full(numpy_helper.to_array(inits[name]).shape, 128, np.uint8))
    for name in sorted(int8_inputs):
        w = numpy_helper.to_array(inits[name])
        if w.dtype != np.int8:
            raise ModelError(f"{src}: quantized initializer {name!r} is {w.dtype}, not int8",
                             hint="only INT8 QDQ weights convert to UINT8")
        _replace(model, inits[name], (w.astype(np.int16) + 128).astype(np.uint8))
    for value in list(model.graph.value_info):  # inferred INT8 activation types are stale now
        if value.type.tensor_type.elem_type == onnx.TensorProto.INT8:
            value.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    onnx.checker.check_model(model)
    with atomic_path(Path(dst)) as tmp:
        onnx.save(model, str(tmp))
    return {"zero_points": len(zero_points), "weights": len(int8_inputs)}


def _replace(model: onnx.ModelProto, old: onnx.TensorProto, values: np.ndarray) -> None:
    """Replace initializer ``old`` by ``values`` under the same name."""
    new = numpy_helper.from_array(values, old.name)
    old.CopyFrom(new)


__all__ = ["to_unsigned_qdq"]
