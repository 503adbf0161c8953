"""FP32 ONNX export, safe loading, the ONNX checker, and parity between torch and ONNX Runtime.

Example:
    >>> path = export_onnx(model, (1, 8, 8), "runs/digits/model.onnx")   # + a batch dim named "batch"
    >>> report = check_parity(model, path, x_val[:256])                    # raises VerificationFailed
    >>> describe_io(path)["inputs"]
    [{'name': 'input', 'shape': ['batch', 1, 8, 8], 'dtype': 'float32'}]

``load_onnx``, ``check_onnx``, ``describe_io`` and ``ort_session`` live in ``edgec.onnx_files``
(no torch) and are re-exported here; torch itself is imported lazily by the two functions above.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from edgec.atomic import atomic_path
from edgec.compare import Comparison, compare, torch_outputs
from edgec.errors import ModelError, VerificationFailed
from edgec.onnx_files import check_onnx, describe_io, load_onnx, ort_session, uses_external_data

if TYPE_CHECKING:
    import torch
    from torch import nn

EXPORTERS = ("dynamo", "torchscript")

# Loggers the exporters talk through (progress, "torchvision is not installed. Skipping ...").
_NOISY_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo", "torch.fx",
                  "torch.utils._sympy", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def quiet_exporters() -> Iterator[io.StringIO]:
    """Silence warnings, exporter loggers and stray prints for the duration of the block.

    A pipeline stage must not flood the user's terminal with the exporters' notes (deprecations,
    skipped torchvision ops, FutureWarnings). Captured stdout is yielded so a failure can quote it.
    """
    buf = io.StringIO()
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in _NOISY_LOGGERS:  # CRITICAL: failures log ERROR lines too; our ModelError says it all
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield buf
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, *, opset: int = 18,
                dynamic_batch: bool = True, exporter: str = "dynamo", input_name: str = "input",
                output_name: str = "logits", input_dtype: torch.dtype | None = None) -> Path:
    """Export ``model`` (in eval mode) to one self-contained FP32 ONNX file and run the full checker.

    ``input_shape`` is the shape of one sample, without the batch (e.g. ``(1, 28, 28)``); the
    exported input is ``[batch, *input_shape]`` with a symbolic dimension named ``"batch"`` when
    ``dynamic_batch``, else a fixed batch of 1. ``input_dtype`` defaults to float32 (use
    ``torch.long`` for token ids).

    Example:
        >>> export_onnx(model, (3, 32, 32), "out/model.onnx", exporter="torchscript")
        PosixPath('out/model.onnx')
    """
    import torch

    if exporter not in EXPORTERS:
        raise ModelError(f"unknown ONNX exporter '{exporter}'",
                         hint=f"use one of: {', '.join(EXPORTERS)}")
    sample = tuple(int(d) for d in input_shape)
    if not sample or min(sample) < 1:
        raise ModelError(f"invalid input shape {tuple(input_shape)} for ONNX export",
                         hint="give the shape of one sample without the batch, e.g. (1, 28, 28)")
    # torch.export specialises dimensions of size 0 and 1, so a batch-1 example would freeze the
    # batch dimension that we want symbolic: trace with batch 2 instead.
    shape = (2 if dynamic_batch else 1, *sample)
    dtype = input_dtype or torch.float32
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=gen) if dtype.is_floating_point
         else torch.zeros(shape)).to(device=device, dtype=dtype)

    target = Path(path)
    was_training = model.training
    model.eval()
    try:
        with atomic_path(target) as tmp:
            _run_exporter(model, x, tmp, exporter, opset, dynamic_batch, input_name, output_name)
            _ensure_single_file(tmp, target)
            io_desc = describe_io(tmp)
            names = ([i["name"] for i in io_desc["inputs"]][:1], [o["name"] for o in io_desc["outputs"]][:1])
            if names != ([input_name], [output_name]):
                raise ModelError(f"exported graph has inputs/outputs {names}, expected "
                                 f"{([input_name], [output_name])}",
                                 hint="the model must take one tensor and return one tensor (or a tuple whose "
                                      "first item is the logits)")
            try:
                check_onnx(tmp)
            except ModelError as exc:  # name the file the user asked for, not our temporary
                raise ModelError(exc.message.replace(str(tmp), str(target)), hint=exc.hint) from exc
    finally:
        model.train(was_training)
    return target


# Node metadata the dynamo exporter writes that holds the *building machine's* absolute source
# paths: it leaks the user's directory layout into shipped models and makes the same model export
# to different bytes on different machines (so builds could not be compared byte for byte).
_MACHINE_SPECIFIC_METADATA = ("pkg.torch.onnx.stack_trace",)


def _strip_stack_traces(path: Path) -> None:
    """Remove machine-specific node metadata (see above) from an exported file, in place."""
    import onnx

    model = onnx.load(str(path))
    graphs = [model.graph, *(f for f in model.functions)]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            keep = [p for p in node.metadata_props if p.key not in _MACHINE_SPECIFIC_METADATA]
            del node.metadata_props[:]
            node.metadata_props.extend(keep)
            graphs.extend(a.g for a in node.attribute if a.HasField("g"))
    onnx.save(model, str(path))


def _run_exporter(model: nn.Module, x: torch.Tensor, tmp: Path, exporter: str, opset: int,
                  dynamic_batch: bool, input_name: str, output_name: str) -> None:
    import torch

    try:
        with quiet_exporters(), torch.no_grad():
            if exporter == "dynamo":
                dyn = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
                program = torch.onnx.export(model, (x,), dynamo=True, input_names=[input_name],
                                            output_names=[output_name], dynamic_shapes=dyn,
                                            opset_version=opset, verbose=False)
                # torch.onnx.export(f=...) defaults to external_data=True (weights in "<f>.data");
                # ONNXProgram.save(external_data=False) writes one file (unless > 2 GB, see below).
                program.save(str(tmp), external_data=False)
                _strip_stack_traces(tmp)
            else:
                dyn_axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
                torch.onnx.export(model, (x,), str(tmp), dynamo=False, input_names=[input_name],
                                  output_names=[output_name], dynamic_axes=dyn_axes,
                                  opset_version=opset, verbose=False, do_constant_folding=True)
    except Exception as exc:  # the exporters raise many types; all mean "this model did not export"
        Path(str(tmp) + ".data").unlink(missing_ok=True)  # a half-written > 2 GB weights file
        root = exc  # the dynamo exporter wraps the real cause in two layers of advice
        while root.__cause__ is not None:
            root = root.__cause__
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip()
        reason = f"{type(root).__name__}: {text.splitlines()[0] if text else ''}"
        other = "torchscript" if exporter == "dynamo" else "dynamo"
        raise ModelError(f"could not export {type(model).__name__} to ONNX with the {exporter} exporter "
                         f"(opset {opset}, example input {tuple(x.shape)}): {reason}",
                         hint=f"check the input shape (one sample, without the batch); else try export.exporter: "
                              f"{other}, or export.dynamic_batch: false if the model hard-codes its batch size"
                         ) from exc


def _ensure_single_file(tmp: Path, target: Path) -> None:
    # ONNXProgram.save switches to external data above protobuf's 2 GB limit, naming the side file
    # after the temporary path; such a pair cannot be renamed atomically, so refuse it.
    model = onnx.load(str(tmp), load_external_data=False)
    if uses_external_data(model):
        Path(str(tmp) + ".data").unlink(missing_ok=True)
        raise ModelError(f"{target}: the model is larger than 2 GB and needs an external data file",
                         hint="export_onnx writes single-file models only; shrink the model (distill/prune)")


# A parity report is edgec.compare's Comparison (one comparison function for every check).
ParityReport = Comparison


def compare_outputs(a: np.ndarray, b: np.ndarray) -> ParityReport:
    """Compare two output arrays (``b`` against reference ``a``) by :func:`edgec.compare.compare`,
    without a tolerance; top-1 agreement is over the argmax of the last axis.

    Example:
        >>> compare_outputs(np.eye(3), np.eye(3) * 2).top1_agreement
        1.0
    """
    return compare(a, b)


_ORT_TO_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
                 "tensor(int64)": np.int64, "tensor(int32)": np.int32}


def check_parity(model: nn.Module, onnx_path: str | Path, x: np.ndarray, *, atol: float = 1e-4,
                 rtol: float = 1e-3, min_top1_agreement: float = 1.0) -> ParityReport:
    """Run torch and ONNX Runtime (CPU) on ``x``; VerificationFailed with the numbers if they differ.

    Passes when every element satisfies ``|onnx - torch| <= atol + rtol * |torch|`` and the top-1
    agreement is at least ``min_top1_agreement``.

    Example:
        >>> check_parity(model, "out/model.onnx", x_val[:128]).max_abs_diff < 1e-4
        True
    """
    sess = ort_session(onnx_path)
    inp = sess.get_inputs()[0]
    x = np.ascontiguousarray(x, dtype=_ORT_TO_NUMPY.get(inp.type, np.float32))
    got = sess.run(None, {inp.name: x})[0]
    ref = torch_outputs(model, x, dtype=x.dtype)  # FP32 without TF32, also on a GPU

    report = compare(ref, got, atol=atol, rtol=rtol)
    if not report.passed(min_top1_agreement=min_top1_agreement):
        raise VerificationFailed(
            f"ONNX model {onnx_path} disagrees with the PyTorch model: {report.describe()} "
            f"(top-1 agreement needs >= {min_top1_agreement:g})",
            hint="loosen export.parity_atol/parity_rtol if the gap is numerical noise, or try the other "
                 "exporter if it is not")
    return report


__all__ = ["EXPORTERS", "ParityReport", "check_onnx", "check_parity", "compare_outputs", "describe_io",
           "export_onnx", "load_onnx", "ort_session", "quiet_exporters"]
