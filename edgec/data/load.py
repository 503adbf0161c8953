"""``load_dataset``: the one entry point the pipeline uses, a registry of readers by name.

Example:
    >>> ds = load_dataset("digits", seed=1, limit=500)
    >>> len(ds.train) + len(ds.val), ds.test_is_official
    (500, False)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgec.errors import DataError
from edgec.registry import Registry

from .cifar10 import read_cifar10
from .dataset import Dataset, RawData
from .digits import read_digits
from .imagefolder_load import load_imagefolder
from .mnist import read_mnist
from .splits import build_dataset
from .synthetic import check_params, make_synthetic


def _unknown_dataset(name: str, best: str | None, valid: list[str]) -> DataError:
    return DataError(f"unknown dataset '{name}'; valid names: {', '.join(valid)}",
                     hint=(f"did you mean '{best}'? " if best else "") + f"set data.name to one of: {', '.join(valid)}")


# name -> reader(path) -> RawData; 'CIFAR-10', 'cifar_10' -> 'cifar10'. synthetic's "reader" makes the
# data from its parameters instead of a path (load_dataset passes them).
READERS: Registry[Callable[..., RawData]] = Registry(
    "dataset", error=DataError, normalize=lambda n: n.strip().lower().replace("-", "").replace("_", ""),
    on_unknown=_unknown_dataset)
READERS.register("digits", read_digits)
READERS.register("mnist", read_mnist)
READERS.register("cifar10", read_cifar10)
READERS.register("synthetic", make_synthetic)
# imagefolder splits its files first and decodes only what it keeps, so it builds the Dataset itself.
READERS.register("imagefolder", load_imagefolder)
DATASETS: tuple[str, ...] = tuple(READERS.names())  # digits, mnist, cifar10, synthetic, imagefolder
# The built-in sets whose arrays are what image files of their size look like (deploy.json's "preprocess").
IMAGE_SETS = ("digits", "mnist", "cifar10")
IMAGEFOLDER_OPTIONS = ("image_size", "channels", "resize")


def _check_fraction(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise DataError(f"{what} must be a number in [0, 1), got {value!r}",
                        hint=f"set {what} to e.g. 0.1 (the share of examples held out)")
    return float(value)


def load_dataset(name: str, path: str | Path | None = None, *, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, seed: int = 0, limit: int | None = None,
                 synthetic: dict | None = None, imagefolder: dict | None = None) -> Dataset:
    """Load a dataset by name and split it reproducibly (seeded, stratified by class).

    - ``name``: one of :data:`DATASETS` ("digits", "mnist", "cifar10", "synthetic", "imagefolder"; :data:`READERS`).
    - ``path``: the data folder for mnist, cifar10 and imagefolder; ignored by digits and synthetic.
    - ``test_fraction``: share of all labelled examples held out as test, used only when the
      dataset has no official test set (MNIST without t10k files, CIFAR-10 without test_batch.bin,
      digits, synthetic).
    - ``val_fraction``: share of the remaining training examples (after ``limit``) held out as val.
    - ``limit``: keep at most this many training examples (train + val), a stratified seeded
      subsample; the test split is not affected, so results stay comparable.
    - ``synthetic``: parameters of the synthetic dataset (see :mod:`edgec.data.synthetic`).
    - ``imagefolder``: ``image_size``, ``channels``, ``resize`` of an image folder
      (:func:`edgec.data.imagefolder.load_imagefolder`).

    Raises :class:`DataError` for an unknown name, bad parameters, missing or malformed files.

    Example:
        >>> ds = load_dataset("synthetic", synthetic={"n": 200, "shape": [3, 8, 8]}, seed=0)
        >>> ds.train.x.shape[1:], ds.num_classes, len(ds.test)
        ((3, 8, 8), 10, 40)
    """
    canonical = READERS.canonical(name)
    val_fraction = _check_fraction(val_fraction, "val_fraction")
    test_fraction = _check_fraction(test_fraction, "test_fraction")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}", hint="set seed to e.g. 0")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive integer or None, got {limit!r}",
                        hint="set limit to the number of training examples to keep, or remove it")
    extra: dict[str, Any] = {}
    if imagefolder is not None and canonical != "imagefolder":
        raise DataError(f"image folder options ({', '.join(imagefolder)}) were given for dataset '{canonical}'",
                        hint="remove data.image_size / data.channels / data.resize, or set data.name: imagefolder")
    if canonical == "imagefolder":
        unknown = set(imagefolder or {}) - set(IMAGEFOLDER_OPTIONS)
        if unknown or synthetic is not None:
            raise DataError(f"unknown image folder option(s): {', '.join(sorted(unknown)) or 'synthetic'}",
                            hint=f"imagefolder takes {', '.join(IMAGEFOLDER_OPTIONS)}")
        return load_imagefolder(path, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                                limit=limit, **(imagefolder or {}))
    if canonical == "synthetic":
        extra["synthetic"] = check_params(synthetic)
        raw = make_synthetic(extra["synthetic"])
    else:
        if synthetic is not None:
            raise DataError(f"synthetic parameters were given for dataset '{canonical}'",
                            hint="remove data.synthetic, or set data.name to 'synthetic'")
        raw = READERS.get(canonical)(path)
    if canonical in IMAGE_SETS:
        c, h, w = raw.x.shape[1:]
        raw.preprocess = {"image_size": [int(h), int(w)], "resize": None, "crop": "center", "channels": int(c),
                          "layout": "NCHW"}
    return build_dataset(raw, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                         limit=limit, extra=extra)
