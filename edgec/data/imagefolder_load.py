"""Reading an image folder into a :class:`~edgec.data.Dataset` (``data.name: imagefolder``).

Layouts and preprocessing: :mod:`edgec.data.imagefolder`. :func:`scan` finds the classes and files
and checks the layout; :func:`load_imagefolder` splits the files (seeded, stratified, or the split
folders on disk), decodes only the images the splits keep, after estimating their memory, and
returns the Dataset with its ``preprocess`` (mean/std from the train split).

Example:
    >>> ds = load_imagefolder("data/flowers", image_size=64, seed=0)   # doctest: +SKIP
    >>> ds.preprocess["image_size"], ds.labels                          # doctest: +SKIP
    ([64, 64], ['daisy', 'rose'])
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from edgec.console import console, say
from edgec.errors import DataError

from .dataset import Dataset
from .imagefolder import GRAY_MODES, IMAGE_SUFFIXES, SCALE, Preprocess, decode_image, list_images, pil
from .splits import SPLIT_ALGORITHM, assemble_dataset, split_indices

SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
FLOAT_BYTES = 4  # each kept pixel value: uint8 while read, float32 once normalised


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _stray_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _class_files(folder: Path, where: str) -> dict[str, list[Path]]:
    """Class name -> its image files, for a folder of class folders; DataErrors for a bad layout."""
    stray = _stray_images(folder)
    classes = _subdirs(folder)
    if stray:
        raise DataError(f"{where} holds images directly (e.g. {stray[0].name}) next to "
                        f"{len(classes)} class folder(s): an image outside a class folder has no label",
                        hint=f"move every image into a folder named after its class: {folder}/<class>/<image>")
    if not classes:
        raise DataError(f"{where} has no class folders",
                        hint=f"put the images in one folder per class: {folder}/<class>/<image>.png|jpg")
    out = {}
    for c in classes:
        files = list_images(c)
        if not files:
            raise DataError(f"class folder {c} has no images (.png .jpg .jpeg .bmp .webp)",
                            hint="add images of this class, or delete the folder")
        out[c.name] = files
    return out


def scan(path: str | Path | None) -> tuple[list[str], dict[str, tuple[list[Path], np.ndarray]]]:
    """The class names and, per split found on disk (``all``, or ``train`` and ``val``/``test``),
    its files and labels. Labels index the sorted class names of ``train`` (or of the whole folder).

    Example:
        >>> labels, splits = scan("data/flowers")                       # doctest: +SKIP
        >>> labels, sorted(splits)                                      # doctest: +SKIP
        (['daisy', 'rose'], ['test', 'train'])
    """
    if path is None:
        raise DataError("data.path is not set: imagefolder reads images from a folder",
                        hint="set data.path in the recipe or pass --data DIR (DIR/<class>/<image>.png|jpg)")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}" if not root.exists() else f"{root} is not a folder",
                        hint="pass the folder that holds one folder per class (or train/ and test/ folders)")
    subdirs = _subdirs(root)
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_FOLDERS]
    if not subdirs and not _stray_images(root):
        raise DataError(f"image folder {root} is empty",
                        hint="put the images in one folder per class: DIR/<class>/<image>.png|jpg")
    if not split_dirs:
        by_class = _class_files(root, f"image folder {root}")
        labels = sorted(by_class)
        files = [f for c in labels for f in by_class[c]]
        y = np.array([i for i, c in enumerate(labels) for _ in by_class[c]], dtype=np.int64)
        return _at_least_two(labels, root), {"all": (files, y)}
    others = [d.name for d in subdirs if d not in split_dirs]
    kinds = [SPLIT_FOLDERS[d.name.lower()] for d in split_dirs]
    if others or _stray_images(root):
        raise DataError(f"image folder {root} mixes split folders ({', '.join(d.name for d in split_dirs)}) "
                        f"with other entries ({', '.join(others) or 'images'})",
                        hint="use either DIR/<class>/... or DIR/train/<class>/... (+ val/, test/), not both")
    if len(set(kinds)) != len(kinds):
        raise DataError(f"image folder {root} has more than one validation folder "
                        f"({', '.join(d.name for d in split_dirs if SPLIT_FOLDERS[d.name.lower()] == 'val')})",
                        hint="keep one of val/, valid/, validation/")
    if "train" not in kinds:
        raise DataError(f"image folder {root} has {', '.join(d.name for d in split_dirs)}/ but no train/ folder",
                        hint="add DIR/train/<class>/... (the classes and their order come from it)")
    per_split = {SPLIT_FOLDERS[d.name.lower()]: _class_files(d, f"split folder {d}") for d in split_dirs}
    labels = sorted(per_split["train"])
    index = {c: i for i, c in enumerate(labels)}
    out = {}
    for split, by_class in per_split.items():
        unknown = sorted(set(by_class) - set(labels))
        if unknown:
            raise DataError(f"{split}/ has classes that train/ does not: {', '.join(unknown)} (in {root})",
                            hint="a model can only learn classes it trains on: add them to train/ or remove them")
        names = sorted(by_class)
        out[split] = ([f for c in names for f in by_class[c]],
                      np.array([index[c] for c in names for _ in by_class[c]], dtype=np.int64))
    return _at_least_two(labels, root / "train"), out


def _at_least_two(labels: list[str], where: Path) -> list[str]:
    if len(labels) < 2:
        raise DataError(f"{where} has {len(labels)} class folder ({', '.join(labels)}); a classifier needs at least 2",
                        hint="add a folder per class: DIR/<class>/<image>")
    return labels


def _header(path: Path) -> tuple[tuple[int, int], bool]:
    """((width, height) as the image will be seen, EXIF rotation applied; grayscale?) from the file's header."""
    Image, _ = pil()
    try:
        with Image.open(path) as img:
            size, mode = img.size, img.mode
            rotated = img.getexif().get(0x0112) in (5, 6, 7, 8)  # EXIF orientation: a 90-degree turn
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e}",
                        hint="the file is corrupt or not an image: replace or delete it") from None
    return (size[::-1] if rotated else size), mode in GRAY_MODES


