"""Your own images: class folders of PNG/JPEG/BMP/WebP files, read with Pillow.

Layouts (``DIR`` is ``data.path``):

- ``DIR/<class>/...``: every image under a class folder (sub-folders included) has that class; the
  train/val/test splits are seeded and stratified (``data.val_fraction``, ``data.test_fraction``).
- ``DIR/train/<class>/...`` plus ``DIR/val/<class>/...`` and/or ``DIR/test/<class>/...`` (``valid``
  and ``validation`` are read as ``val``): those folders are the splits; the classes and their order
  come from ``train`` (sorted names), and a class in val or test that train lacks is an error.

Every image goes through the same :class:`Preprocess` (the one written to ``deploy.json``): the
shorter side resized to ``resize`` (bilinear, Pillow's antialiased resampling), a centre crop of
``image_size``, grayscale (``channels: 1``) or RGB (``channels: 3``), then per channel
``(pixel / 255 - mean) / std`` in NCHW float32. :func:`preprocess_image` does exactly what the
training data went through, so a deployed model reproduces the build's accuracy from image files.

Example:
    >>> pre = Preprocess(image_size=(224, 224), resize=256, channels=3,
    ...                  mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    >>> x = preprocess_image("cat.jpg", pre)                           # doctest: +SKIP
    >>> x.shape, x.dtype                                               # doctest: +SKIP
    ((3, 224, 224), dtype('float32'))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from edgec.configs import Config
from edgec.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
SCALE = 1 / 255  # pixel values are scaled to [0, 1] before mean/std
# Pillow modes whose pixels are one gray level (everything else is read as colour).
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "La"})


class Preprocess(Config):
    """How an image file becomes a model input: resize, centre crop, channels, normalisation.

    - ``image_size``: (H, W) of the model input, after the crop.
    - ``resize``: the shorter side is resized to this before the centre crop (scaled up further
      when needed so the crop fits); None resizes straight to ``image_size`` (no crop, the aspect
      ratio is not kept; a no-op for images already that size).
    - ``channels``: 1 (grayscale, Pillow mode ``L``) or 3 (RGB; an alpha channel is dropped).
    - ``mean``/``std``: per channel, on pixel values scaled to [0, 1].

    Example:
        >>> Preprocess(image_size=(28, 28), channels=1, mean=[0.13], std=[0.31]).to_dict()["resize"] is None
        True
    """

    image_size: tuple[int, int]
    resize: int | None = Field(None, ge=1)
    crop: Literal["center"] = "center"
    channels: Literal[1, 3] = 3
    mean: list[float]
    std: list[float]
    layout: Literal["NCHW"] = "NCHW"

    @field_validator("image_size", mode="before")
    @classmethod
    def _size(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return (v, v)  # 224 -> (224, 224)
        return v

    @field_validator("image_size")
    @classmethod
    def _positive(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 1:
            raise ValueError(f"image_size must be positive, got {v}")
        return v

    @model_validator(mode="after")
    def _per_channel(self) -> Preprocess:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"mean and std need one value per channel ({self.channels}), "
                             f"got {len(self.mean)} and {len(self.std)}")
        if any(not s > 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (``deploy.json``'s ``"preprocess"``)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocess:
        """The inverse of :meth:`to_dict`; raises :class:`~edgec.errors.RecipeError` for bad values."""
        return cls(**d)

    @classmethod
    def from_deploy(cls, path: str | Path) -> Preprocess:
        """Read ``"preprocess"`` from a ``deploy.json`` (or the folder holding it)."""
        p = Path(path)
        if p.is_dir():
            p = p / "deploy.json"
        try:
            info = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read {p}: {e}",
                            hint="give the deploy/ folder of an edgec build or its deploy.json") from None
        if not isinstance(info, dict) or not isinstance(info.get("preprocess"), dict):
            raise DataError(f"{p} has no \"preprocess\" section",
                            hint="it is written by builds on image data (edgec >= issue 14); "
                                 "rebuild, or give the preprocessing explicitly")
        return cls.from_dict(info["preprocess"])


def _visible(path: Path, root: Path) -> bool:
    # Hidden files and folders (.DS_Store, macOS '._x.jpg' resource forks, .ipynb_checkpoints) are skipped.
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def list_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (recursive, sorted; .png .jpg .jpeg .bmp .webp in any case;
    hidden files and folders skipped).

    Example:
        >>> [p.name for p in list_images("data/cats")]                  # doctest: +SKIP
        ['a.jpg', 'b.PNG']
    """
    root = Path(folder)
    return sorted(p for p in root.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and _visible(p, root))


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError:  # pillow is a core dependency; a broken install
        from edgec.errors import MissingDependencyError
        raise MissingDependencyError("pillow", "vision", "reading image files") from None
    return Image, ImageOps


def _open(path: Path):
    """The image, decoded, EXIF orientation applied; DataError naming the file when Pillow cannot."""
    Image, ImageOps = _pil()
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e}",
                        hint="the file is corrupt or not an image: replace or delete it") from None


