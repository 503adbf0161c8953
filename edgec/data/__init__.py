"""Datasets with seeded, reproducible, stratified splits, normalised with train-split statistics.

One reader per format (``digits``, ``mnist``, ``cifar10``, ``synthetic``; ``imagefolder`` for your own
images, :mod:`edgec.data.imagefolder`) produces raw uint8 images; :mod:`edgec.data.splits` splits,
normalises and fingerprints them the same way for all.
Nothing is ever downloaded and nothing is unpickled.

Example:
    >>> from edgec.data import load_dataset
    >>> ds = load_dataset("digits", seed=0)
    >>> ds.describe()["sizes"]
    {'train': 1294, 'val': 144, 'test': 359}
"""

from .dataset import Dataset, Split
from .imagefolder import Preprocess, list_images, preprocess_image, write_imagefolder
from .load import DATASETS, load_dataset

__all__ = ["DATASETS", "Dataset", "Preprocess", "Split", "list_images", "load_dataset", "preprocess_image",
           "write_imagefolder"]
