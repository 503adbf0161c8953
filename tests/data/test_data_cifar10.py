"""CIFAR-10 binary reader, on batches generated in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgec.data import load_dataset
from edgec.data.cifar10 import DEFAULT_LABELS
from edgec.errors import DataError


def random_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 32, 32) uint8 with distinct channel ranges (R bright, G mid, B dark), so a mix-up of
    the channel planes changes the per-channel statistics."""
    r = rng.integers(150, 256, (n, 1, 32, 32))
    g = rng.integers(60, 150, (n, 1, 32, 32))
    b = rng.integers(0, 60, (n, 1, 32, 32))
    return np.concatenate([r, g, b], axis=1).astype(np.uint8)


def write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """CIFAR-10 binary records: per image 1 label byte then the R, G and B planes (32x32 each)."""
    records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(records.tobytes())
    return path


def make_cifar(folder: Path, batch_sizes=(60, 40), test_size: int | None = 30, seed: int = 0):
    """Write data_batch_1..k (+ test_batch); returns (train_x, train_y, test_x, test_y)."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k, n in enumerate(batch_sizes, start=1):
        x, y = random_images(n, rng), np.arange(n) % 10
        write_cifar_batch(folder / f"data_batch_{k}.bin", x, y)
        xs.append(x)
        ys.append(y)
    tx = ty = None
    if test_size:
        tx, ty = random_images(test_size, rng), rng.integers(0, 10, test_size)
        write_cifar_batch(folder / "test_batch.bin", tx, ty)
    return np.concatenate(xs), np.concatenate(ys), tx, ty


def test_loads_batches_in_order_with_official_test(tmp_path, to_pixels):
    x, y, tx, ty = make_cifar(tmp_path / "cifar-10-batches-bin", batch_sizes=(60, 40, 50))
    ds = load_dataset("cifar10", tmp_path, val_fraction=0.2)  # the parent folder also works
    assert ds.test_is_official and ds.input_shape == (3, 32, 32) and ds.labels == list(DEFAULT_LABELS)
    assert ds.source.endswith("cifar-10-batches-bin")
    # Official test = test_batch.bin in file order; pixels come back exactly, planes in RGB order.
    np.testing.assert_array_equal(to_pixels(ds, ds.test.x), tx)
    np.testing.assert_array_equal(ds.test.y, ty)
    assert len(ds.train) == 120 and len(ds.val) == 30
    assert ds.mean[0] > ds.mean[1] > ds.mean[2]
    # Per channel: train mean 0, std 1.
    xt = ds.train.x.astype(np.float64)
    np.testing.assert_allclose(xt.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(xt.std(axis=(0, 2, 3)), 1, atol=1e-4)
    # train + val are exactly the images of all three batches, each with its own label.
    by_bytes = {img.tobytes(): lab for img, lab in zip(x, y)}
    pairs = [(img.tobytes(), lab) for s in (ds.train, ds.val) for img, lab in zip(to_pixels(ds, s.x), s.y)]
    assert sorted(p[0] for p in pairs) == sorted(by_bytes)
    assert all(by_bytes[img] == lab for img, lab in pairs)


def test_without_test_batch_the_split_is_seeded(tmp_path, to_pixels):
    x, _, _, _ = make_cifar(tmp_path, batch_sizes=(100,), test_size=None)
    a = load_dataset("cifar10", tmp_path, test_fraction=0.2, seed=1)
    b = load_dataset("cifar10", tmp_path, test_fraction=0.2, seed=1)
    c = load_dataset("cifar10", tmp_path, test_fraction=0.2, seed=2)
    assert not a.test_is_official and len(a.test) == 20
    assert np.bincount(a.test.y, minlength=10).tolist() == [2] * 10  # stratified
    np.testing.assert_array_equal(a.test.x, b.test.x)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert not np.array_equal(to_pixels(a, a.test.x), to_pixels(c, c.test.x))
    together = np.concatenate([to_pixels(a, s.x) for s in (a.train, a.val, a.test)])
    assert sorted(i.tobytes() for i in together) == sorted(i.tobytes() for i in x)


def test_label_names_from_meta_file(tmp_path):
    make_cifar(tmp_path, batch_sizes=(20,), test_size=None)
    names = [f"thing{i}" for i in range(10)]
    (tmp_path / "batches.meta.txt").write_text("\n".join(names) + "\n\n")  # trailing blank lines, as shipped
    assert load_dataset("cifar10", tmp_path).labels == names


def test_limit_keeps_official_test_intact(tmp_path):
    make_cifar(tmp_path, batch_sizes=(100, 100))
    ds = load_dataset("cifar10", tmp_path, limit=50, val_fraction=0.2)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (40, 10, 30)
    assert np.bincount(ds.train.y, minlength=10).tolist() == [4] * 10




def _break(d: Path, case: str) -> str:
    """Damage a good folder in one way; returns the file name the error must mention."""
    batch = d / "data_batch_1.bin"
    if case == "truncated":
        batch.write_bytes(batch.read_bytes()[:-5])
    elif case == "cifar100 layout":
        batch.write_bytes(b"\0" * 3074 * 3)
    elif case == "empty":
        batch.write_bytes(b"")
    elif case == "label out of range":
        data = bytearray(batch.read_bytes())
        data[3073 * 4] = 12  # label byte of record 4
        batch.write_bytes(bytes(data))
    elif case == "bad test batch":
        (d / "test_batch.bin").write_bytes(b"\0" * 100)
        return "test_batch.bin"
    elif case == "short meta":
        (d / "batches.meta.txt").write_text("cat\ndog\n")
        return "batches.meta.txt"
    return "data_batch_1.bin"


WORDS = {"truncated": "not a multiple of the 3073-byte", "cifar100 layout": "CIFAR-100",
         "empty": "is empty", "label out of range": "record 4 has label 12",
         "bad test batch": "100 bytes", "short meta": "lists 2 class names"}


@pytest.mark.parametrize("case", WORDS)
def test_malformed_files_raise_data_error_naming_the_file(tmp_path, case):
    make_cifar(tmp_path, batch_sizes=(10, 10), test_size=10)
    load_dataset("cifar10", tmp_path)  # the untouched folder is fine
    filename = _break(tmp_path, case)
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path)
    assert filename in err.value.message and WORDS[case] in err.value.message
    assert err.value.hint


@pytest.mark.parametrize("present, hint", [
    ([], "data_batch_1.bin .. data_batch_5.bin"),
    (["cifar-10-binary.tar.gz"], "tar xzf"),
    (["cifar-10-batches-py"], "pickle"),
])
def test_no_data_batches(tmp_path, present, hint):
    for name in present:
        (tmp_path / name).mkdir() if name.endswith("-py") else (tmp_path / name).write_bytes(b"x")
    write_cifar_batch(tmp_path / "test_batch.bin", np.zeros((2, 3, 32, 32), np.uint8), np.zeros(2))
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", tmp_path)
    assert "data_batch" in err.value.message and str(tmp_path) in err.value.message
    assert hint in err.value.hint


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10", tmp_path / "nope")
    with pytest.raises(DataError, match="needs a data path"):
        load_dataset("cifar10")
