"""Seeded, stratified splits, train-only normalisation statistics and the dataset fingerprint.

Order of operations (one ``numpy.random.default_rng(seed)`` drives all of them, always in this
order, so the same seed gives the same splits and a different seed different ones):

1. test: the official test set when the format has one; otherwise a stratified
   ``test_fraction`` of all labelled examples. It is taken *before* ``limit`` so the test split
   does not change when ``limit`` does (results stay comparable across fast and full runs).
2. limit: a stratified subsample of at most ``limit`` of the remaining (training) examples.
3. val: a stratified ``val_fraction`` of what remains; the rest is train.

Stratified = every class is represented in each part in proportion to its count, with the part's
total exactly ``round(fraction * n)`` (largest-remainder allocation in integer arithmetic).

Example:
    >>> y = np.array([0] * 8 + [1] * 2)
    >>> picked, rest = stratified_pick(y, 5, np.random.default_rng(0))
    >>> np.bincount(y[picked]).tolist()
    [4, 1]
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from edgec.errors import DataError

from .dataset import Dataset, RawData, Split

# Part of the fingerprint: bump it whenever the split or normalisation algorithm changes, so
# cached stages built on the old splits are not reused by mistake.
SPLIT_ALGORITHM = "edgec.data.splits/v1"


def allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """How many examples to take from each class: proportional to ``counts``, summing to ``total``.

    Example:
        >>> allocate(np.array([5, 3, 2]), 5).tolist()
        [3, 1, 1]
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if not 0 <= total <= n:
        raise ValueError(f"cannot take {total} of {n} examples")
    if n == 0:
        return np.zeros_like(counts)
    # Integer arithmetic: floor(counts * total / n) plus one for the largest remainders.
    # A class gets +1 only if its remainder is > 0, so it never exceeds its own count.
    base = counts * total // n
    remainder = counts * total % n
    short = total - int(base.sum())
    order = np.argsort(-remainder, kind="stable")  # ties: lower class index first
    base[order[:short]] += 1
    return base


def stratified_pick(y: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split the indices of ``y`` (N,) into ``k`` picked (stratified by class) and the rest.

    Both index arrays are shuffled (so neither is ordered by class).

    Example:
        >>> picked, rest = stratified_pick(np.array([0, 0, 1, 1]), 2, np.random.default_rng(0))
        >>> sorted(np.array([0, 0, 1, 1])[picked].tolist())
        [0, 1]
    """
    classes, counts = np.unique(y, return_counts=True)
    take = allocate(counts, k)
    picked, rest = [], []
    for c, t in zip(classes, take):
        idx = rng.permutation(np.flatnonzero(y == c))
        picked.append(idx[:t])
        rest.append(idx[t:])
    empty = np.zeros(0, dtype=np.int64)
    picked_idx = np.concatenate(picked) if picked else empty
    rest_idx = np.concatenate(rest) if rest else empty
    return rng.permutation(picked_idx), rng.permutation(rest_idx)


def _round(fraction: float, n: int) -> int:
    # Round half up (Python's round() is banker's rounding, surprising in a size).
    return int(np.floor(fraction * n + 0.5))


def channel_stats(x: np.ndarray, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and std of ``x * scale`` for uint8 ``x`` (N, C, H, W).

    Counting the 256 possible values per channel is exact and needs no float copy of the data.

    Example:
        >>> channel_stats(np.array([[[[0, 255]]]], np.uint8), 1 / 255)
        ((0.5,), (0.5,))
    """
    values = np.arange(256, dtype=np.float64) * scale
    means, stds = [], []
    for c in range(x.shape[1]):
        hist = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)
        total = hist.sum()
        mean = float((hist * values).sum() / total)
        var = float((hist * (values - mean) ** 2).sum() / total)
        std = var ** 0.5
        # A channel that is constant over the whole train split carries no information; dividing
        # by ~0 would blow up any other value, so it is left unscaled (std 1).
        means.append(mean)
        stds.append(std if std > 1e-12 else 1.0)
    return tuple(means), tuple(stds)


def normalise(x: np.ndarray, scale: float, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """``(x * scale - mean) / std`` per channel, uint8 (N, C, H, W) -> float32 (N, C, H, W).

    Done through a 256-entry lookup table per channel: one pass, and each output is the formula
    evaluated in float64 and rounded once to float32.

    Example:
        >>> normalise(np.array([[[[0, 255]]]], np.uint8), 1 / 255, (0.5,), (0.5,)).tolist()
        [[[[-1.0, 1.0]]]]
    """
    out = np.empty(x.shape, dtype=np.float32)
    levels = np.arange(256, dtype=np.float64) * scale
    for c in range(x.shape[1]):
        lut = ((levels - mean[c]) / std[c]).astype(np.float32)  # (256,)
        out[:, c] = lut[x[:, c]]
    return out


def fingerprint(raw: RawData, params: dict[str, Any]) -> str:
    """sha256 over the decoded data (not the file bytes: a .gz and a plain copy agree), the
    label names, the split parameters and :data:`SPLIT_ALGORITHM`.

    Example:
        >>> len(fingerprint(raw, {"seed": 0}))                          # doctest: +SKIP
        64
    """
    h = hashlib.sha256()
    meta = {"algorithm": SPLIT_ALGORITHM, "name": raw.name, "labels": list(raw.labels),
            "scale": raw.scale, "num_classes": raw.num_classes, "params": params}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    for arr in (raw.x, raw.y, raw.test_x, raw.test_y):
        if arr is None:
            h.update(b"none")
            continue
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).data)
    return h.hexdigest()