def _fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def memory_bound() -> int:
    """The most bytes an image dataset may take in memory: half this machine's RAM (8 GiB if unknown)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _decode_all(files: list[Path], pre: Preprocess, what: str, progress: bool) -> np.ndarray:
    """Decode ``files`` into uint8 (N, C, H, W) on a few threads (Pillow decodes without the GIL),
    with a progress bar on an interactive terminal."""
    out = np.empty((len(files), pre.channels, *pre.image_size), dtype=np.uint8)
    if not files:
        return out
    workers = max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda p: decode_image(p, pre), files)
        if progress and console.is_interactive and len(files) >= 200:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            with Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), console=console, transient=True) as bar:
                task = bar.add_task(what, total=len(files))
                for i, arr in enumerate(results):
                    out[i] = arr
                    bar.update(task, advance=1)
        else:
            if progress and len(files) >= 200:
                say(f"{what}: {len(files)} files")
            for i, arr in enumerate(results):
                out[i] = arr
    return out


def _fingerprint(labels: list[str], pre: dict[str, Any], params: dict[str, Any],
                 parts: dict[str, tuple[list[Path], np.ndarray, np.ndarray]], root: Path) -> str:
    """sha256 over the decoded pixels of every kept image, their labels and names (relative to the folder)."""
    h = hashlib.sha256()
    meta = {"algorithm": SPLIT_ALGORITHM, "reader": "imagefolder/v1", "labels": labels, "preprocess": pre,
            "params": params}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for name in sorted(parts):
        files, x, y = parts[name]
        h.update(name.encode())
        h.update("\n".join(str(f.relative_to(root)) for f in files).encode())
        h.update(np.ascontiguousarray(y).data)
        h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()


def load_imagefolder(path: str | Path | None, *, image_size: int | Sequence[int] | None = None,
                     channels: int | None = None, resize: int | None = None, val_fraction: float = 0.1,
                     test_fraction: float = 0.2, seed: int = 0, limit: int | None = None,
                     max_bytes: int | None = None, progress: bool = True) -> Dataset:
    """Read an image folder (layouts: the module docstring) into a :class:`~edgec.data.Dataset`.

    - ``image_size``: (H, W) or one int for square inputs; None: every image's own size, which must
      then be the same for all (a DataError lists the sizes found otherwise).
    - ``resize``: the shorter side before the centre crop; None: the crop's shorter side (so the whole
      of a square image's shorter side is kept). Only used with ``image_size``.
    - ``channels``: 1 (grayscale) or 3 (RGB); None: 1 when every image is grayscale, else 3.
    - ``val_fraction``/``test_fraction``/``seed``/``limit``: as :func:`edgec.data.load_dataset`; splits
      found on disk are used as they are (``limit`` then subsamples train only).
    - ``max_bytes``: refuse data that would take more memory than this (default :func:`memory_bound`).

    Only the images a split keeps are decoded (``limit`` makes a big folder cheap to try). The
    returned Dataset's ``preprocess`` is the :class:`Preprocess` (mean/std from the train split) that
    :func:`preprocess_image` applies to new files.

    Example:
        >>> ds = load_imagefolder("data/flowers", image_size=64, seed=0)   # doctest: +SKIP
        >>> Preprocess.from_dict(ds.preprocess).image_size                  # doctest: +SKIP
        (64, 64)
    """
    if channels not in (None, 1, 3):
        raise DataError(f"data.channels must be 1 (grayscale) or 3 (RGB), got {channels!r}",
                        hint="set data.channels: 1 or 3, or leave it out to infer it from the images")
    labels, found = scan(path)
    root = Path(path).expanduser()  # type: ignore[arg-type]
    pool_files, pool_y = found.get("train", found.get("all"))  # type: ignore[misc]
    official_test, official_val = "test" in found, "val" in found
    train_idx, val_idx, test_idx = split_indices(
        pool_y, val_fraction=0.0 if official_val else val_fraction, test_fraction=test_fraction, seed=seed,
        limit=limit, official_test=official_test)
    chosen: dict[str, tuple[list[Path], np.ndarray]] = {
        "train": ([pool_files[i] for i in train_idx], pool_y[train_idx]),
        "val": found["val"] if official_val else ([pool_files[i] for i in val_idx], pool_y[val_idx]),
        "test": found["test"] if official_test else ([pool_files[i] for i in test_idx], pool_y[test_idx]),  # type: ignore[index]
    }
    every = [f for files, _ in chosen.values() for f in files]

    if image_size is None or channels is None:
        headers = [_header(f) for f in every]
        if channels is None:
            channels = 1 if all(gray for _, gray in headers) else 3
        if image_size is None:
            sizes: dict[tuple[int, int], list[Path]] = {}
            for f, (size, _) in zip(every, headers):
                sizes.setdefault(size, []).append(f)
            if len(sizes) > 1:
                common = sorted(sizes.items(), key=lambda kv: -len(kv[1]))
                shown = "; ".join(f"{w}x{h} ({len(fs)} images, e.g. {fs[0]})" for (w, h), fs in common[:3])
                more = f"; and {len(common) - 3} more sizes" if len(common) > 3 else ""
                raise DataError(f"the images in {root} have different sizes (width x height): {shown}{more}",
                                hint="set data.image_size (e.g. 224): every image is then resized (shorter side) "
                                     "and centre-cropped to it")
            (w, h), = sizes
            image_size = (h, w)
    size = Preprocess(image_size=image_size, channels=1, mean=[0], std=[1]).image_size  # type: ignore[arg-type]
    if resize is None:  # keep the aspect ratio: the shorter side to the crop's, then the centre crop
        resize = min(size)
    pre = Preprocess(image_size=size, resize=resize, channels=channels,  # type: ignore[arg-type]
                     mean=[0.0] * channels, std=[1.0] * channels)

    need = len(every) * channels * size[0] * size[1] * (1 + FLOAT_BYTES)
    bound = memory_bound() if max_bytes is None else max_bytes
    if need > bound:
        raise DataError(f"{len(every)} images of {channels}x{size[0]}x{size[1]} need about {_fmt_bytes(need)} in memory "
                        f"(uint8 pixels + float32 inputs), more than the {_fmt_bytes(bound)} allowed",
                        hint="lower data.image_size, or set data.limit to train on fewer images "
                             "(the test split is kept whole; split off a smaller test/ folder if it alone is too big)")

    pixels = _decode_all(every, pre, f"reading images from {root}", progress)
    parts, start = {}, 0
    for name, (files, y) in chosen.items():
        parts[name] = (files, pixels[start:start + len(files)], y)
        start += len(files)
    pre_dict = {k: v for k, v in pre.to_dict().items() if k not in ("mean", "std")}
    params = {"seed": int(seed), "val_fraction": None if official_val else float(val_fraction),
              "test_fraction": None if official_test else float(test_fraction),
              "limit": None if limit is None else int(limit),
              "splits_on_disk": sorted(k for k in found if k != "all")}
    too_small = (f"{len(pool_y)} training images, val_fraction={val_fraction}, "
                 f"test_fraction={'test/ folder' if official_test else test_fraction}, limit={limit}")
    return assemble_dataset(
        "imagefolder", (parts["train"][1], parts["train"][2]), (parts["val"][1], parts["val"][2]),
        (parts["test"][1], parts["test"][2]), num_classes=len(labels), scale=SCALE, labels=labels,
        source=str(root), test_is_official=official_test,
        fingerprint=_fingerprint(labels, pre_dict, params, parts, root), params=params,
        too_small=too_small, preprocess=pre_dict)
