"""An ONNX model trained anywhere as edgec's input: ``edgec quantize MODEL.onnx --calib DIR``.

The file is untrusted: it is loaded through :func:`edgec.onnx_files.load_onnx` (clear errors for missing,
corrupt or truncated files; external-data locations outside the model's folder are refused before
anything is read) and checked with the full ONNX checker. It must be an image classifier: one float32
input in NCHW with 1 or 3 channels (the batch may be dynamic; a dynamic height/width needs
``--image-size``) and one ``(batch, classes)`` output.

:func:`quantize_onnx` then runs the build's own post-training INT8 path
(:func:`edgec.export.quantized.post_training_int8`: ORT static calibration, per-channel weights, the QDQ
checker on the TensorRT file, the accuracy-aware fallback of :mod:`edgec.compress.ptq_accuracy`) on
calibration images read with :mod:`edgec.data.imagefolder`, after folding Conv -> BatchNormalization
pairs of the graph (exporters in training mode or some frameworks leave them) and fixing a dynamic
height/width. The output folder holds::

    model.onnx            the FP32 model as quantized (BN folded, single file): the FP32 baseline
    model.int8.onnx       S8S8 symmetric QDQ, checked TensorRT-compatible
    model.int8.cpu.onnx   the flavour for ONNX Runtime on a CPU (``--flavour``; ``auto`` picks it for this CPU)
    model.int8.<f>.onnx   more CPU flavours when ``--flavour`` lists several
    deploy.json           input, preprocessing, which file is for which runtime, accuracy, sha256s

deploy.json is written last, so a folder without it is an unfinished run (every file is written
atomically). ``edgec bench out/model.int8.cpu.onnx`` reads its input shape from that deploy.json.

Example:
    >>> summary = quantize_onnx("resnet18.onnx", "calib_images/", "out/", accuracy_data="val_images/")
    >>> summary["files"]["model.int8.cpu.onnx"]["flavour"], summary["recommended"]
    ('u8s8_reduce_range', 'model.int8.cpu.onnx')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from rich.progress import track
from rich.table import Table

from edgec import __version__
from edgec.artifacts import sha256_file
from edgec.atomic import atomic_path, atomic_write_json
from edgec.compress.calibrate import select_calibration_samples
from edgec.compress.int8_cpu import int8_isa
from edgec.compress.ptq_accuracy import reference_logits
from edgec.compress.quantize import FLAVOURS
from edgec.configs import CalibrationConfig, PtqConfig
from edgec.console import console, say, warn
from edgec.data.imagefolder import Preprocess, list_images, preprocess_image
from edgec.errors import DataError, ModelError, RecipeError
from edgec.export.quantized import post_training_int8
from edgec.onnx_files import check_onnx, describe_io, load_onnx

# Used (with a warning) when neither flags nor a deploy.json give the normalisation.
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
MIN_OPSET = 13  # per-channel QDQ (axis on DequantizeLinear) and TensorRT's QDQ support


@dataclass(frozen=True)
class OnnxClassifier:
    """What :func:`inspect_onnx` found: the input's name and shape (batch first; None where dynamic) and
    the number of classes (None when the output's last dimension is dynamic)."""

    path: Path
    input_name: str
    input_shape: tuple[int | None, ...]
    num_classes: int | None
    opset: int

    @property
    def channels(self) -> int:
        return int(self.input_shape[1])  # checked to be 1 or 3

    @property
    def image_size(self) -> tuple[int, int] | None:
        h, w = self.input_shape[2:]
        return (h, w) if h and w else None


def _dims(shape: Sequence[Any]) -> tuple[int | None, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)


def inspect_onnx(path: str | Path) -> OnnxClassifier:
    """Load and check an ONNX image classifier; ModelError saying what does not fit.

    Example:
        >>> inspect_onnx("resnet18.onnx").input_shape
        (None, 3, 224, 224)
    """
    p = Path(path)
    model = load_onnx(p, load_external_data=False)  # missing/corrupt/truncated files, unsafe external data
    check_onnx(p)
    io = describe_io(p)
    fix = "export the classifier with one float32 NCHW image input and one (batch, classes) output"
    if len(io["inputs"]) != 1 or len(io["outputs"]) < 1:
        raise ModelError(f"{p} has {len(io['inputs'])} inputs and {len(io['outputs'])} outputs; edgec quantize "
                         "takes image classifiers with one input", hint=fix)
    inp, out = io["inputs"][0], io["outputs"][0]
    shape = _dims(inp["shape"])
    if inp["dtype"] != "float32" or len(shape) != 4:
        raise ModelError(f"{p}: input '{inp['name']}' is {inp['dtype']} with shape {inp['shape']}; "
                         "expected float32 (batch, channels, height, width)", hint=fix)
    if shape[1] not in (1, 3):
        raise ModelError(f"{p}: input '{inp['name']}' has shape {inp['shape']}: the channel dimension "
                         f"(axis 1) must be 1 (grayscale) or 3 (RGB), got {inp['shape'][1]}",
                         hint="edgec quantize reads NCHW images; export the model in NCHW with a fixed channel count")
    out_shape = _dims(out["shape"])
    if len(out_shape) != 2:
        raise ModelError(f"{p}: output '{out['name']}' has shape {out['shape']}; expected (batch, classes) logits",
                         hint=fix)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return OnnxClassifier(p, inp["name"], shape, out_shape[1], opset)


def resolve_preprocess(info: OnnxClassifier, *, deploy: str | Path | None = None,
                       image_size: tuple[int, ...] | None = None, resize: int | None = None,
                       mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                       grayscale: bool | None = None) -> Preprocess:
    """The preprocessing for ``info``'s input: flags first, then ``deploy`` (a deploy.json or its
    folder), then the model itself (size, channels); ImageNet statistics (RGB) or none (grayscale),
    with a warning, when nothing gives the normalisation. The model's fixed input shape wins: a
    flag or deploy.json that contradicts it is a DataError.

    Example:
        >>> resolve_preprocess(inspect_onnx("resnet18.onnx"), resize=256).image_size
        (224, 224)
    """
    base = Preprocess.from_deploy(deploy).to_dict() if deploy is not None else {}
    channels = info.channels
    if grayscale and channels != 1:
        raise DataError(f"--grayscale, but {info.path.name} takes {channels} channels",
                        hint="leave out --grayscale: images are read as RGB for a 3-channel model")
    if base and base.get("channels") not in (None, channels):
        raise DataError(f"{deploy} reads images with {base['channels']} channels but {info.path.name} takes {channels}",
                        hint="give the deploy.json of this model, or the preprocessing as flags")
    size = tuple(image_size) if image_size else tuple(base["image_size"]) if base else None
    if size is not None and len(size) == 1:
        size = (size[0], size[0])
    if info.image_size is not None:
        if size is not None and tuple(size) != info.image_size:
            raise DataError(f"image size {tuple(size)} does not match {info.path.name}'s fixed input "
                            f"{info.image_size[0]}x{info.image_size[1]}",
                            hint="leave out --image-size (the model's input shape is used)")
        size = info.image_size
    if size is None:
        raise ModelError(f"{info.path.name} has a dynamic input height/width ({list(info.input_shape)})",
                         hint="give the size it was trained at: --image-size H,W (or --deploy deploy.json)")
    given = {"mean": mean, "std": std}
    stats = {}
    for key, value in given.items():
        if value is not None:
            values = [float(v) for v in value]
            stats[key] = values * channels if len(values) == 1 else values
        elif base:
            stats[key] = base[key]
    if len(stats) < 2:
        default = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD} if channels == 3 else {"mean": [0.0], "std": [1.0]}
        warn(f"no {' / '.join(k for k in ('mean', 'std') if k not in stats)} given: using "
             + ("ImageNet's" if channels == 3 else "no normalisation (pixels in [0, 1]):")
             + f" {default}; pass --mean/--std (or --deploy) with the statistics the model was trained with")
        stats = {**default, **stats}
    try:
        return Preprocess(image_size=size, resize=resize if resize is not None else base.get("resize"),
                          channels=channels, mean=stats["mean"], std=stats["std"])
    except (ValueError, RecipeError) as exc:
        raise DataError(f"preprocessing for {info.path.name}: {exc}",
                        hint="--mean/--std need 1 or one value per input channel, std > 0") from None


