"""Image folders (``data.name: imagefolder``): layouts, preprocessing, deploy.json's "preprocess", bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgec.data import Preprocess, list_images, load_dataset, preprocess_image, write_imagefolder
from edgec.data.imagefolder import decode_image
from edgec.data.imagefolder_load import load_imagefolder, scan
from edgec.data.splits import split_indices
from edgec.errors import DataError, RecipeError
from edgec.recipe import parse_recipe


def _images(n: int = 60, classes: int = 3, size: tuple[int, int] = (8, 8), channels: int = 1, seed: int = 0):
    """Class-dependent random images: class k is brighter in its own band of rows."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 120, (n, channels, *size), dtype=np.uint8)
    for i, k in enumerate(y):
        band = slice(k * size[0] // classes, (k + 1) * size[0] // classes)
        x[i, :, band] += 120
    return x, y


def _flat(tmp_path: Path, **kw) -> Path:
    x, y = _images(**kw)
    write_imagefolder(x, y, tmp_path / "imgs", class_names=["cat", "dog", "eel", "fox"][: int(y.max()) + 1])
    return tmp_path / "imgs"


def _split_layout(tmp_path: Path, test_dir: str = "test", val_dir: str | None = None) -> Path:
    root = tmp_path / "split"
    names = ["cat", "dog", "eel"]
    for sub, seed, n in (("train", 0, 60), (test_dir, 1, 15), (val_dir, 2, 9)):
        if sub:
            x, y = _images(n=n, seed=seed)
            write_imagefolder(x, y, root / sub, class_names=names)
    return root


# --- the shared API: Preprocess, list_images, preprocess_image, write_imagefolder ---

def test_preprocess_round_trips_and_reads_deploy_json(tmp_path):
    pre = Preprocess(image_size=224, resize=256, channels=3, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    d = pre.to_dict()
    assert d["image_size"] == [224, 224] and d["crop"] == "center" and d["layout"] == "NCHW"
    assert Preprocess.from_dict(json.loads(json.dumps(d))) == pre
    (tmp_path / "deploy.json").write_text(json.dumps({"preprocess": d}))
    assert Preprocess.from_deploy(tmp_path) == pre == Preprocess.from_deploy(tmp_path / "deploy.json")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "deploy.json").write_text(json.dumps({"preprocessing": {}}))
    with pytest.raises(DataError, match="no \"preprocess\" section"):
        Preprocess.from_deploy(tmp_path / "old")
    with pytest.raises(RecipeError, match="one value per channel"):
        Preprocess(image_size=8, channels=3, mean=[0.5], std=[0.5])


def test_list_images_is_recursive_sorted_case_insensitive_and_skips_hidden(tmp_path):
    for name in ("b/z.PNG", "a/y.jpeg", "a/deep/x.JpG", "c.webp", "notes.txt", ".hidden/h.png", "a/._mac.jpg"):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == [
        "a/deep/x.JpG", "a/y.jpeg", "b/z.PNG", "c.webp"]


def test_write_imagefolder_then_preprocess_image_gives_back_the_pixels(tmp_path):
    x, y = _images(n=6, channels=3, size=(5, 7))
    paths = write_imagefolder(x, y, tmp_path, class_names=["a", "b", "c"])
    assert [p.parent.name for p in paths] == ["a", "b", "c", "a", "b", "c"]
    pre = Preprocess(image_size=(5, 7), channels=3, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3])
    out = preprocess_image(paths[4], pre)
    want = (x[4] / 255 - np.array(pre.mean)[:, None, None]) / np.array(pre.std)[:, None, None]
    assert out.dtype == np.float32 and out.shape == (3, 5, 7)
    np.testing.assert_allclose(out, want, atol=1e-6)
    # floats in [0, 1] are scaled to 0..255; (N, H, W) is grayscale
    p = write_imagefolder(np.full((1, 4, 4), 1.0), np.array([0]), tmp_path / "f")[0]
    assert Image.open(p).mode == "L" and np.asarray(Image.open(p)).min() == 255


def test_resize_shorter_side_then_centre_crop(tmp_path):
    img = np.zeros((10, 30, 3), np.uint8)  # H 10, W 30: red | green | blue thirds
    img[:, :10, 0] = img[:, 10:20, 1] = img[:, 20:, 2] = 255
    Image.fromarray(img).save(tmp_path / "wide.png")
    pre = Preprocess(image_size=10, resize=10, channels=3, mean=[0] * 3, std=[1] * 3)
    assert (decode_image(tmp_path / "wide.png", pre) == np.array([0, 255, 0])[:, None, None]).all()
    # resize 20: the shorter side to 20 (60 x 20), the centre 10 x 10 crop stays in the green third
    pre20 = pre.model_copy(update={"resize": 20})
    assert (decode_image(tmp_path / "wide.png", pre20)[1] == 255).all()
    # resize None: straight to image_size, aspect ratio not kept -> all three colours remain
    squashed = decode_image(tmp_path / "wide.png", pre.model_copy(update={"resize": None}))
    assert squashed.shape == (3, 10, 10) and squashed[0, :, 0].min() > 200 and squashed[2, :, -1].min() > 200
    gray = decode_image(tmp_path / "wide.png", Preprocess(image_size=10, resize=10, channels=1, mean=[0], std=[1]))
    assert gray.shape == (1, 10, 10) and 140 < gray.mean() < 160  # ITU-R 601 luma of pure green


