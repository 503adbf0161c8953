"""The containers every loader returns.

- :class:`Split`: one ``(x, y)`` pair, already normalised, ready to feed a network.
- :class:`Dataset`: train/val/test splits plus everything a deployer needs to preprocess inputs
  exactly as edgec did (layout, scale, per-channel mean/std), labels and a fingerprint.
- :class:`RawData`: what a format reader (digits, MNIST, CIFAR-10, synthetic) produces before any
  splitting or normalisation; :func:`edgec.data.splits.build_dataset` turns it into a Dataset.

Example:
    >>> from edgec.data import load_dataset
    >>> ds = load_dataset("digits")
    >>> ds.train.x.shape[1:], ds.normalization()["layout"]
    ((1, 8, 8), 'NCHW')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

NORMALIZATION_FORMULA = "(pixel*scale - mean)/std"


# eq=False: the generated __eq__ would compare numpy arrays and raise "truth value is ambiguous".
@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset.

    ``x``: (N, C, H, W) float32, already normalised with the *training* split's statistics.
    ``y``: (N,) int64 class indices.

    Example:
        >>> s = Split(np.zeros((2, 1, 8, 8), np.float32), np.array([0, 1]))
        >>> len(s)
        2
    """

    x: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        # Wrong shapes/dtypes here are edgec bugs (loaders build Splits), hence ValueError.
        if self.x.ndim != 4 or self.x.dtype != np.float32:
            raise ValueError(f"Split.x must be (N, C, H, W) float32, got {self.x.shape} {self.x.dtype}")
        if self.y.ndim != 1 or self.y.dtype != np.int64:
            raise ValueError(f"Split.y must be (N,) int64, got {self.y.shape} {self.y.dtype}")
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"Split has {self.x.shape[0]} images but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class Dataset:
    """A dataset split into train/val/test, normalised, with what is needed to reproduce it.

    ``mean``/``std`` are per channel, computed on the train split after scaling pixels to
    ``pixel * scale`` and applied unchanged to val and test (no information leaks from them).
    ``fingerprint`` changes whenever the raw data or the split parameters change.
    ``split_params`` records the parameters the splits were made with (seed, fractions, limit).

    Example:
        >>> ds = load_dataset("synthetic", synthetic={"n": 200})      # doctest: +SKIP
        >>> len(ds.train) + len(ds.val) + len(ds.test)                 # doctest: +SKIP
        200
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float
    labels: list[str]
    source: str
    test_is_official: bool
    fingerprint: str
    split_params: dict[str, Any] = field(default_factory=dict)
    # How an image file becomes a model input (edgec.data.imagefolder.Preprocess.to_dict()), when known:
    # image folders, and the built-in image sets (one image of their own size, no crop); None otherwise.
    preprocess: dict[str, Any] | None = None

    def normalization(self) -> dict[str, Any]:
        """How to preprocess a raw image for a model trained on this dataset, without edgec.

        Example:
            >>> ds.normalization()                                      # doctest: +SKIP
            {'layout': 'NCHW', 'scale': 0.0625, 'mean': [0.30], 'std': [0.38],
             'formula': '(pixel*scale - mean)/std'}
        """
        return {
            "layout": "NCHW",
            "scale": float(self.scale),
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
            "formula": NORMALIZATION_FORMULA,
        }

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary (for manifests and reports).

        Example:
            >>> json.dumps(load_dataset("digits").describe())          # doctest: +SKIP
        """
        return {
            "name": self.name,
            "source": self.source,
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "num_classes": int(self.num_classes),
            "input_shape": [int(d) for d in self.input_shape],
            "labels": [str(label) for label in self.labels],
            "normalization": self.normalization(),
            "fingerprint": self.fingerprint,
            "test_is_official": bool(self.test_is_official),
            "split": dict(self.split_params),
            **({"preprocess": dict(self.preprocess)} if self.preprocess is not None else {}),
        }


@dataclass
class RawData:
    """Decoded but unsplit, unnormalised data, as a format reader returns it.

    ``x``: (N, C, H, W) uint8 raw pixels (kept uint8 until normalisation: CIFAR-10's 50,000
    training images are 150 MB as uint8 and 600 MB as float32). ``y``: (N,) int64.
    ``test_x``/``test_y``: the dataset's official test set, same layouts, or None.

    Example:
        >>> raw = RawData("toy", np.zeros((4, 1, 2, 2), np.uint8), np.array([0, 1, 0, 1]),
        ...               num_classes=2, scale=1 / 255, labels=["a", "b"], source="memory")
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    scale: float
    labels: list[str]
    source: str
    test_x: np.ndarray | None = None
    test_y: np.ndarray | None = None
    # When these pixels are what image files of this size look like: Preprocess fields without mean/std
    # (e.g. {"image_size": [28, 28], "resize": None, "crop": "center", "channels": 1, "layout": "NCHW"}).
    preprocess: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        pairs = [(self.x, self.y)] + ([(self.test_x, self.test_y)] if self.test_x is not None else [])
        for x, y in pairs:
            if x is None or y is None or x.ndim != 4 or x.dtype != np.uint8:
                shape = getattr(x, "shape", None)
                raise ValueError(f"RawData images must be (N, C, H, W) uint8, got {shape}")
            if y.ndim != 1 or y.dtype != np.int64 or len(y) != len(x):
                raise ValueError(f"RawData labels must be ({len(x)},) int64, got {y.shape} {y.dtype}")
        if self.test_x is not None and self.test_x.shape[1:] != self.x.shape[1:]:
            raise ValueError(f"test images {self.test_x.shape[1:]} != train images {self.x.shape[1:]}")
        if len(self.labels) != self.num_classes:
            raise ValueError(f"{len(self.labels)} label names for {self.num_classes} classes")