def prepare_fp32(info: OnnxClassifier, out: str | Path, image_size: tuple[int, int]) -> dict[str, int]:
    """Write the model as edgec quantizes it to ``out`` (atomically, one file): Conv -> BatchNormalization
    pairs folded, a dynamic height/width fixed to ``image_size`` (the batch stays as it was), opset raised
    to 13 where lower. Returns ``{"folded_batchnorm": n}``."""
    model = load_onnx(info.path)  # external data (checked to lie beside the model) is inlined
    folded = fold_conv_batchnorm(model)
    inp = next(v for v in model.graph.input if v.name == info.input_name)
    for d, size in zip(list(inp.type.tensor_type.shape.dim)[2:], image_size):
        if not d.HasField("dim_value"):
            d.Clear()
            d.dim_value = int(size)
    if info.opset < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:  # the converter raises several types
            raise ModelError(f"{info.path.name} has opset {info.opset}; converting it to {MIN_OPSET} failed: {exc}",
                             hint=f"export the model with opset >= {MIN_OPSET}") from exc
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelError(f"{info.path.name} with image size {image_size}: {exc}",
                         hint="check --image-size against the size the model was trained at") from exc
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    return {"folded_batchnorm": folded}


def fold_conv_batchnorm(model: onnx.ModelProto) -> int:
    """Fold every BatchNormalization whose input is a Conv's output used by nothing else, when the conv's
    weight and bias and the BN's parameters are initializers: ``W' = W * g / sqrt(v + eps)`` per output
    channel, ``b' = (b - m) * g / sqrt(v + eps) + beta``. In place; returns how many were folded."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    # TorchScript shares equal initializers through Identity nodes: read through them.
    identity = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Identity"}
    for name in list(identity):
        src = name
        while src not in inits and src in identity:
            src = identity[src]
        if src in inits:
            inits[name] = inits[src]
    producer = {o: n for n in graph.node for o in n.output}
    uses: dict[str, int] = {}
    for n in graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    outputs = {o.name for o in graph.output}
    folded, drop = 0, []
    for bn in graph.node:
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1 or len(bn.input) != 5:
            continue
        conv = producer.get(bn.input[0])
        if (conv is None or conv.op_type != "Conv" or uses.get(bn.input[0]) != 1 or bn.input[0] in outputs
                or not all(i in inits for i in bn.input[1:]) or conv.input[1] not in inits
                or (len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits)):
            continue
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in bn.input[1:])
        w = numpy_helper.to_array(inits[conv.input[1]]).astype(np.float64)
        b = (numpy_helper.to_array(inits[conv.input[2]]).astype(np.float64)
             if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0]))
        mul = gamma / np.sqrt(var + eps)
        new_w = (w * mul.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        new_b = ((b - mean) * mul + beta).astype(np.float32)
        w_name, b_name = f"{conv.name or conv.output[0]}.bnfold.weight", f"{conv.name or conv.output[0]}.bnfold.bias"
        graph.initializer.extend([numpy_helper.from_array(new_w, w_name), numpy_helper.from_array(new_b, b_name)])
        conv.input[1] = w_name
        if len(conv.input) > 2:
            conv.input[2] = b_name
        else:
            conv.input.append(b_name)
        conv.output[0] = bn.output[0]
        drop.append(bn)
        folded += 1
    for bn in drop:
        graph.node.remove(bn)
    if folded:  # initializers nothing reads any more (the unfolded weights, the BN parameters)
        used = {i for n in graph.node for i in n.input} | outputs
        keep = [t for t in graph.initializer if t.name in used]
        del graph.initializer[:]
        graph.initializer.extend(keep)
        stale = {v.name for v in graph.value_info} - {o for n in graph.node for o in n.output}
        keep_vi = [v for v in graph.value_info if v.name not in stale]
        del graph.value_info[:]
        graph.value_info.extend(keep_vi)
    return folded


def class_folders(folder: str | Path) -> list[str]:
    """The class names of a labelled image folder: its sub-folders holding images, sorted (the model's
    output order). DataError for images outside a class folder or no class at all."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}", hint="give a folder of class folders (DIR/<class>/*.png)")
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and list_images(d))
    images = set(list_images(root))
    loose = [p for p in root.iterdir() if p in images]
    if not names or loose:
        raise DataError(f"{root} is not a folder of class folders"
                        + (f" ({len(loose)} images directly inside it, e.g. {loose[0].name})" if loose else
                           " (no sub-folder holds images)"),
                        hint="labelled data is DIR/<class>/<image>; class order = sorted folder names")
    return names


