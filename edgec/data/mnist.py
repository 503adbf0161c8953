"""MNIST (and any MNIST-format set: Fashion-MNIST, KMNIST) from a folder of IDX files.

Files, each either plain or gzip-compressed (``.gz``; gzip is detected from the content too):

- ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (required);
- ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (optional, both or neither): when
  present they are the official test split, else the test split is a seeded split of the train files.

The folder may also be torchvision's root (files under ``MNIST/raw/``).

IDX layout: a 4-byte big-endian magic (``0x00000803`` = unsigned bytes, 3 dims, for images;
``0x00000801`` for labels), one big-endian uint32 per dimension, then the bytes row-major.
Every check below names the file at fault.

Example:
    >>> raw = read_mnist("data/mnist")                                  # doctest: +SKIP
    >>> raw.x.shape, raw.x.dtype                                       # doctest: +SKIP
    ((60000, 1, 28, 28), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from edgec.errors import DataError

from .dataset import RawData

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NUM_CLASSES = 10

_KIND = {IMAGES_MAGIC: "images (idx3)", LABELS_MAGIC: "labels (idx1)"}
_REFETCH = "re-download the MNIST files (or copy them again) and point the data path at a complete copy"


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is gzip (by name or by its ``1f 8b`` signature).

    Example:
        >>> read_bytes(Path("train-labels-idx1-ubyte.gz"))[:4]          # doctest: +SKIP
        b'\\x00\\x00\\x08\\x01'
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}",
                        hint="check that the file exists and is readable") from e
    if path.suffix != ".gz" and data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except gzip.BadGzipFile as e:
        if data[:2] != b"\x1f\x8b":  # named .gz but not compressed: often a plain IDX file
            raise DataError(f"{path} is not a valid gzip file (its name ends in .gz but its "
                            "content does not start with the gzip signature)",
                            hint=f"if it is an uncompressed IDX file, drop the .gz from its name; "
                                 f"otherwise {_REFETCH}") from e
        raise DataError(f"{path} is not a valid gzip file ({e})", hint=_REFETCH) from e
    except EOFError as e:
        raise DataError(f"{path} is a truncated gzip file (the compressed stream ends early)",
                        hint=_REFETCH) from e
    except zlib.error as e:
        raise DataError(f"{path} is a corrupt gzip file ({e})", hint=_REFETCH) from e


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one unsigned-byte IDX file and check its magic and size; returns uint8 with the
    header's dimensions, e.g. (N, 28, 28) for images or (N,) for labels.

    Example:
        >>> read_idx(Path("train-labels-idx1-ubyte.gz"), LABELS_MAGIC).shape   # doctest: +SKIP
        (60000,)
    """
    data = read_bytes(path)
    kind = _KIND[magic]
    if len(data) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(data)} bytes)", hint=_REFETCH)
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        what = f"; it looks like an IDX {_KIND[found]} file, are the files swapped?" if found in _KIND else ""
        raise DataError(f"{path} has IDX magic number 0x{found:08x}, expected 0x{magic:08x} for "
                        f"{kind}{what}", hint=f"point the data path at MNIST-format IDX files; {_REFETCH}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path} is truncated inside its IDX header ({len(data)} of {header} bytes)",
                        hint=_REFETCH)
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64))
    body = len(data) - header
    if body < expected:
        raise DataError(f"{path} is truncated: its header says {'x'.join(map(str, dims))} "
                        f"({expected} bytes of data) but only {body} bytes follow", hint=_REFETCH)
    if body > expected:
        raise DataError(f"{path} has {body - expected} unexpected bytes: its header says "
                        f"{'x'.join(map(str, dims))} ({expected} bytes of data) but {body} follow",
                        hint=_REFETCH)
    return np.frombuffer(data, dtype=np.uint8, count=expected, offset=header).reshape(dims)


