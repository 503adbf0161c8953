"""The ``deploy/`` folder: what a user ships, servable without edgec.

    deploy/model.onnx        FP32 student, dynamic batch
    deploy/model.int8.onnx   INT8 QDQ student (PTQ or QAT), symmetric S8S8: TensorRT builds from it
    deploy/model.int8.cpu.onnx  PTQ: the INT8 file for ONNX Runtime on a CPU (quantize.cpu_flavour;
                             default u8s8_reduce_range: uint8 activations, 7-bit weights, cannot
                             saturate x86 CPUs without VNNI, and ORT's fast u8s8 kernels run it);
                             deploy.json's "int8" says which file is which flavour, for what
    deploy/model.w<b>.onnx + model.w<b>.lowbit.{safetensors,json}   b-bit student (BinaryConnect/SR)
                             instead of model.int8.onnx: on-grid FP32 weights + packed codes
    deploy/vocab.json        text models: the vocabulary (any file the export stage lists in its
                             ``deploy_files`` metric ships the same way)
    deploy/deploy.json       input name/shape/dtype, preprocessing, labels, files' sha256; for image
                             data "preprocess": resize, centre crop, channels, mean/std of an image file

To serve an image model: ``x = (pixels * scale - mean[c]) / std[c]`` in NCHW float32, then
``onnxruntime.InferenceSession(deploy["recommended"]).run(None, {input_name: x})[0].argmax(1)``.
From an image file: ``x = preprocess_image(path, Preprocess.from_deploy("deploy"))[None]``
(:mod:`edgec.data.imagefolder`; deploy.json's "preprocess" says the same for code without edgec).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from edgec import __version__
from edgec.artifacts import Artifact, sha256_file
from edgec.atomic import atomic_path, atomic_write_json
from edgec.stages.defs import Task


def write_deploy(out: Path, arts: dict[str, Artifact], dataset: Any, recipe_name: str, task: Task) -> dict[str, Any]:
    """Copy the deployable models into ``out/deploy`` (atomically) and write ``deploy.json``.

    File names come from the stage defs of ``task``: the export stage's model and the quantize
    stage's (``quantize`` names its deployable file in a metric)."""
    folder = out / "deploy"
    fp32 = task.stage("export").outputs.model_file(arts["export"])
    export = task.metrics(arts["export"])  # metrics by the keys the stage defs declare
    files = {fp32.name: fp32}
    q_art = arts.get("quantize")
    q = task.metrics(q_art) if q_art is not None else None
    int8: dict[str, Any] = {}
    if q_art is not None and q["kind"] == "int8":
        # PTQ and QAT: model.int8.onnx (S8S8, TensorRT) + model.int8.cpu.onnx (ONNX Runtime on a CPU);
        # text (dynamic INT8): one file
        for name, desc in (q.get("files") or {"model.int8.onnx": {}}).items():
            files[name] = q_art.file(q["file"] if not desc else name)
            if desc:
                int8[name] = {k: desc.get(k) for k in ("flavour", "runtime", "cpus", "float_layers",
                                                       "val_accuracy", "fp32_val_accuracy")}
    elif q_art is not None:  # low-bit: ONNX with on-grid weights + packed codes for the kernels
        for key in ("onnx", "packed", "metadata"):
            files[q[key]] = q_art.file(q[key])
    for name in export.get("deploy_files", []):  # e.g. a text model's vocab.json
        files[name] = arts["export"].file(name)
    for name, src in files.items():
        with atomic_path(folder / name) as tmp:
            shutil.copyfile(src, tmp)
    if folder.is_dir():  # files of an earlier build with other quantization settings
        for stale in folder.glob("model.*"):
            if stale.name not in files:
                stale.unlink()
    io = export["io"]
    info = {
        "edgec_version": __version__,
        "recipe": recipe_name,
        "input": io["inputs"][0],
        "output": io["outputs"][0],
        "preprocessing": dataset.normalization(),
        # image data: how an image *file* becomes the input (edgec.data.imagefolder.Preprocess.from_deploy)
        **({"preprocess": dataset.preprocess} if getattr(dataset, "preprocess", None) else {}),
        "labels": list(dataset.labels),
        "num_classes": dataset.num_classes,
        "files": {name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
                  for name in files},
        "recommended": (q["file"] if q is not None and int8 else
                        next((n for n in files if n.endswith(".onnx") and n != fp32.name), fp32.name)),
    }
    if int8:  # which INT8 file is which flavour, for which runtime and CPUs
        info["int8"] = int8
    atomic_write_json(folder / "deploy.json", info)
    return info
