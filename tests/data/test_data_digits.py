"""scikit-learn digits: 1,797 real 8x8 images shipped with scikit-learn."""

from __future__ import annotations

import json

import numpy as np

from edgec.data import load_dataset


def test_digits_loads_all_examples_with_seeded_stratified_splits(to_pixels):
    ds = load_dataset("digits", "/this/path/is/ignored")
    sizes = ds.describe()["sizes"]
    assert sizes == {"train": 1294, "val": 144, "test": 359} and sum(sizes.values()) == 1797
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10 and ds.scale == 1 / 16
    assert ds.source == "sklearn.datasets.load_digits" and not ds.test_is_official
    assert ds.labels == [str(i) for i in range(10)]
    for split in (ds.train, ds.val, ds.test):
        assert split.x.dtype == np.float32 and split.y.dtype == np.int64
        assert split.x.shape[1:] == (1, 8, 8)
        # Pixel levels are 0..16 and every split maps back to them with the train statistics.
        assert to_pixels(ds, split.x).max() == 16
    assert abs(float(ds.train.x.mean())) < 1e-5 and abs(float(ds.train.x.std()) - 1) < 1e-4
    # Stratified: every class holds ~20% of its examples in test (digits has ~180 per class).
    counts = np.bincount(np.concatenate([ds.train.y, ds.val.y, ds.test.y]))
    assert np.all(np.abs(np.bincount(ds.test.y) - 0.2 * counts) < 1)
    json.dumps(ds.describe())


def test_digits_is_reproducible_and_seed_dependent():
    a, b = load_dataset("digits", seed=5), load_dataset("digits", seed=5)
    c = load_dataset("digits", seed=6)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    np.testing.assert_array_equal(a.train.x, b.train.x)
    np.testing.assert_array_equal(a.val.y, b.val.y)
    assert not np.array_equal(a.test.x, c.test.x)
