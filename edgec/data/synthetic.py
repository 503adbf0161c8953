"""Seeded, learnable synthetic images: for tests and for trying the pipeline on any input shape.

Each class k has a smooth prototype pattern P_k (C, H, W): a sum of a few low-frequency 2-D
cosines with random frequencies, phases and amplitudes, scaled to max |P_k| = 1. An example of
class k is ``0.5 + 0.3 * (contrast * P_k + noise * N(0, 1))`` with contrast ~ U(0.7, 1.3),
clipped to [0, 1] and stored as uint8 (scale 1/255, like real 8-bit images). Classes differ
everywhere in the image, so even a small CNN (or a linear model) beats chance by far at the
default noise; raise ``noise`` to make the task harder.

Parameters (``load_dataset("synthetic", synthetic={...})``), all optional:

- ``num_classes`` (10), ``n`` (1000, total examples, classes balanced to within one),
- ``shape`` ([1, 16, 16], C, H, W), ``noise`` (0.5, std of the per-pixel noise relative to
  the pattern), ``seed`` (0: generates the data; the split seed is ``load_dataset``'s ``seed``,
  so changing it re-splits the same images).

Example:
    >>> raw = make_synthetic({"num_classes": 3, "n": 30, "shape": (2, 6, 6)})
    >>> raw.x.shape, np.bincount(raw.y).tolist()
    ((30, 2, 6, 6), [10, 10, 10])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgec.errors import DataError

from .dataset import RawData

DEFAULTS: dict[str, Any] = {"num_classes": 10, "n": 1000, "shape": (1, 16, 16), "noise": 0.5, "seed": 0}
COMPONENTS = 4   # cosines per prototype and channel
MAX_FREQ = 2     # cycles per image side: low, so patterns survive small shifts and pooling

_HINT = ("synthetic takes num_classes (int >= 2), n (int >= num_classes), shape ([C, H, W] "
         "positive ints), noise (number >= 0) and seed (int >= 0)")


def _int(params: dict[str, Any], key: str, minimum: int) -> int:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DataError(f"synthetic dataset: {key} must be an integer >= {minimum}, got {value!r}",
                        hint=_HINT)
    return int(value)


def check_params(synthetic: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults filled in and every value checked; the result is JSON-serialisable.

    Example:
        >>> check_params({"n": 50})["shape"]
        [1, 16, 16]
    """
    given = dict(synthetic or {})
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise DataError(f"synthetic dataset: unknown parameter(s) {', '.join(map(str, unknown))}", hint=_HINT)
    params = {**DEFAULTS, **given}
    out: dict[str, Any] = {"num_classes": _int(params, "num_classes", 2)}
    out["n"] = _int(params, "n", out["num_classes"])
    out["seed"] = _int(params, "seed", 0)
    shape = params["shape"]
    if (not isinstance(shape, (list, tuple)) or len(shape) != 3
            or any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1 for d in shape)):
        raise DataError(f"synthetic dataset: shape must be [C, H, W] positive integers, got {shape!r}",
                        hint=_HINT)
    out["shape"] = [int(d) for d in shape]
    noise = params["noise"]
    if isinstance(noise, bool) or not isinstance(noise, (int, float, np.floating, np.integer)) \
            or not np.isfinite(noise) or noise < 0:
        raise DataError(f"synthetic dataset: noise must be a number >= 0, got {noise!r}", hint=_HINT)
    out["noise"] = float(noise)
    return out


def prototypes(num_classes: int, shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """(num_classes, C, H, W) float64 smooth patterns with max |value| = 1 each.

    Example:
        >>> prototypes(2, (1, 4, 4), np.random.default_rng(0)).shape
        (2, 1, 4, 4)
    """
    c, h, w = shape
    yy, xx = np.meshgrid(np.arange(h) / h, np.arange(w) / w, indexing="ij")  # (H, W) each
    size = (num_classes, c, COMPONENTS)
    fy = rng.integers(0, MAX_FREQ + 1, size)[..., None, None]  # (K, C, M, 1, 1)
    fx = rng.integers(0, MAX_FREQ + 1, size)[..., None, None]
    phase = rng.uniform(0, 2 * np.pi, size)[..., None, None]
    amp = rng.uniform(0.5, 1.0, size)[..., None, None]
    waves = amp * np.cos(2 * np.pi * (fy * yy + fx * xx) + phase)  # (K, C, M, H, W)
    protos = waves.sum(axis=2)                                       # (K, C, H, W)
    peak = np.abs(protos).reshape(num_classes, -1).max(axis=1)
    return protos / np.maximum(peak, 1e-12)[:, None, None, None]


def make_synthetic(synthetic: dict[str, Any] | None = None) -> RawData:
    """Generate the synthetic dataset as :class:`RawData` (see the module docstring).

    Example:
        >>> make_synthetic({"n": 20, "num_classes": 2}).labels
        ['class_0', 'class_1']
    """
    p = check_params(synthetic)
    k, n, shape = p["num_classes"], p["n"], tuple(p["shape"])
    rng = np.random.default_rng(p["seed"])
    protos = prototypes(k, shape, rng)
    y = rng.permutation(np.arange(n) % k).astype(np.int64)  # balanced: counts differ by <= 1
    contrast = rng.uniform(0.7, 1.3, n)[:, None, None, None]
    noise = rng.standard_normal((n, *shape))
    images = 0.5 + 0.3 * (contrast * protos[y] + p["noise"] * noise)  # (N, C, H, W) in ~[0, 1]
    x = np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)
    return RawData(name="synthetic", x=x, y=y, num_classes=k, scale=1 / 255,
                   labels=[f"class_{i}" for i in range(k)], source="synthetic")
