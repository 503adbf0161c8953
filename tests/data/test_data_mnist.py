"""MNIST IDX reader: generated files in tmp_path (every malformed case), plus the real shared copy."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from edgec.data import load_dataset
from edgec.errors import DataError

IMAGES, LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
T_IMAGES, T_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """IDX encoding of a uint8 array: big-endian magic, one big-endian uint32 per dim, data."""
    magic = (0x0800 | array.ndim) if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_file(path: Path, data: bytes) -> Path:
    """Write ``data``, gzip-compressed when the name ends in .gz."""
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def make_mnist(folder: Path, labels: np.ndarray, *, test_labels: np.ndarray | None = None,
               gz: bool = True, hw: tuple[int, int] = (28, 28), seed: int = 0):
    """Write random-pixel MNIST files; returns (train_x, train_y, test_x, test_y) as written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    x = rng.integers(0, 256, (len(labels), *hw), dtype=np.uint8)
    write_file(folder / (IMAGES + ext), idx_bytes(x))
    write_file(folder / (LABELS + ext), idx_bytes(labels.astype(np.uint8)))
    tx = None
    if test_labels is not None:
        tx = rng.integers(0, 256, (len(test_labels), *hw), dtype=np.uint8)
        write_file(folder / (T_IMAGES + ext), idx_bytes(tx))
        write_file(folder / (T_LABELS + ext), idx_bytes(test_labels.astype(np.uint8)))
    return x, labels, tx, test_labels


def imbalanced_labels(seed: int = 0) -> np.ndarray:
    # 10 classes with counts 40, 36, ..., 4: stratification has to keep these proportions.
    counts = np.arange(40, 0, -4)
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(10), counts))


def test_official_test_split_is_the_t10k_files(tmp_path, to_pixels):
    x, y, tx, ty = make_mnist(tmp_path, imbalanced_labels(), test_labels=np.arange(50) % 10)
    ds = load_dataset("mnist", tmp_path, val_fraction=0.25)
    assert ds.test_is_official and ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    # Test = the t10k files, in file order, normalised with the train statistics.
    np.testing.assert_array_equal(to_pixels(ds, ds.test.x)[:, 0], tx)
    np.testing.assert_array_equal(ds.test.y, ty)
    assert len(ds.train) + len(ds.val) == len(y) == 220 and len(ds.val) == 55
    # A deployer applying normalization() to raw pixels gets exactly what the model saw.
    n = ds.normalization()
    manual = (tx[:, None].astype(np.float64) * n["scale"] - n["mean"][0]) / n["std"][0]
    np.testing.assert_allclose(ds.test.x, manual, atol=1e-5)
    # Every train/val image is one of the written training images, with its own label.
    by_bytes = {img.tobytes(): lab for img, lab in zip(x, y)}
    for split in (ds.train, ds.val):
        for img, lab in zip(to_pixels(ds, split.x)[:, 0], split.y):
            assert by_bytes[img.tobytes()] == lab


def test_without_t10k_the_test_split_is_seeded_and_stratified(tmp_path, to_pixels):
    x, y, _, _ = make_mnist(tmp_path, imbalanced_labels(), gz=False)
    ds = load_dataset("mnist", tmp_path, val_fraction=0.1, test_fraction=0.25, seed=3)
    assert not ds.test_is_official
    assert (len(ds.train), len(ds.val), len(ds.test)) == (148, 17, 55)
    # Disjoint and complete: the three splits are a partition of the written images.
    together = np.concatenate([to_pixels(ds, s.x)[:, 0] for s in (ds.train, ds.val, ds.test)])
    assert sorted(i.tobytes() for i in together) == sorted(i.tobytes() for i in x)
    # Stratified: per class, each split holds its share of that class to within one example.
    counts = np.bincount(y, minlength=10)
    test_counts = np.bincount(ds.test.y, minlength=10)
    assert np.all(np.abs(test_counts - 0.25 * counts) < 1)
    pool = counts - test_counts
    assert np.all(np.abs(np.bincount(ds.val.y, minlength=10) - 0.1 * pool) < 1)