def test_exif_rotation_and_16_bit_grayscale(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (12, 6), (200, 10, 10)).save(tmp_path / "phone.jpg", exif=exif)
    assert decode_image(tmp_path / "phone.jpg", Preprocess(image_size=(12, 6), channels=3, mean=[0] * 3,
                                                           std=[1] * 3)).shape == (3, 12, 6)
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(tmp_path / "deep.png")
    assert decode_image(tmp_path / "deep.png", Preprocess(image_size=4, channels=1, mean=[0], std=[1])).min() == 255


# --- reading a folder into a Dataset ---

def test_flat_folder_seeded_stratified_splits_and_train_only_statistics(tmp_path, to_pixels):
    root = _flat(tmp_path)
    ds = load_dataset("ImageFolder", root, seed=0)
    assert ds.labels == ["cat", "dog", "eel"] and ds.num_classes == 3 and ds.input_shape == (1, 8, 8)
    assert ds.describe()["sizes"] == {"train": 43, "val": 5, "test": 12} and not ds.test_is_official
    assert all(np.bincount(s.y, minlength=3).min() >= 1 for s in (ds.train, ds.val, ds.test))
    train_pixels = to_pixels(ds, ds.train.x)  # exact: normalised with the recorded (train) statistics
    assert ds.mean[0] == pytest.approx(train_pixels.mean() / 255)
    assert ds.preprocess == {"image_size": [8, 8], "resize": 8, "crop": "center", "channels": 1, "layout": "NCHW",
                             "mean": list(ds.mean), "std": list(ds.std)}
    assert load_dataset("imagefolder", root, seed=0).fingerprint == ds.fingerprint
    other = load_dataset("imagefolder", root, seed=1)
    assert other.fingerprint != ds.fingerprint and not np.array_equal(other.test.y, ds.test.y)
    # the test split read back from its files with the recorded preprocessing is the same input, bit for bit
    labels, found = scan(root)
    files, y = found["all"]
    _, _, test_idx = split_indices(y, val_fraction=0.1, test_fraction=0.2, seed=0, limit=None, official_test=False)
    pre = Preprocess.from_dict(ds.preprocess)
    again = np.stack([preprocess_image(files[i], pre) for i in test_idx])
    assert np.array_equal(again, ds.test.x) and np.array_equal(y[test_idx], ds.test.y)


def test_limit_keeps_test_split_and_image_size_resizes(tmp_path):
    root = _flat(tmp_path, n=90)
    full = load_dataset("imagefolder", root, seed=0)
    small = load_dataset("imagefolder", root, seed=0, limit=20, imagefolder={"image_size": (6, 4)})
    assert len(small.train) + len(small.val) == 20 and np.array_equal(small.test.y, full.test.y)
    assert small.train.x.shape[1:] == (1, 6, 4) and small.preprocess["resize"] == 4


def test_split_folders_are_the_splits(tmp_path):
    root = _split_layout(tmp_path, test_dir="test", val_dir="valid")
    ds = load_dataset("imagefolder", root, seed=0)
    assert ds.describe()["sizes"] == {"train": 60, "val": 9, "test": 15} and ds.test_is_official
    assert ds.split_params["splits_on_disk"] == ["test", "train", "val"]
    # train/ + test/ only: val is a seeded share of train/
    root2 = _split_layout(tmp_path / "two")
    ds2 = load_dataset("imagefolder", root2, seed=0, limit=30)
    assert ds2.describe()["sizes"] == {"train": 27, "val": 3, "test": 15}
    files = [f for c in ds2.labels for f in list_images(root2 / "test" / c)]
    pre = Preprocess.from_dict(ds2.preprocess)
    assert np.array_equal(np.stack([preprocess_image(f, pre) for f in files]), ds2.test.x)


def test_channels_inferred_and_forced(tmp_path):
    root = _flat(tmp_path)
    assert load_dataset("imagefolder", root).input_shape[0] == 1
    assert load_dataset("imagefolder", root, imagefolder={"channels": 3}).input_shape == (3, 8, 8)
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "cat" / "colour.png")
    ds = load_dataset("imagefolder", root)
    assert ds.input_shape == (3, 8, 8) and ds.preprocess["channels"] == 3 and len(ds.mean) == 3


# --- bad inputs: each a DataError that says what and where ---