def read_images(paths: Sequence[Path], pre: Preprocess, what: str, progress: bool = True) -> np.ndarray:
    """Preprocess ``paths`` into one float32 (N, C, H, W) array, with a progress bar on a terminal."""
    x = np.empty((len(paths), pre.channels, *pre.image_size), np.float32)
    for i, p in enumerate(track(paths, description=what, console=console, transient=True,
                                disable=not (progress and console.is_interactive))):
        x[i] = preprocess_image(p, pre)
    return x


def calibration_images(folder: str | Path, pre: Preprocess, samples: int, seed: int = 0,
                       progress: bool = True) -> np.ndarray:
    """Up to ``samples`` images of ``folder`` (flat or class folders; a seeded subset when it has more),
    preprocessed. DataError when the folder is missing or holds no images."""
    root = Path(folder)
    paths = list_images(root) if root.is_dir() else []
    if not paths:
        raise DataError(f"no calibration images in {root}" + ("" if root.is_dir() else " (not a folder)"),
                        hint="--calib DIR: a folder of .png/.jpg/.jpeg/.bmp/.webp images (flat or in class "
                             "folders), a few hundred from the training data")
    if len(paths) > samples:
        paths = [paths[i] for i in select_calibration_samples(np.arange(len(paths)), samples, seed=seed)]
    return read_images(paths, pre, "calibration images", progress)