def split_indices(y: np.ndarray, *, val_fraction: float, test_fraction: float, seed: int,
                  limit: int | None, official_test: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(train, val, test)`` indices into ``y`` (see the module docstring for the order); ``test`` is
    None when the data has an official test set (then every index is train or val).

    Only labels are needed, so a reader can split first and decode only the examples it keeps.

    Example:
        >>> tr, va, te = split_indices(np.array([0, 1] * 10), val_fraction=0.1, test_fraction=0.2,
        ...                            seed=0, limit=None, official_test=False)
        >>> len(tr), len(va), len(te)
        (14, 2, 4)
    """
    rng = np.random.default_rng(seed)
    everything = np.arange(len(y))
    if official_test:
        test_idx, pool = None, everything
    else:
        test_idx, pool = stratified_pick(y, _round(test_fraction, len(y)), rng)
    if limit is not None and limit < len(pool):
        keep, _ = stratified_pick(y[pool], limit, rng)
        pool = pool[keep]
    val_rel, train_rel = stratified_pick(y[pool], _round(val_fraction, len(pool)), rng)
    return pool[train_rel], pool[val_rel], test_idx


def assemble_dataset(name: str, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                     test: tuple[np.ndarray, np.ndarray], *, num_classes: int, scale: float, labels: list[str],
                     source: str, test_is_official: bool, fingerprint: str, params: dict[str, Any],
                     too_small: str, preprocess: dict[str, Any] | None = None) -> Dataset:
    """A :class:`Dataset` from uint8 ``(x, y)`` splits: statistics from train only, every split
    normalised with them. ``too_small`` says why there might be no training examples.

    ``preprocess``: how image files become these pixels (:class:`~edgec.data.imagefolder.Preprocess`
    without mean/std), or None when the data does not come from image files of a known layout."""
    if len(train[1]) == 0:
        raise DataError(f"dataset '{name}' from {source} leaves no training examples ({too_small})",
                        hint="use more data, a larger limit, or smaller val/test fractions")
    mean, std = channel_stats(train[0], scale)
    full = None
    if preprocess is not None:
        full = {**preprocess, "mean": [float(m) for m in mean], "std": [float(s) for s in std]}
    return Dataset(
        name=name,
        train=Split(normalise(train[0], scale, mean, std), train[1]),
        val=Split(normalise(val[0], scale, mean, std), val[1]),
        test=Split(normalise(test[0], scale, mean, std), np.asarray(test[1])),
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in train[0].shape[1:]),  # type: ignore[arg-type]
        mean=mean,
        std=std,
        scale=float(scale),
        labels=list(labels),
        source=source,
        test_is_official=test_is_official,
        fingerprint=fingerprint,
        split_params=params,
        preprocess=full,
    )


def build_dataset(raw: RawData, *, val_fraction: float, test_fraction: float, seed: int,
                  limit: int | None, extra: dict[str, Any] | None = None) -> Dataset:
    """Split ``raw`` (see the module docstring for the order), normalise, fingerprint.

    Example:
        >>> ds = build_dataset(raw, val_fraction=0.1, test_fraction=0.2, seed=0, limit=None)  # doctest: +SKIP
    """
    official = raw.test_x is not None
    train_idx, val_idx, test_idx = split_indices(raw.y, val_fraction=val_fraction, test_fraction=test_fraction,
                                                 seed=seed, limit=limit, official_test=official)
    test = (raw.test_x, raw.test_y) if official else (raw.x[test_idx], raw.y[test_idx])
    params = {"seed": int(seed), "val_fraction": float(val_fraction),
              "test_fraction": None if official else float(test_fraction),
              "limit": None if limit is None else int(limit), **(extra or {})}
    too_small = (f"{len(raw.y)} labelled examples, val_fraction={val_fraction}, "
                 f"test_fraction={test_fraction if not official else 'official test set'}, limit={limit}")
    return assemble_dataset(raw.name, (raw.x[train_idx], raw.y[train_idx]), (raw.x[val_idx], raw.y[val_idx]),
                            test, num_classes=raw.num_classes, scale=raw.scale, labels=raw.labels,
                            source=raw.source, test_is_official=official, fingerprint=fingerprint(raw, params),
                            params=params, too_small=too_small, preprocess=raw.preprocess)
