"""SST-2 style text classification data: ``sentence<TAB>label`` TSV files with a header line.

A data folder holds ``train.tsv`` and ``dev.tsv`` (and optionally ``test.tsv``):

- with ``test.tsv``: test = ``test.tsv``, val = ``dev.tsv``;
- without it (the usual SST-2 release, whose test labels are hidden): test = ``dev.tsv`` and the
  validation split is a seeded random ``val_fraction`` of ``train.tsv``.

Every problem names the file and line: a missing file, a header without the ``sentence`` or
``label`` column, a row with too few fields, an empty sentence, a label other than 0/1.

Example:
    >>> ds = load_sst2("../shared/data/sst2", val_fraction=0.05, seed=0)   # doctest: +SKIP
    >>> ds.train.sentences[0], int(ds.train.y[0])                           # doctest: +SKIP
    ('when are bears bears and', 1)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgec.errors import DataError
from edgec.text.vocab import TOKENIZER_RULE

LABELS = ["negative", "positive"]


@dataclass(frozen=True, eq=False)
class TextSplit:
    """One split: ``sentences`` (N raw strings) and ``y`` (N,) int64 labels."""

    sentences: list[str]
    y: np.ndarray

    def __post_init__(self) -> None:
        if self.y.ndim != 1 or self.y.dtype != np.int64 or len(self.y) != len(self.sentences):
            raise ValueError(f"TextSplit needs ({len(self.sentences)},) int64 labels, got {self.y.shape} {self.y.dtype}")

    def __len__(self) -> int:
        return len(self.sentences)

    def take(self, idx: np.ndarray) -> TextSplit:
        return TextSplit([self.sentences[i] for i in idx], self.y[idx])


@dataclass
class TextDataset:
    """Train/val/test text splits with what a deployer needs (labels, tokenizer rule, source).

    Mirrors :class:`edgec.data.Dataset` where the report and deploy code read it
    (``describe()``, ``normalization()``, ``labels``, ``num_classes``, ``fingerprint``).
    """

    name: str
    train: TextSplit
    val: TextSplit
    test: TextSplit
    source: str
    test_source: str
    fingerprint: str
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    split_params: dict[str, Any] = field(default_factory=dict)
    test_is_official: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def normalization(self) -> dict[str, Any]:
        """How raw text becomes the student's input (also written to ``deploy.json``)."""
        return {"layout": "token_ids", "tokenizer": TOKENIZER_RULE, "vocabulary": "vocab.json",
                "padding": "right-pad with the <pad> id (0); the model reads lengths from the padding"}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "test_source": self.test_source,
                "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
                "num_classes": self.num_classes, "labels": list(self.labels),
                "normalization": self.normalization(), "fingerprint": self.fingerprint,
                "test_is_official": self.test_is_official, "split": dict(self.split_params)}


def read_tsv(path: str | Path) -> TextSplit:
    """Read one ``sentence<TAB>label`` file (header line first; columns found by name).

    Example:
        >>> split = read_tsv("../shared/data/sst2/dev.tsv")          # doctest: +SKIP
        >>> len(split), split.y[:3]                                   # doctest: +SKIP
        (6735, array([1, 1, 0]))
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"text data file not found: {p}",
                        hint="point --data at a folder with train.tsv and dev.tsv (sentence<TAB>label)")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {p}: {exc}", hint="the file must be UTF-8 text") from None
    if not lines:
        raise DataError(f"{p} is empty", hint="expected a header line 'sentence<TAB>label' and one row per example")
    header = [h.strip().lower() for h in lines[0].split("\t")]
    missing = [c for c in ("sentence", "label") if c not in header]
    if missing:
        raise DataError(f"{p}:1: header {lines[0]!r} has no {' or '.join(repr(m) for m in missing)} column",
                        hint="the first line must name the columns, e.g. 'sentence<TAB>label'")
    si, li = header.index("sentence"), header.index("label")
    sentences, labels = [], []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue  # a trailing blank line is not an example
        cols = line.split("\t")
        if len(cols) <= max(si, li):
            raise DataError(f"{p}:{n}: expected {len(header)} tab-separated fields, got {len(cols)}",
                            hint="each row is 'sentence<TAB>label'; tabs inside sentences are not allowed")
        sentence, label = cols[si].strip(), cols[li].strip()
        if not sentence:
            raise DataError(f"{p}:{n}: empty sentence", hint="remove the row or give it text")
        if label not in ("0", "1"):
            raise DataError(f"{p}:{n}: label {label!r} is not 0 or 1",
                            hint="SST-2 labels are 0 (negative) and 1 (positive)")
        sentences.append(sentence)
        labels.append(int(label))
    if not sentences:
        raise DataError(f"{p} has a header but no examples", hint="add rows 'sentence<TAB>label'")
    return TextSplit(sentences, np.asarray(labels, dtype=np.int64))


def _fingerprint(files: list[Path], params: dict[str, Any]) -> str:
    h = hashlib.sha256(repr(sorted(params.items())).encode())
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def load_sst2(path: str | Path | None, *, val_fraction: float = 0.05, seed: int = 0, limit: int | None = None,
              test_limit: int | None = None) -> TextDataset:
    """Load an SST-2 folder (see the module docstring for which file is which split).

    ``limit`` keeps a seeded random subset of at most that many training examples (train + val
    when val is split off train); ``test_limit`` the first that many test examples (quick runs).
    """
    if path is None:
        raise DataError("data.path is not set for sst2", hint="pass --data path/to/sst2 (a folder with train.tsv, dev.tsv)")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"SST-2 data folder not found: {folder}", hint="pass --data path/to/sst2 (train.tsv, dev.tsv)")
    train = read_tsv(folder / "train.tsv")
    has_test = (folder / "test.tsv").is_file()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    if has_test:
        test, test_name = read_tsv(folder / "test.tsv"), "test.tsv"
        val = read_tsv(folder / "dev.tsv")
        train = train.take(np.sort(order[:limit]) if limit else np.arange(len(train)))
    else:
        test, test_name = read_tsv(folder / "dev.tsv"), "dev.tsv (no test.tsv: dev is the test split)"
        order = order[:limit] if limit else order
        n_val = max(1, int(round(len(order) * val_fraction)))
        if len(order) - n_val < 2:
            raise DataError(f"only {len(order)} training examples: too few to split off validation",
                            hint="raise data.limit or use a bigger train.tsv")
        val, train = train.take(np.sort(order[:n_val])), train.take(np.sort(order[n_val:]))
    if test_limit:
        test = test.take(np.arange(min(test_limit, len(test))))
    params = {"seed": seed, "val_fraction": val_fraction, "limit": limit, "test_limit": test_limit}
    files = [folder / f for f in ("train.tsv", "dev.tsv", "test.tsv") if (folder / f).is_file()]
    return TextDataset("sst2", train, val, test, source=str(folder), test_source=test_name,
                       fingerprint=_fingerprint(files, params), split_params=params, test_is_official=has_test)