def labelled_images(folder: str | Path, pre: Preprocess, num_classes: int | None,
                    progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image of a class-folder tree, preprocessed, with labels (sorted folder names) and the names.
    DataError when the class count differs from the model's outputs."""
    root = Path(folder)
    names = class_folders(root)
    if num_classes is not None and len(names) != num_classes:
        raise DataError(f"{root} has {len(names)} class folders but the model has {num_classes} outputs",
                        hint="--accuracy-data needs one folder per output class, named so that sorted "
                             "folder names follow the model's output order")
    paths, labels = [], []
    for k, name in enumerate(names):
        found = list_images(root / name)
        paths += found
        labels += [k] * len(found)
    return read_images(paths, pre, "accuracy images", progress), np.asarray(labels, np.int64), names


def quantize_onnx(model: str | Path, calib: str | Path, out: str | Path | None = None, *,
                  preprocess: Preprocess | dict[str, Any] | None = None, samples: int = 256,
                  accuracy_data: str | Path | None = None, flavours: Sequence[str] = ("auto",),
                  calibration: CalibrationConfig | None = None, per_channel: bool = True,
                  accuracy_budget: float = 1.0, max_float_layers: int = 3, seed: int = 0,
                  progress: bool = True) -> dict[str, Any]:
    """Quantize an ONNX image classifier trained anywhere into ``out`` (default ``<model>-int8/`` beside it);
    see the module docstring for the files. Returns what ``deploy.json`` says.

    ``preprocess``: a :class:`Preprocess`, or :func:`resolve_preprocess`'s keyword arguments (flags,
    ``deploy``); None resolves it from the model alone. ``flavours``: the CPU
    flavours (``auto`` or :data:`edgec.compress.quantize.FLAVOURS` names): the first is
    ``model.int8.cpu.onnx``, the others ``model.int8.<flavour>.onnx``. With ``accuracy_data`` (class
    folders) every INT8 file is scored against FP32 and the accuracy-aware fallback keeps layers in
    float until it is within ``accuracy_budget`` points (else VerificationFailed, and no deploy.json);
    without it each file's top-1 agreement with FP32 on the calibration images is reported.
    """
    src = Path(model)
    info = inspect_onnx(src)
    pre = preprocess if isinstance(preprocess, Preprocess) else resolve_preprocess(info, **(preprocess or {}))
    bad = [f for f in flavours if f != "auto" and f not in FLAVOURS]
    if not flavours or bad:
        raise RecipeError(f"unknown INT8 CPU flavour {bad[0]!r}" if bad else "no INT8 CPU flavour asked for",
                          hint=f"--flavour auto or one or more of {', '.join(FLAVOURS)} (comma-separated)")
    x_cal = calibration_images(calib, pre, samples, seed=seed, progress=progress)
    labels: list[str] | None = None
    if accuracy_data is not None:
        x_val, y_val, labels = labelled_images(accuracy_data, pre, info.num_classes, progress=progress)
    dest = Path(out) if out is not None else src.with_name(f"{src.stem}-int8")
    if dest.exists() and not dest.is_dir():
        raise DataError(f"--out {dest} is a file", hint="give a folder for the quantized files")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "deploy.json").unlink(missing_ok=True)  # the folder is unfinished until the new one is written
    for stale in dest.glob("model.int8*.onnx"):
        stale.unlink()

    fp32 = dest / "model.onnx"
    prepared = prepare_fp32(info, fp32, pre.image_size)
    say(f"[bold]quantize[/] {src.name}: {len(x_cal)} calibration images from {calib}, input "
        f"{pre.channels}x{pre.image_size[0]}x{pre.image_size[1]}, Conv+BN folded: {prepared['folded_batchnorm']}")
    if accuracy_data is not None:
        scored_on = f"{len(x_val)} labelled images from {accuracy_data}"
    else:  # agreement with FP32 on the calibration images: FP32's own top-1 as the labels, no fallback
        x_val, y_val = x_cal, reference_logits(fp32, x_cal).argmax(1)
        scored_on = f"top-1 agreement with FP32 on the {len(x_cal)} calibration images"
    config = PtqConfig(calibration=calibration or CalibrationConfig(samples=len(x_cal)), per_channel=per_channel,
                       cpu_flavour=flavours[0],
                       accuracy_budget=accuracy_budget if accuracy_data is not None else 100.0,
                       max_float_layers=max_float_layers if accuracy_data is not None else 0)
    if config.calibration.samples > len(x_cal):
        config = config.model_copy(update={"calibration": config.calibration.model_copy(update={"samples": len(x_cal)})})
    metrics = post_training_int8(fp32, dest, x_cal, (x_val, y_val), config, seed=seed,
                                 more_cpu_flavours=tuple(flavours[1:]),
                                 score="val accuracy" if accuracy_data is not None else "top-1 agreement")
    io = describe_io(fp32)
    int8: dict[str, Any] = {}
    for name, desc in metrics["files"].items():
        entry = {k: desc.get(k) for k in ("flavour", "runtime", "cpus", "float_layers")}
        if accuracy_data is not None:
            entry.update(fp32_accuracy=desc["fp32_val_accuracy"], int8_accuracy=desc["val_accuracy"])
        else:
            entry["top1_agreement"] = desc["val_accuracy"]
        int8[name] = entry
    info_doc = {
        "edgec_version": __version__,
        "source": {"model": str(src), "sha256": sha256_file(src)},
        "input": io["inputs"][0],
        "output": io["outputs"][0],
        "preprocess": pre.to_dict(),
        "labels": labels,
        "num_classes": info.num_classes,
        "files": {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                  for p in [fp32, *(dest / n for n in metrics["files"])]},
        "recommended": "model.int8.cpu.onnx",
        "runtimes": {"onnxruntime-cpu": "model.int8.cpu.onnx", "tensorrt": "model.int8.onnx", "fp32": "model.onnx"},
        "int8": int8,
        "quantization": {"method": "ptq", "calibration": metrics["calibration"], "per_channel": per_channel,
                         "cpu_flavour_setting": flavours[0], "build_cpu_int8": int8_isa(),
                         "folded_batchnorm": prepared["folded_batchnorm"], "scored_on": scored_on,
                         "accuracy_budget": accuracy_budget if accuracy_data is not None else None},
    }
    atomic_write_json(dest / "deploy.json", info_doc)
    _print_summary(info_doc, dest)
    return info_doc


def _print_summary(doc: dict[str, Any], dest: Path) -> None:
    labelled = doc["labels"] is not None
    table = Table(title=f"edgec quantize -> {dest}")
    for col in ("file", "flavour", "for", "MB",
                *(("FP32 acc", "INT8 acc") if labelled else ("top-1 agreement",)), "float layers"):
        table.add_column(col)
    table.add_row("model.onnx", "fp32", "any", f"{doc['files']['model.onnx']['bytes'] / 1e6:.1f}",
                  *(("", "") if labelled else ("",)), "")
    for name, e in doc["int8"].items():
        scores = ((f"{e['fp32_accuracy']:.4f}", f"{e['int8_accuracy']:.4f}") if labelled
                  else (f"{e['top1_agreement']:.4f}",))
        table.add_row(name, e["flavour"], e["runtime"], f"{doc['files'][name]['bytes'] / 1e6:.1f}", *scores,
                      ", ".join(e["float_layers"]) or "none")
    console.print(table)


__all__ = ["OnnxClassifier", "calibration_images", "class_folders", "fold_conv_batchnorm", "inspect_onnx",
           "labelled_images", "prepare_fp32", "quantize_onnx", "resolve_preprocess"]
