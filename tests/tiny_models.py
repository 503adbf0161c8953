"""Tiny data and models shared by unit tests (generated here; no files, no downloads)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
from torch import nn

K = 3  # classes of blobs()


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """K separable Gaussian blobs in 16-d, as (n, 1, 4, 4) float32 images + int64 labels."""
    centers = np.random.default_rng(1234).normal(0, 1.5, (K, 16))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    x = centers[y] + rng.normal(0, 1, (n, 16))
    return x.reshape(n, 1, 4, 4).astype(np.float32), y.astype(np.int64)


def small_cnn() -> nn.Module:
    """(N, 1, 8, 8) -> (N, 10); conv-BN pairs like the registry's families; seeded weights."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 8, 3, padding=1, bias=False)), ("bn1", nn.BatchNorm2d(8)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)), ("bn2", nn.BatchNorm2d(16)),
        ("relu2", nn.ReLU()), ("conv3", nn.Conv2d(16, 16, 3, padding=1)), ("bn3", nn.BatchNorm2d(16)),
        ("relu3", nn.ReLU()), ("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
        ("fc", nn.Linear(16, 10))]))
