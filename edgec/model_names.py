"""Model names as recipes write them, checked without importing torch (``edgec.recipe`` stays light).

``teacher_cnn`` (a built-in family), ``torchvision:NAME``, ``timm:NAME``, ``python:package.module:function``.
Building them is :mod:`edgec.models.sources`.

Example:
    >>> kind("timm:resnet18"), check_name("python:pkg.models:build")
    ('timm', 'python:pkg.models:build')
"""

from __future__ import annotations

import re
from pathlib import Path

from edgec.registry import did_you_mean

KINDS = ("torchvision", "timm", "python")
PYTHON_NAME = re.compile(r"^python:([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*)$")
_LIBRARY_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_VISION_HINT = ('install the vision extra: pip install "edgec[vision]", with a torchvision built for the '
                "installed torch (the PyTorch CPU or CUDA index, or NVIDIA's Jetson wheels)")
SEARCH_DIRS: list[str] = []
_CHECKED: set[str] = set()  # external specs whose output shape was already checked in this process


def kind(name: str) -> str:
    """``builtin``, ``torchvision``, ``timm`` or ``python`` for a model name (no import, no check).

    Example:
        >>> kind("fitnet"), kind("timm:resnet18")
        ('builtin', 'timm')
    """
    prefix, sep, _ = name.partition(":")
    return prefix if sep and prefix in KINDS else "builtin"


def is_external(name: str) -> bool:
    """True for ``torchvision:``, ``timm:`` and ``python:`` names (not edgec's own families)."""
    return kind(name) != "builtin"


def check_name(name: str) -> str:
    """Check a model name's *form* without importing anything; raise ValueError saying what is wrong.

    Built-in names are checked against the registry when the model is built (their params too).

    Example:
        >>> check_name("python:pkg.models:build")
        'python:pkg.models:build'
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a model name is required (a built-in family, torchvision:NAME, timm:NAME "
                         "or python:package.module:function)")
    prefix, sep, rest = name.partition(":")
    if not sep:
        return name
    if prefix not in KINDS:
        raise ValueError(f"unknown model source {prefix!r} in {name!r}: {did_you_mean(prefix, KINDS)}"
                         f"use torchvision:NAME, timm:NAME or python:package.module:function")
    if prefix == "python":
        if not PYTHON_NAME.match(name):
            raise ValueError(f"{name!r}: write python:package.module:function (dotted module path, a colon, "
                             "then the factory's name), e.g. python:my_models.nets:build")
    elif not _LIBRARY_NAME.match(rest):
        raise ValueError(f"{name!r}: write {prefix}:MODEL_NAME, e.g. {prefix}:resnet18")
    return name


def add_search_dir(folder: str | Path) -> None:
    """Also look for ``python:`` modules in ``folder`` (first), e.g. the recipe file's folder."""
    path = str(Path(folder).resolve())
    if path not in SEARCH_DIRS:
        SEARCH_DIRS.insert(0, path)
