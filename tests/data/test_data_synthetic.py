"""Synthetic data: seeded, balanced, parameter-checked, and learnable by a small CNN."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.data import load_dataset
from edgec.data.synthetic import make_synthetic
from edgec.errors import DataError


def test_shapes_balance_and_generation_seed():
    ds = load_dataset("synthetic", synthetic={"num_classes": 4, "n": 202, "shape": [3, 10, 6]})
    assert ds.input_shape == (3, 10, 6) and ds.num_classes == 4 and ds.labels[3] == "class_3"
    assert ds.train.x.shape[1:] == (3, 10, 6) and ds.source == "synthetic"
    assert len(ds.train) + len(ds.val) + len(ds.test) == 202
    all_y = np.concatenate([ds.train.y, ds.val.y, ds.test.y])
    assert np.bincount(all_y).tolist() == [51, 51, 50, 50]
    np.testing.assert_allclose(ds.train.x.astype(np.float64).mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(ds.train.x.astype(np.float64).std(axis=(0, 2, 3)), 1, atol=1e-4)
    # The generation seed fixes the images; the split seed only re-splits them.
    a, b = make_synthetic({"seed": 1, "n": 50}), make_synthetic({"seed": 1, "n": 50})
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, make_synthetic({"seed": 2, "n": 50}).x)
    assert ds.split_params["synthetic"]["shape"] == [3, 10, 6]


@pytest.mark.parametrize("params, words", [
    ({"classes": 3}, "unknown parameter(s) classes"),
    ({"num_classes": 1}, "num_classes must be an integer >= 2"),
    ({"n": 5}, "n must be an integer >= 10"),
    ({"shape": [8, 8]}, "shape must be [C, H, W]"),
    ({"shape": [1, 0, 8]}, "shape must be [C, H, W]"),
    ({"noise": -1}, "noise must be a number >= 0"),
    ({"noise": "lots"}, "noise must be a number >= 0"),
    ({"seed": 1.5}, "seed must be an integer >= 0"),
])
def test_bad_parameters(params, words):
    with pytest.raises(DataError) as err:
        load_dataset("synthetic", synthetic=params)
    assert words in err.value.message and "num_classes" in err.value.hint


def _cnn_test_accuracy(ds, epochs: int = 15) -> float:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add overhead on a shared 2-core machine
    c, h, w = ds.input_shape
    net = torch.nn.Sequential(
        torch.nn.Conv2d(c, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(8 * (h // 2) * (w // 2), ds.num_classes))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = torch.from_numpy(ds.train.x), torch.from_numpy(ds.train.y)
    for _ in range(epochs):  # full batch: the data set is tiny
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    with torch.no_grad():
        pred = net(torch.from_numpy(ds.test.x)).argmax(1).numpy()
    torch.set_num_threads(threads)
    return float((pred == ds.test.y).mean())


def test_a_small_cnn_learns_it_far_above_chance():
    ds = load_dataset("synthetic", synthetic={"num_classes": 10, "n": 400, "shape": [1, 8, 8]})
    assert _cnn_test_accuracy(ds) > 0.6  # chance: 0.1
    # The noise parameter really controls difficulty: drowned patterns are not learned.
    hard = load_dataset("synthetic", synthetic={"num_classes": 10, "n": 400, "shape": [1, 8, 8],
                                                "noise": 8.0})
    assert _cnn_test_accuracy(hard) < 0.6
