"""Reading ONNX files safely: load, check, describe, open an ONNX Runtime session (no torch).

ONNX files may come from elsewhere, so loading is defensive: missing, empty, corrupt and truncated
files raise :class:`ModelError` naming the file, and external-data locations that are absolute or
leave the model's folder (``..``, symlinks) are refused *before* any external data is read; ONNX
Runtime sessions and the checker are only opened after the same check.

Example:
    >>> model = load_onnx("runs/digits/model.onnx")
    >>> check_onnx("runs/digits/model.onnx")
    >>> describe_io("runs/digits/model.onnx")["inputs"]
    [{'name': 'input', 'shape': ['batch', 1, 8, 8], 'dtype': 'float32'}]
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import onnx

from edgec.errors import ModelError


def _iter_graph_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _iter_node_tensors(node)


def _iter_node_tensors(node: onnx.NodeProto) -> Iterator[onnx.TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("g"):
            yield from _iter_graph_tensors(attr.g)
        for g in attr.graphs:
            yield from _iter_graph_tensors(g)


def _iter_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor of the model, subgraphs and local functions included."""
    yield from _iter_graph_tensors(model.graph)
    for fn in model.functions:
        for node in fn.node:
            yield from _iter_node_tensors(node)


def _is_external(t: onnx.TensorProto) -> bool:
    return t.HasField("data_location") and t.data_location == onnx.TensorProto.EXTERNAL


def uses_external_data(model: onnx.ModelProto) -> bool:
    """Whether any tensor of ``model`` (subgraphs included) keeps its data in another file."""
    return any(_is_external(t) for t in _iter_tensors(model))


def _check_external_locations(model: onnx.ModelProto, path: Path) -> None:
    """Refuse external-data locations that could read files outside the model's folder."""
    folder = path.resolve().parent
    for t in filter(_is_external, _iter_tensors(model)):
        loc = {e.key: e.value for e in t.external_data}.get("location", "")
        parts = loc.replace("\\", "/").split("/")
        escapes = (not loc or PurePosixPath(loc).is_absolute() or PureWindowsPath(loc).is_absolute()
                   or PureWindowsPath(loc).drive != "" or ".." in parts)
        if not escapes:
            resolved = (folder / loc).resolve()  # a symlink inside the folder may still point out
            escapes = folder not in resolved.parents
        if escapes:
            raise ModelError(f"{path}: tensor '{t.name}' refers to external data at '{loc}', outside the "
                             "model's folder; refusing to read it",
                             hint="only load ONNX files from trusted sources; external data files must sit "
                                  "beside the .onnx file (relative path, no '..')")


def load_onnx(path: str | Path, *, load_external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX file, with clear errors for missing, empty, corrupt or truncated files.

    External data is read only from relative locations inside the model's folder; a model that
    points elsewhere is refused even with ``load_external_data=False`` (the checker and ONNX
    Runtime would follow the pointer).

    Example:
        >>> model = load_onnx("runs/digits/model.onnx")
        >>> model.graph.output[0].name
        'logits'
    """
    p = Path(path)
    redo = "re-create it (run the export stage again) or copy a complete file"
    if not p.is_file():
        raise ModelError(f"ONNX file not found: {p}", hint="check the path, or export the model first")
    if p.stat().st_size == 0:
        raise ModelError(f"ONNX file is empty: {p}", hint=redo)
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelError(f"{p} is not a readable ONNX file (corrupt or truncated): {exc}", hint=redo) from exc
    # A protobuf cut at a field boundary still parses; a real model has a graph, outputs and opsets.
    if not model.opset_import or not model.graph.node or not model.graph.output:
        raise ModelError(f"{p} is not a complete ONNX model (no graph, outputs or opset; truncated?)",
                         hint=redo)
    if uses_external_data(model):
        _check_external_locations(model, p)  # even when not loading: the checker and ORT would
    if load_external_data and uses_external_data(model):
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(p.parent))
        except (OSError, ValueError) as exc:
            raise ModelError(f"{p}: cannot read its external data: {exc}",
                             hint="keep the external data files beside the .onnx file") from exc
    return model


def check_onnx(path: str | Path) -> None:
    """Run the full ONNX checker (with strict shape inference); ModelError with its message.

    Example:
        >>> check_onnx("runs/digits/model.onnx")   # returns None when the file is valid
    """
    load_onnx(path, load_external_data=False)  # clean errors + external-data safety first
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"{path} fails the ONNX checker: {exc}",
                         hint="re-export the model (another opset or exporter may help)") from exc


def ort_session(path: str | Path) -> Any:
    """An ONNX Runtime CPU session for ``path`` (quiet logging), after the external-data check.

    Example:
        >>> ort_session("out/model.onnx").run(None, {"input": x})[0].shape
        (8, 10)
    """
    import onnxruntime as ort

    load_onnx(path, load_external_data=False)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only: ORT's warnings are not the user's business here
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _value_info(v: onnx.ValueInfoProto) -> dict[str, Any]:
    tt = v.type.tensor_type
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)).name
    except (KeyError, TypeError, ValueError):
        dtype = "unknown"
    shape: list[int | str | None] = []
    for d in tt.shape.dim:
        shape.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return {"name": v.name, "shape": shape, "dtype": dtype}


def describe_io(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs with shapes; dynamic dimensions appear under their names.

    Example:
        >>> describe_io("out/model.onnx")["outputs"]
        [{'name': 'logits', 'shape': ['batch', 10], 'dtype': 'float32'}]
    """
    model = load_onnx(path, load_external_data=False)
    inits = {t.name for t in model.graph.initializer}  # IR < 4 lists weights as inputs too
    return {"inputs": [_value_info(v) for v in model.graph.input if v.name not in inits],
            "outputs": [_value_info(v) for v in model.graph.output]}


__all__ = ["check_onnx", "describe_io", "load_onnx", "ort_session", "uses_external_data"]