def _find(folder: Path, base: str) -> Path | None:
    for name in (base, base + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _expected_names() -> str:
    return ", ".join(f"{n}(.gz)" for n in TRAIN_FILES) + ", optionally " + \
        " + ".join(f"{n}(.gz)" for n in TEST_FILES)


def _read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, H, W) uint8 images and (N,) int64 labels, checked against each other."""
    images = read_idx(images_path, IMAGES_MAGIC)  # (N, H, W)
    labels = read_idx(labels_path, LABELS_MAGIC)  # (N,)
    if len(images) != len(labels):
        raise DataError(f"{labels_path} has {len(labels)} labels but {images_path} has "
                        f"{len(images)} images", hint=f"the two files do not belong together; {_REFETCH}")
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise DataError(f"{labels_path}: label {int(labels[bad[0]])} at index {int(bad[0])} is out of "
                        f"range (MNIST labels are 0..{NUM_CLASSES - 1}; {bad.size} label(s) out of range)",
                        hint=f"the labels file is corrupt or not MNIST; {_REFETCH}")
    return images[:, None], labels.astype(np.int64)


def _half_test_set(folder: Path, have: str, missing: str) -> DataError:
    return DataError(f"MNIST folder {folder} has {have} but not {missing}(.gz): the official test "
                     "set needs both", hint=f"add {missing}, or remove {have} to split a test set "
                                            "off the training files instead")


def resolve_folder(path: str | Path | None) -> Path:
    """The folder holding the IDX files: ``path`` itself or torchvision's ``path/MNIST/raw``.

    Example:
        >>> resolve_folder("data/mnist")                                # doctest: +SKIP
        PosixPath('data/mnist')
    """
    if path is None:
        raise DataError("dataset 'mnist' needs a data path (a folder of MNIST IDX files)",
                        hint=f"set data.path in the recipe or pass --data; the folder must hold "
                             f"{_expected_names()}")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"MNIST data folder {folder} does not exist or is not a folder",
                        hint=f"point the data path at a folder holding {_expected_names()}")
    if _find(folder, TRAIN_FILES[0]) is None and (folder / "MNIST" / "raw").is_dir():
        return folder / "MNIST" / "raw"
    return folder


def read_mnist(path: str | Path | None) -> RawData:
    """Read an MNIST-format folder into :class:`RawData` (official test set when t10k is present).

    Example:
        >>> read_mnist("data/mnist").test_x is None        # no t10k files there  # doctest: +SKIP
        True
    """
    folder = resolve_folder(path)
    train = [_find(folder, base) for base in TRAIN_FILES]
    for base, found in zip(TRAIN_FILES, train):
        if found is None:
            present = sorted(p.name for p in folder.iterdir())[:12]
            shown = ", ".join(present) or "nothing"
            raise DataError(f"MNIST folder {folder} has no {base} or {base}.gz",
                            hint=f"expected {_expected_names()}; found: {shown}")
    x, y = _read_pair(train[0], train[1])  # type: ignore[arg-type]

    t_images, t_labels = (_find(folder, base) for base in TEST_FILES)
    test_x = test_y = None
    if t_images is None and t_labels is not None:
        raise _half_test_set(folder, t_labels.name, TEST_FILES[0])
    if t_images is not None and t_labels is None:
        raise _half_test_set(folder, t_images.name, TEST_FILES[1])
    if t_images is not None and t_labels is not None:
        test_x, test_y = _read_pair(t_images, t_labels)
        if test_x.shape[1:] != x.shape[1:]:
            raise DataError(f"{t_images} holds {test_x.shape[2]}x{test_x.shape[3]} images but "
                            f"{train[0]} holds {x.shape[2]}x{x.shape[3]}",
                            hint="the train and t10k files come from different datasets; "
                                 "use files from the same download")
    return RawData(name="mnist", x=x, y=y, num_classes=NUM_CLASSES, scale=1 / 255,
                   labels=[str(i) for i in range(NUM_CLASSES)], source=str(folder),
                   test_x=test_x, test_y=test_y)
