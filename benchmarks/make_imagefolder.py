"""Make an ImageFolder of PNG files from MNIST (or scikit-learn's digits), for `data.name: imagefolder`.

    OUT/train/<digit>/<i>.png      MNIST's training images (at most --limit, stratified, seeded)
    OUT/test/<digit>/<i>.png       MNIST's own test images (t10k files) when the folder has them, else a
                                   seeded stratified share (--test-fraction) held out of the training files

Images are resized to --size x --size (bilinear) and saved grayscale, or RGB with --rgb (the three
channels equal, as a colour photo pipeline would read them). Tests, the pruning benchmark and the
`imagefolder-resnet` recipe use it:

    python benchmarks/make_imagefolder.py --out /tmp/mnist-if --size 64 --limit 6000
    edgec build imagefolder-resnet --data /tmp/mnist-if

Usage: python benchmarks/make_imagefolder.py --out DIR [--source mnist|digits] [--mnist ../shared/data/mnist]
       [--size N] [--limit N] [--test-limit N] [--test-fraction F] [--rgb] [--seed S] [--force]

From Python: ``make_imagefolder(out, size=32, limit=1000)`` returns the counts it wrote.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgec.data.digits import read_digits  # noqa: E402
from edgec.data.imagefolder import write_imagefolder  # noqa: E402
from edgec.data.mnist import read_mnist  # noqa: E402
from edgec.data.splits import stratified_pick  # noqa: E402
from edgec.errors import EdgecError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
MNIST_TEST_SHARE = 10_000 / 70_000  # the official split's share, used when the t10k files are absent


def _resize(x: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 (N, 1, H, W) -> (N, 1, size, size), Pillow bilinear (antialiased when shrinking)."""
    if size is None or x.shape[-2:] == (size, size):
        return x
    from PIL import Image

    out = np.empty((len(x), 1, size, size), np.uint8)
    for i, img in enumerate(x[:, 0]):
        out[i, 0] = np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))
    return out


def _take(y: np.ndarray, limit: int | None, rng: np.random.Generator) -> np.ndarray:
    if limit is None or limit >= len(y):
        return np.arange(len(y))
    picked, _ = stratified_pick(y, limit, rng)
    return np.sort(picked)


def make_imagefolder(out: str | Path, *, source: str = "mnist", mnist: str | Path = SHARED_MNIST,
                     size: int | None = None, limit: int | None = None, test_limit: int | None = None,
                     test_fraction: float = MNIST_TEST_SHARE, rgb: bool = False, seed: int = 0,
                     force: bool = False) -> dict:
    """Write ``out/train/<digit>/*.png`` and ``out/test/<digit>/*.png``; returns what it wrote.

    ``source``: "mnist" (IDX files in ``mnist``, read with :func:`edgec.data.mnist.read_mnist`) or
    "digits" (scikit-learn's 8x8 digits, always available; pixels 0..16 scaled to 0..255).
    ``limit``/``test_limit``: at most this many train/test images (stratified by class, seeded)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} is not empty (pass force=True / --force to replace it)")
        shutil.rmtree(out)
    raw = read_mnist(mnist) if source == "mnist" else read_digits()
    x = raw.x if raw.scale == 1 / 255 else np.clip(np.round(raw.x.astype(np.float64) * raw.scale * 255), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    if raw.test_x is not None:
        train_x, train_y, test_x, test_y = x, raw.y, raw.test_x, raw.test_y
        official = True
    else:
        test_idx, train_idx = stratified_pick(raw.y, int(round(test_fraction * len(raw.y))), rng)
        train_x, train_y, test_x, test_y = x[train_idx], raw.y[train_idx], x[test_idx], raw.y[test_idx]
        official = False
    if test_limit is None and limit is not None:  # keep MNIST's train:test proportion
        test_limit = max(raw.num_classes, int(round(limit * len(test_y) / len(train_y))))
    keep_train, keep_test = _take(train_y, limit, rng), _take(test_y, test_limit, rng)
    counts = {}
    for split, xs, ys in (("train", train_x[keep_train], train_y[keep_train]),
                          ("test", test_x[keep_test], test_y[keep_test])):
        xs = _resize(xs, size)
        if rgb:
            xs = np.repeat(xs, 3, axis=1)
        write_imagefolder(xs, ys, out / split, class_names=raw.labels)
        counts[split] = int(len(ys))
    return {"out": str(out), "source": raw.source, "official_test": official, "size": int(size or x.shape[-1]),
            "channels": 3 if rgb else 1, "classes": list(raw.labels), "images": counts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder to create (must be empty or absent, or --force)")
    ap.add_argument("--source", choices=("mnist", "digits"), default="mnist")
    ap.add_argument("--mnist", default=str(SHARED_MNIST), help="folder of MNIST IDX files (default: ../shared/data/mnist)")
    ap.add_argument("--size", type=int, default=None, help="resize to SIZE x SIZE (default: keep 28x28 / 8x8)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many training images (stratified)")
    ap.add_argument("--test-limit", type=int, default=None,
                    help="at most this many test images (default: MNIST's train:test proportion of --limit)")
    ap.add_argument("--test-fraction", type=float, default=MNIST_TEST_SHARE,
                    help="share held out as test when there are no t10k files (default 1/7, MNIST's own)")
    ap.add_argument("--rgb", action="store_true", help="save 3-channel RGB PNGs (gray in all three)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        info = make_imagefolder(args.out, source=args.source, mnist=args.mnist, size=args.size, limit=args.limit,
                                test_limit=args.test_limit, test_fraction=args.test_fraction, rgb=args.rgb,
                                seed=args.seed, force=args.force)
    except (EdgecError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
