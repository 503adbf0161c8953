"""Datasets with seeded, reproducible, stratified splits, normalised with train-split statistics.

One reader per format (``digits``, ``mnist``, ``cifar10``, ``synthetic``) produces raw uint8
images; :mod:`edgec.data.splits` splits, normalises and fingerprints them the same way for all.
Nothing is ever downloaded and nothing is unpickled.

Example:
    >>> from edgec.data import load_dataset
    >>> ds = load_dataset("digits", seed=0)
    >>> ds.describe()["sizes"]
    {'train': 1294, 'val': 144, 'test': 359}
"""

from .dataset import Dataset, Split
from .load import DATASETS, load_dataset

__all__ = ["DATASETS", "Dataset", "Split", "load_dataset"]