def _channels(img, channels: int):
    """``img`` as Pillow mode L (1 channel) or RGB (3); 16-bit grayscale keeps its top 8 bits."""
    Image, _ = _pil()
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.int64)
        top = 65535 if arr.max(initial=0) > 255 else 255
        img = Image.fromarray((arr * 255 // top).clip(0, 255).astype(np.uint8))
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    return img.convert("L" if channels == 1 else "RGB")


def _geometry(size: tuple[int, int], pre: Preprocess) -> tuple[tuple[int, int], tuple[int, int, int, int] | None]:
    """(W, H) to resize an image of ``size`` (W, H) to, and the crop box (None: no crop)."""
    width, height = size
    out_h, out_w = pre.image_size
    if pre.resize is None:
        return (out_w, out_h), None
    scale = max(pre.resize / min(width, height), out_h / height, out_w / width)
    new_w, new_h = max(out_w, int(round(width * scale))), max(out_h, int(round(height * scale)))
    left, top = (new_w - out_w) // 2, (new_h - out_h) // 2
    return (new_w, new_h), (left, top, left + out_w, top + out_h)


def decode_image(path: str | Path, pre: Preprocess) -> np.ndarray:
    """The image's pixels after resize, crop and channel conversion: uint8 (C, H, W), not normalised.

    Example:
        >>> decode_image("digit.png", pre).shape                        # doctest: +SKIP
        (1, 28, 28)
    """
    Image, _ = _pil()
    path = Path(path)
    img = _channels(_open(path), pre.channels)
    new_size, box = _geometry(img.size, pre)
    if img.size != new_size:
        img = img.resize(new_size, Image.BILINEAR)
    if box is not None and box != (0, 0, *img.size):
        img = img.crop(box)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def normalise_pixels(x: np.ndarray, pre: Preprocess) -> np.ndarray:
    """uint8 (..., C, H, W) -> float32 ``(x / 255 - mean) / std``, the same arithmetic as the training data's.

    Example:
        >>> normalise_pixels(np.full((1, 1, 1), 255, np.uint8), pre).dtype   # doctest: +SKIP
        dtype('float32')
    """
    from .splits import normalise

    batch = x if x.ndim == 4 else x[None]
    out = normalise(batch, SCALE, tuple(pre.mean), tuple(pre.std))
    return out if x.ndim == 4 else out[0]


def preprocess_image(path: str | Path, pre: Preprocess) -> np.ndarray:
    """An image file as a model input: float32 (C, H, W), exactly as the build's data was prepared.

    Raises :class:`DataError` naming the file when Pillow cannot read it.

    Example:
        >>> pre = Preprocess.from_deploy("runs/my/deploy")              # doctest: +SKIP
        >>> x = np.stack([preprocess_image(p, pre) for p in list_images("new_images")])  # doctest: +SKIP
    """
    return normalise_pixels(decode_image(path, pre), pre)


def write_imagefolder(x: np.ndarray, y: np.ndarray, folder: str | Path,
                      class_names: Sequence[str] | None = None, fmt: str = "png") -> list[Path]:
    """Write images as ``folder/<class>/<i>.<fmt>`` (for tests and benchmarks); returns the paths.

    ``x``: (N, C, H, W) or (N, H, W), C 1 or 3; uint8, or floats in [0, 1] (scaled to 0..255).
    ``y``: (N,) class indices; ``class_names[y[i]]`` names the folder (default: the index).

    Example:
        >>> write_imagefolder(np.zeros((2, 8, 8), np.uint8), np.array([0, 1]), tmp / "imgs")  # doctest: +SKIP
    """
    Image, _ = _pil()
    x = np.asarray(x)
    y = np.asarray(y).astype(np.int64)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3) or len(x) != len(y):
        raise ValueError(f"write_imagefolder needs x (N, 1|3, H, W) or (N, H, W) and y (N,), got {x.shape}, {y.shape}")
    if x.dtype != np.uint8:
        x = (np.clip(x.astype(np.float64), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    names = [str(c) for c in (class_names if class_names is not None else range(int(y.max(initial=-1)) + 1))]
    root = Path(folder)
    paths = []
    for i, (img, label) in enumerate(zip(x, y)):
        out = root / names[label] / f"{i}.{fmt}"
        out.parent.mkdir(parents=True, exist_ok=True)
        pixels = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        Image.fromarray(np.ascontiguousarray(pixels)).save(out)
        paths.append(out)
    return paths


# --- reading a folder of class folders into a Dataset ---------------------------------------------------

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
    Image, _ = _pil()
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
    import os
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _decode_all(files: list[Path], pre: Preprocess, what: str, progress: bool) -> np.ndarray:
    """Decode ``files`` into uint8 (N, C, H, W) on a few threads (Pillow decodes without the GIL),
    with a progress bar on an interactive terminal."""
    from concurrent.futures import ThreadPoolExecutor
    import os

    from edgec.console import console, say

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
    import hashlib

    from .splits import SPLIT_ALGORITHM

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
                     max_bytes: int | None = None, progress: bool = True) -> Any:
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
    from .splits import assemble_dataset, split_indices

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
