"""The ``deploy/`` folder: what a user ships, servable without edgec.

    deploy/model.onnx        FP32 student, dynamic batch
    deploy/model.int8.onnx   INT8 QDQ student (PTQ or QAT; ONNX Runtime on CPU; TensorRT builds from it)
    deploy/model.w<b>.onnx + model.w<b>.lowbit.{safetensors,json}   b-bit student (BinaryConnect/SR)
                             instead of model.int8.onnx: on-grid FP32 weights + packed codes
    deploy/vocab.json        text models: the vocabulary (any file the export stage lists in its
                             ``deploy_files`` metric ships the same way)
    deploy/deploy.json       input name/shape/dtype, preprocessing, labels, files' sha256

To serve an image model: ``x = (pixels * scale - mean[c]) / std[c]`` in NCHW float32, then
``onnxruntime.InferenceSession("model.int8.onnx").run(None, {input_name: x})[0].argmax(1)``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgec import __version__
from edgec.artifacts import Artifact, sha256_file
from edgec.atomic import atomic_path, atomic_write_json


def write_deploy(out: Path, arts: dict[str, Artifact], dataset: Any, recipe_name: str) -> dict[str, Any]:
    """Copy the deployable models into ``out/deploy`` (atomically) and write ``deploy.json``."""
    folder = out / "deploy"
    files = {"model.onnx": arts["export"].file("model.onnx")}
    q = arts.get("quantize")
    if q is not None and q.metrics["kind"] == "int8":
        files["model.int8.onnx"] = q.file(q.metrics["file"])
    elif q is not None:  # low-bit: ONNX with on-grid weights + packed codes for the kernels
        for key in ("onnx", "packed", "metadata"):
            files[q.metrics[key]] = q.file(q.metrics[key])
    for name in arts["export"].metrics.get("deploy_files", []):  # e.g. a text model's vocab.json
        files[name] = arts["export"].file(name)
    for name, src in files.items():
        with atomic_path(folder / name) as tmp:
            shutil.copyfile(src, tmp)
    if folder.is_dir():  # files of an earlier build with other quantization settings
        for stale in folder.glob("model.*"):
            if stale.name not in files:
                stale.unlink()
    io = arts["export"].metrics["io"]
    info = {
        "edgec_version": __version__,
        "recipe": recipe_name,
        "input": io["inputs"][0],
        "output": io["outputs"][0],
        "preprocessing": dataset.normalization(),
        "labels": list(dataset.labels),
        "num_classes": dataset.num_classes,
        "files": {name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
                  for name in files},
        "recommended": next((n for n in files if n.endswith(".onnx") and n != "model.onnx"), "model.onnx"),
    }
    atomic_write_json(folder / "deploy.json", info)
    return info
