"""CIFAR-10, *binary version* (``cifar-10-binary.tar.gz``, extracted), from a folder.

The folder is either ``cifar-10-batches-bin`` itself or one that contains it. It holds:

- ``data_batch_1.bin`` .. ``data_batch_5.bin``: the training data. Every ``data_batch_<k>.bin``
  present is used, in order of k, and at least one is required, so a partial copy (say, batch 1
  only, for a quick experiment) works; ``describe()["sizes"]`` shows how much was read.
- ``test_batch.bin`` (optional): the official test split. Without it, the test split is a seeded
  stratified split of the training batches.
- ``batches.meta.txt`` (optional): the 10 class names, one per line; else the standard names.

Record layout: 1 label byte (0..9), then 3072 pixel bytes: the 32x32 red plane, then green, then
blue, each row-major. So a batch is an (N, 3073) uint8 array, and ``rec[:, 1:]`` reshapes straight
to (N, 3, 32, 32) NCHW. The Python ("pickle") version is not read: unpickling can run code.

Example:
    >>> raw = read_cifar10("data/cifar-10-batches-bin")                 # doctest: +SKIP
    >>> raw.x.shape, raw.test_x.shape                                   # doctest: +SKIP
    ((50000, 3, 32, 32), (10000, 3, 32, 32))
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgec.errors import DataError

from .dataset import RawData

RECORD_BYTES = 1 + 3 * 32 * 32
NUM_CLASSES = 10
DEFAULT_LABELS = ("airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck")
SUBFOLDER = "cifar-10-batches-bin"
_REFETCH = "re-extract cifar-10-binary.tar.gz (the binary version) and point the data path at it"


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 binary batch -> (N, 3, 32, 32) uint8 images and (N,) int64 labels.

    Example:
        >>> x, y = read_cifar_batch(Path("cifar-10-batches-bin/test_batch.bin"))  # doctest: +SKIP
        >>> x.shape, y[:3]                                                       # doctest: +SKIP
        ((10000, 3, 32, 32), array([3, 8, 8]))
    """
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}",
                        hint="check that the file exists and is readable") from e
    if raw.size == 0:
        raise DataError(f"{path} is empty", hint=_REFETCH)
    if raw.size % RECORD_BYTES:
        cifar100 = " (it would fit CIFAR-100's 3074-byte records, which edgec does not read)" \
            if raw.size % (RECORD_BYTES + 1) == 0 else ""
        raise DataError(f"{path} has {raw.size} bytes, not a multiple of the {RECORD_BYTES}-byte "
                        f"CIFAR-10 record (1 label byte + 3072 pixel bytes){cifar100}: it is "
                        "truncated or not a CIFAR-10 binary batch", hint=_REFETCH)
    records = raw.reshape(-1, RECORD_BYTES)  # (N, 3073)
    labels = records[:, 0]
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        raise DataError(f"{path}: record {int(bad[0])} has label {int(labels[bad[0]])}, but CIFAR-10 "
                        f"labels are 0..{NUM_CLASSES - 1} ({bad.size} bad records)",
                        hint=f"the file is corrupt or not CIFAR-10; {_REFETCH}")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_label_names(path: Path) -> list[str]:
    """The class names in ``batches.meta.txt`` (one per non-empty line; the first 10 are used).

    Example:
        >>> read_label_names(Path("cifar-10-batches-bin/batches.meta.txt"))[:2]  # doctest: +SKIP
        ['airplane', 'automobile']
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read class names from {path}: {e}",
                        hint=f"fix or delete {path.name} (the standard names are used without it)") from e
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) < NUM_CLASSES:
        raise DataError(f"{path} lists {len(names)} class names, CIFAR-10 needs {NUM_CLASSES}",
                        hint=f"fix or delete {path.name} (the standard names are used without it)")
    return names[:NUM_CLASSES]


def _data_batches(folder: Path) -> list[Path]:
    found = []
    for p in folder.iterdir():
        m = re.fullmatch(r"data_batch_(\d+)\.bin", p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def _missing_hint(folder: Path) -> str:
    names = {p.name for p in folder.iterdir()}
    if "cifar-10-binary.tar.gz" in names:
        return f"extract the archive first: tar xzf {folder / 'cifar-10-binary.tar.gz'} -C {folder}"
    if "cifar-10-batches-py" in names or "data_batch_1" in names:
        return ("this is the Python (pickle) version, which edgec does not read because unpickling "
                "can run code; use the binary version, cifar-10-binary.tar.gz")
    shown = ", ".join(sorted(names)[:12]) or "nothing"
    return (f"expected data_batch_1.bin .. data_batch_5.bin (+ test_batch.bin) here or in "
            f"{SUBFOLDER}/; found: {shown}")


def resolve_folder(path: str | Path | None) -> Path:
    """``path/cifar-10-batches-bin`` when that exists, else ``path``; checks it is a folder.

    Example:
        >>> resolve_folder("data")                                      # doctest: +SKIP
        PosixPath('data/cifar-10-batches-bin')
    """
    if path is None:
        raise DataError("dataset 'cifar10' needs a data path (the extracted CIFAR-10 binary version)",
                        hint=f"set data.path in the recipe or pass --data; point it at {SUBFOLDER}/ "
                             "or the folder that contains it")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"CIFAR-10 data folder {folder} does not exist or is not a folder",
                        hint=f"point the data path at {SUBFOLDER}/ or the folder that contains it")
    return folder / SUBFOLDER if (folder / SUBFOLDER).is_dir() else folder


def read_cifar10(path: str | Path | None) -> RawData:
    """Read a CIFAR-10 binary folder into :class:`RawData` (uint8 until normalisation).

    Example:
        >>> read_cifar10("data").labels[0]                              # doctest: +SKIP
        'airplane'
    """
    folder = resolve_folder(path)
    batches = _data_batches(folder)
    if not batches:
        raise DataError(f"CIFAR-10 folder {folder} has no data_batch_<k>.bin files",
                        hint=_missing_hint(folder))
    parts = [read_cifar_batch(p) for p in batches]
    # concatenate copies the strided (N, 3, 32, 32) views into one contiguous uint8 array.
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    test_x = test_y = None
    if (folder / "test_batch.bin").is_file():
        tx, test_y = read_cifar_batch(folder / "test_batch.bin")
        test_x = np.ascontiguousarray(tx)
    meta = folder / "batches.meta.txt"
    labels = read_label_names(meta) if meta.is_file() else list(DEFAULT_LABELS)
    return RawData(name="cifar10", x=x, y=y, num_classes=NUM_CLASSES, scale=1 / 255,
                   labels=labels, source=str(folder), test_x=test_x, test_y=test_y)
