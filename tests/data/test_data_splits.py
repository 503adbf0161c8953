"""load_dataset's contract, independent of the file format: names, parameters, splits, describe()."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgec.data import DATASETS, Dataset, Split, load_dataset
from edgec.data.splits import allocate, channel_stats, normalise, stratified_pick
from edgec.data.synthetic import make_synthetic
from edgec.errors import DataError

SYN = {"num_classes": 5, "n": 300, "shape": [2, 6, 6]}


def test_allocate_is_proportional_and_exact():
    counts = np.array([50, 30, 15, 5])
    for total in range(0, 101):
        take = allocate(counts, total)
        assert take.sum() == total and np.all(take <= counts) and np.all(take >= 0)
        assert np.all(np.abs(take - counts * total / counts.sum()) < 1)


def test_stratified_pick_partitions_and_depends_on_the_seed():
    y = np.repeat(np.arange(3), [20, 10, 6])
    picked, rest = stratified_pick(y, 12, np.random.default_rng(0))
    assert sorted(np.concatenate([picked, rest]).tolist()) == list(range(36))
    assert np.bincount(y[picked]).tolist() == [7, 3, 2]  # quotas 6.67, 3.33, 2: +1 to the largest remainder
    again, _ = stratified_pick(y, 12, np.random.default_rng(0))
    other, _ = stratified_pick(y, 12, np.random.default_rng(1))
    np.testing.assert_array_equal(picked, again)
    assert set(picked.tolist()) != set(other.tolist())


def test_stats_and_normalise_match_the_formula():
    x = np.random.default_rng(0).integers(0, 256, (7, 3, 4, 5), dtype=np.uint8)
    mean, std = channel_stats(x, 1 / 255)
    ref = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 2, 3)), rtol=1e-12)
    expected = (ref - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(normalise(x, 1 / 255, mean, std), expected, rtol=1e-6, atol=1e-6)
    # A constant channel is left unscaled instead of dividing by zero.
    assert channel_stats(np.full((2, 1, 2, 2), 7, np.uint8), 1.0) == ((7.0,), (1.0,))


def test_same_seed_same_splits_different_seed_different():
    a = load_dataset("synthetic", synthetic=SYN, seed=0)
    b = load_dataset("synthetic", synthetic=SYN, seed=0)
    c = load_dataset("synthetic", synthetic=SYN, seed=1)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(a, name).x, getattr(b, name).x)
        np.testing.assert_array_equal(getattr(a, name).y, getattr(b, name).y)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert not np.array_equal(a.test.x, c.test.x) and not np.array_equal(a.train.y, c.train.y)


def test_splits_partition_the_data_and_are_stratified(to_pixels):
    raw = make_synthetic(SYN)
    ds = load_dataset("synthetic", synthetic=SYN, val_fraction=0.2, test_fraction=0.3)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (168, 42, 90)
    together = np.concatenate([to_pixels(ds, s.x) for s in (ds.train, ds.val, ds.test)])
    assert sorted(i.tobytes() for i in together) == sorted(i.tobytes() for i in raw.x)
    for split, per_class in ((ds.train, 168 / 5), (ds.val, 42 / 5), (ds.test, 90 / 5)):
        assert np.all(np.abs(np.bincount(split.y, minlength=5) - per_class) < 1)


def test_limit_subsamples_training_data_only(to_pixels):
    full = load_dataset("synthetic", synthetic=SYN, seed=3)
    small = load_dataset("synthetic", synthetic=SYN, seed=3, limit=100)
    assert len(small.train) + len(small.val) == 100 and len(small.val) == 10
    # The test split holds the same examples with or without a limit (only the train statistics
    # used to normalise it differ), so results stay comparable.
    np.testing.assert_array_equal(to_pixels(full, full.test.x), to_pixels(small, small.test.x))
    np.testing.assert_array_equal(full.test.y, small.test.y)
    assert small.mean != full.mean
    assert np.bincount(small.train.y).tolist() == [18] * 5
    assert small.fingerprint != full.fingerprint
    # A limit above the available data changes nothing but the recorded parameters.
    big = load_dataset("synthetic", synthetic=SYN, seed=3, limit=10_000)
    np.testing.assert_array_equal(big.train.x, full.train.x)


def test_describe_and_normalization_are_json_and_complete():
    ds = load_dataset("synthetic", synthetic=SYN, seed=2, limit=120)
    d = json.loads(json.dumps(ds.describe()))
    assert d["name"] == "synthetic" and d["source"] == "synthetic" and d["num_classes"] == 5
    assert d["sizes"] == {"train": len(ds.train), "val": len(ds.val), "test": len(ds.test)}
    assert d["input_shape"] == [2, 6, 6] and d["labels"] == ds.labels
    assert d["fingerprint"] == ds.fingerprint and len(ds.fingerprint) == 64
    assert d["test_is_official"] is False
    assert d["split"]["seed"] == 2 and d["split"]["limit"] == 120
    n = d["normalization"]
    assert n == {"layout": "NCHW", "scale": 1 / 255, "mean": list(ds.mean), "std": list(ds.std),
                 "formula": "(pixel*scale - mean)/std"}
    assert len(n["mean"]) == len(n["std"]) == 2


def test_unknown_name_lists_valid_names_and_suggests():
    with pytest.raises(DataError) as err:
        load_dataset("mnsit")
    assert all(name in err.value.message for name in DATASETS)
    assert "did you mean 'mnist'" in err.value.hint
    with pytest.raises(DataError) as err:
        load_dataset("coco")  # (imagenet now suggests imagefolder, rightly: ImageNet is an image folder)
    assert "did you mean" not in (err.value.hint or "")


def test_name_spellings_are_forgiving():
    assert load_dataset("Synthetic", synthetic=SYN).name == "synthetic"
    with pytest.raises(DataError, match="'cifar10' needs a data path"):
        load_dataset("CIFAR-10")


@pytest.mark.parametrize("kwargs, words", [
    ({"val_fraction": 1.0}, "val_fraction must be a number in [0, 1)"),
    ({"val_fraction": -0.1}, "val_fraction must be"),
    ({"test_fraction": "0.2"}, "test_fraction must be"),
    ({"seed": -1}, "seed must be an integer >= 0"),
    ({"limit": 0}, "limit must be a positive integer"),
    ({"limit": 2.5}, "limit must be a positive integer"),
])
def test_bad_parameters_raise_data_error(kwargs, words):
    with pytest.raises(DataError) as err:
        load_dataset("synthetic", synthetic=SYN, **kwargs)
    assert words in err.value.message and err.value.hint


def test_synthetic_options_for_another_dataset_are_rejected():
    with pytest.raises(DataError, match="synthetic parameters were given for dataset 'digits'"):
        load_dataset("digits", synthetic={"n": 10})


def test_too_little_data_for_a_training_split():
    with pytest.raises(DataError) as err:
        load_dataset("synthetic", synthetic=SYN, limit=1, val_fraction=0.5)
    assert "no training examples" in err.value.message and "limit" in err.value.hint


def test_zero_val_fraction_gives_an_empty_but_well_formed_split():
    ds = load_dataset("synthetic", synthetic=SYN, val_fraction=0.0)
    assert len(ds.val) == 0 and ds.val.x.shape == (0, 2, 6, 6) and ds.val.x.dtype == np.float32


def test_split_checks_its_arrays():
    Split(np.zeros((2, 1, 3, 3), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError):
        Split(np.zeros((2, 1, 3, 3), np.float64), np.zeros(2, np.int64))
    with pytest.raises(ValueError):
        Split(np.zeros((2, 9), np.float32), np.zeros(2, np.int64))
    with pytest.raises(ValueError):
        Split(np.zeros((2, 1, 3, 3), np.float32), np.zeros(3, np.int64))
    assert isinstance(load_dataset("synthetic", synthetic=SYN), Dataset)
