"""scikit-learn's bundled digits: 1,797 real 8x8 handwritten digits, no download needed.

Pixels are integers 0..16 (4x4 blocks of a 32x32 bitmap counted), so ``scale`` is 1/16. There is
no official test set: test and validation are seeded stratified splits. No data path is needed and
any path given is ignored, so a recipe can switch datasets without removing ``data.path``.

Example:
    >>> raw = read_digits()
    >>> raw.x.shape, raw.x.dtype, raw.scale
    ((1797, 1, 8, 8), dtype('uint8'), 0.0625)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import RawData

NUM_CLASSES = 10
SOURCE = "sklearn.datasets.load_digits"


def read_digits(path: str | Path | None = None) -> RawData:
    """Load the digits as :class:`RawData`: (1797, 1, 8, 8) uint8 in 0..16. ``path`` is ignored.

    Example:
        >>> read_digits().labels[:3]
        ['0', '1', '2']
    """
    # Imported here: scikit-learn takes ~1 s to import and only this dataset needs it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # images: (1797, 8, 8) float64 holding exact integers 0..16; uint8 is lossless and lets the
    # shared normalisation code treat every dataset alike.
    x = bunch.images.astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)           # (N,)
    return RawData(name="digits", x=x, y=y, num_classes=NUM_CLASSES, scale=1 / 16,
                   labels=[str(i) for i in range(NUM_CLASSES)], source=SOURCE)