def test_train_statistics_applied_to_all_splits(tmp_path, to_pixels):
    x, y, _, _ = make_mnist(tmp_path, imbalanced_labels())
    ds = load_dataset("mnist", tmp_path)
    assert abs(float(ds.train.x.astype(np.float64).mean())) < 1e-5
    assert abs(float(ds.train.x.astype(np.float64).std()) - 1) < 1e-4
    for split in (ds.val, ds.test):
        to_pixels(ds, split.x)  # maps back to integer pixels only with the train mean/std
    train_pixels = to_pixels(ds, ds.train.x).astype(np.float64) / 255
    assert ds.mean[0] == pytest.approx(train_pixels.mean(), abs=1e-9)
    assert ds.std[0] == pytest.approx(train_pixels.std(), abs=1e-9)


def test_gz_and_plain_files_give_the_same_dataset(tmp_path):
    labels = imbalanced_labels()
    make_mnist(tmp_path / "gz", labels, gz=True)
    make_mnist(tmp_path / "plain", labels, gz=False)
    a, b = load_dataset("mnist", tmp_path / "gz"), load_dataset("mnist", tmp_path / "plain")
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.train.x, b.train.x)


def test_torchvision_layout_and_non_square_images(tmp_path):
    make_mnist(tmp_path / "MNIST" / "raw", np.arange(40) % 10, hw=(12, 9))
    ds = load_dataset("mnist", tmp_path)
    assert ds.input_shape == (1, 12, 9) and ds.source.endswith("raw")


GOOD_IMAGES = idx_bytes(np.zeros((20, 28, 28), np.uint8))
GOOD_LABELS = idx_bytes((np.arange(20) % 10).astype(np.uint8))
BAD_LABEL = GOOD_LABELS[:15] + b"\x0a" + GOOD_LABELS[16:]  # label 10 at index 7 (8-byte header)
GZ_HEADER = gzip.compress(b"")[:10]


def _put(name: str, data: bytes, compress: bool = True):
    """A way to break a good folder: write ``data`` (gzipped unless told not to) to ``name``."""
    return lambda d: (d / name).write_bytes(gzip.compress(data) if compress else data)


def _remove(name: str):
    return lambda d: (d / name).unlink()


