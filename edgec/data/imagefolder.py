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
Reading a whole folder into a Dataset: :mod:`edgec.data.imagefolder_load`.

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

from .splits import normalise

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


def pil():
    """Pillow's ``Image`` and ``ImageOps`` (a core dependency, imported only when images are read)."""
    from PIL import Image, ImageOps

    return Image, ImageOps


def _open(path: Path):
    """The image, decoded, EXIF orientation applied; DataError naming the file when Pillow cannot."""
    Image, ImageOps = pil()
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
        raise DataError(f"cannot read image {path}: {e}",
                        hint="the file is corrupt or not an image: replace or delete it") from None


def _channels(img, channels: int):
    """``img`` as Pillow mode L (1 channel) or RGB (3); 16-bit grayscale keeps its top 8 bits."""
    Image, _ = pil()
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
    Image, _ = pil()
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
    Image, _ = pil()
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