def _error(path, **kw) -> DataError:
    with pytest.raises(DataError) as err:
        load_imagefolder(path, **kw)
    return err.value


def test_missing_empty_and_too_few_classes(tmp_path):
    assert "not found" in _error(tmp_path / "nope").message
    assert "data.path" in _error(None).message
    (tmp_path / "empty").mkdir()
    assert "empty" in _error(tmp_path / "empty").message
    write_imagefolder(np.zeros((3, 4, 4), np.uint8), np.zeros(3), tmp_path / "one", class_names=["only"])
    err = _error(tmp_path / "one")
    assert "at least 2" in err.message and "only" in err.message


def test_class_without_images_and_stray_images(tmp_path):
    root = _flat(tmp_path)
    (root / "gnu").mkdir()
    (root / "gnu" / "readme.txt").write_text("no images here")
    err = _error(root)
    assert str(root / "gnu") in err.message and "no images" in err.message
    (root / "gnu" / "readme.txt").unlink()
    (root / "gnu").rmdir()
    Image.new("L", (8, 8)).save(root / "loose.png")
    assert "loose.png" in _error(root).message


def test_corrupt_image_is_named(tmp_path):
    root = _flat(tmp_path)
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    err = _error(root, image_size=8, channels=1)  # found while decoding
    assert "broken.jpg" in err.message and "corrupt" in err.hint
    assert "broken.jpg" in _error(root).message  # found while reading headers


def test_mixed_sizes_name_the_sizes_and_suggest_image_size(tmp_path):
    root = _flat(tmp_path)
    Image.new("L", (20, 10)).save(root / "eel" / "big.png")
    err = _error(root)
    assert "8x8 (60 images" in err.message and "20x10 (1 images" in err.message and "big.png" in err.message
    assert "image_size" in err.hint
    assert load_imagefolder(root, image_size=8).input_shape == (1, 8, 8)


def test_inconsistent_split_layouts(tmp_path):
    root = _split_layout(tmp_path)
    (root / "extra").mkdir()
    assert "mixes split folders" in _error(root).message
    (root / "extra").rmdir()
    write_imagefolder(np.zeros((2, 8, 8), np.uint8), np.array([0, 0]), root / "test", class_names=["yak"])
    err = _error(root)
    assert "yak" in err.message and "train/ does not" in err.message
    only_test = tmp_path / "only_test"
    write_imagefolder(*_images(n=6), only_test / "test")
    assert "no train/" in _error(only_test).message
    both = _split_layout(tmp_path / "b", val_dir="val")
    (both / "validation").mkdir()
    assert "more than one validation folder" in _error(both).message


def test_memory_estimate_refuses_before_decoding(tmp_path):
    root = _flat(tmp_path)
    err = _error(root, image_size=224, max_bytes=10 * 2**20)
    assert "60 images of 1x224x224" in err.message and "MiB" in err.message
    assert "image_size" in err.hint and "limit" in err.hint


def test_recipe_data_section(tmp_path):
    r = parse_recipe({"edgec": 1, "data": {"name": "imagefolder", "path": "imgs", "image_size": [32, 48],
                                           "channels": 3}})
    assert r.data.imagefolder() == {"image_size": (32, 48), "resize": None, "channels": 3}
    assert r.section("data")["image_size"] == [32, 48]
    # other recipes' data section (part of the teacher's stage key) is unchanged
    assert "image_size" not in parse_recipe({"edgec": 1}).section("data")
    with pytest.raises(RecipeError, match="only for data.name: imagefolder"):
        parse_recipe({"edgec": 1, "data": {"name": "digits", "image_size": 8}})
    with pytest.raises(RecipeError, match="resize needs image_size"):
        parse_recipe({"edgec": 1, "data": {"name": "imagefolder", "resize": 8}})


def test_builtin_image_sets_record_their_preprocess():
    ds = load_dataset("digits", limit=100)
    assert ds.preprocess["image_size"] == [8, 8] and ds.preprocess["channels"] == 1
    assert ds.preprocess["mean"] == list(ds.mean)
    assert load_dataset("synthetic", synthetic={"n": 50, "shape": [2, 4, 4]}).preprocess is None


def test_make_imagefolder_benchmark_script_writes_train_and_test_folders(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_imagefolder", Path(__file__).resolve().parents[2] / "benchmarks" / "make_imagefolder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    info = module.make_imagefolder(tmp_path / "digits", source="digits", size=12, limit=100, rgb=True)
    assert info["images"] == {"train": 100, "test": 17} and not info["official_test"]
    ds = load_dataset("imagefolder", tmp_path / "digits", seed=0)
    assert ds.test_is_official and len(ds.test) == 17 and len(ds.train) + len(ds.val) == 100
    assert ds.input_shape == (3, 12, 12) and ds.labels == [str(i) for i in range(10)]
    with pytest.raises(FileExistsError):
        module.make_imagefolder(tmp_path / "digits", source="digits", limit=20)