# case -> (how to break a good folder, file the message must name, words it must contain)
MALFORMED = {
    "images missing": (_remove(f"{IMAGES}.gz"), IMAGES, "has no"),
    "labels missing": (_remove(f"{LABELS}.gz"), LABELS, "has no"),
    "not gzip": (_put(f"{IMAGES}.gz", GOOD_IMAGES, compress=False), f"{IMAGES}.gz",
                 "does not start with the gzip signature"),
    "corrupt gzip": (_put(f"{IMAGES}.gz", GZ_HEADER + b"\xff" * 40, compress=False),
                     f"{IMAGES}.gz", "corrupt gzip"),
    "truncated gzip": (_put(f"{LABELS}.gz", gzip.compress(GOOD_LABELS)[:-12], compress=False),
                       f"{LABELS}.gz", "truncated gzip"),
    "bad gzip crc": (_put(f"{LABELS}.gz", gzip.compress(GOOD_LABELS)[:-8] + b"\0" * 8, compress=False),
                     f"{LABELS}.gz", "CRC check failed"),
    "labels in images' place": (_put(f"{IMAGES}.gz", GOOD_LABELS), f"{IMAGES}.gz", "swapped"),
    "unknown magic": (_put(f"{LABELS}.gz", b"\x00\x00\x0d\x01" + GOOD_LABELS[4:]), f"{LABELS}.gz",
                      "magic number 0x00000d01"),
    "empty file": (_put(f"{IMAGES}.gz", b""), f"{IMAGES}.gz", "too short"),
    "truncated header": (_put(f"{IMAGES}.gz", GOOD_IMAGES[:9]), f"{IMAGES}.gz", "inside its IDX header"),
    "truncated data": (_put(f"{IMAGES}.gz", GOOD_IMAGES[:-100]), f"{IMAGES}.gz",
                       "truncated: its header says 20x28x28"),
    "extra bytes": (_put(f"{LABELS}.gz", GOOD_LABELS + b"\0\0\0"), f"{LABELS}.gz",
                    "3 unexpected bytes: its header says 20 (20 bytes of data) but 23 follow"),
    "count mismatch": (_put(f"{LABELS}.gz", idx_bytes(np.zeros(19, np.uint8))), f"{LABELS}.gz",
                       "19 labels but"),
    "label out of range": (_put(f"{LABELS}.gz", BAD_LABEL), f"{LABELS}.gz", "label 10 at index 7"),
    "t10k labels missing": (_put(f"{T_IMAGES}.gz", GOOD_IMAGES), f"{T_IMAGES}.gz", f"not {T_LABELS}"),
    "t10k images missing": (_put(T_LABELS, GOOD_LABELS, compress=False), T_LABELS, f"not {T_IMAGES}"),
    "t10k image size differs": (
        lambda d: (_put(f"{T_IMAGES}.gz", idx_bytes(np.zeros((20, 14, 14), np.uint8)))(d),
                   _put(T_LABELS, GOOD_LABELS, compress=False)(d)),
        f"{T_IMAGES}.gz", "14x14 images"),
    "t10k label out of range": (
        lambda d: (_put(f"{T_IMAGES}.gz", GOOD_IMAGES)(d), _put(f"{T_LABELS}.gz", BAD_LABEL)(d)),
        f"{T_LABELS}.gz", "label 10 at index 7"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_files_raise_data_error_naming_the_file(tmp_path, case):
    write_file(tmp_path / f"{IMAGES}.gz", GOOD_IMAGES)
    write_file(tmp_path / f"{LABELS}.gz", GOOD_LABELS)
    load_dataset("mnist", tmp_path)  # the untouched folder is fine
    break_it, filename, words = MALFORMED[case]
    break_it(tmp_path)
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path)
    assert filename in err.value.message and words in err.value.message
    assert err.value.hint


def test_missing_file_hint_lists_expected_names(tmp_path):
    (tmp_path / "readme.txt").write_text("hi")
    with pytest.raises(DataError) as err:
        load_dataset("mnist", tmp_path)
    assert all(n in err.value.hint for n in (IMAGES, LABELS, T_IMAGES, T_LABELS, "readme.txt"))


@pytest.mark.parametrize("path", [None, "does-not-exist"])
def test_missing_folder(tmp_path, path):
    with pytest.raises(DataError) as err:
        load_dataset("mnist", None if path is None else tmp_path / path)
    assert (path or "needs a data path") in err.value.message and IMAGES in err.value.hint


def test_real_shared_mnist(shared_data, to_pixels):
    ds = load_dataset("mnist", shared_data / "mnist")
    sizes = ds.describe()["sizes"]
    assert sum(sizes.values()) == 8000 and sizes["test"] == 1600 and sizes["val"] == 640
    assert ds.num_classes == 10 and ds.input_shape == (1, 28, 28) and not ds.test_is_official
    for split in (ds.train, ds.val, ds.test):
        assert set(np.unique(split.y)) == set(range(10))
        assert split.x.dtype == np.float32 and split.y.dtype == np.int64
    assert abs(float(ds.train.x.mean())) < 1e-4 and abs(float(ds.train.x.std()) - 1) < 1e-3
    # Real digits: mostly black background with bright strokes (MNIST's well-known mean ~0.13).
    assert 0.10 < ds.mean[0] < 0.16
    to_pixels(ds, ds.test.x[:100])
