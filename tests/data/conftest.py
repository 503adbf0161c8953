"""Helpers shared by the data tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgec.data import Dataset


def _to_pixels(ds: Dataset, x: np.ndarray) -> np.ndarray:
    """Undo the recorded normalisation: (N, C, H, W) float32 -> raw uint8 pixels.

    Fails unless every value maps back to an integer pixel level, which holds only if ``x`` was
    normalised with exactly ``ds.mean``/``ds.std``/``ds.scale`` (i.e. the train statistics).
    """
    mean = np.array(ds.mean)[None, :, None, None]
    std = np.array(ds.std)[None, :, None, None]
    levels = (x.astype(np.float64) * std + mean) / ds.scale
    rounded = np.round(levels)
    assert np.abs(levels - rounded).max() < 1e-3, "values are not normalised with the recorded stats"
    assert rounded.min() >= 0 and rounded.max() <= 255
    return rounded.astype(np.uint8)


@pytest.fixture
def to_pixels() -> Callable[[Dataset, np.ndarray], np.ndarray]:
    return _to_pixels
