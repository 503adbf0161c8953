"""The student's word vocabulary and the one tokenizer rule that training and serving share.

Tokenizer rule (:data:`TOKENIZER_RULE`, also written into ``vocab.json``): lowercase, then split on
whitespace. SST-2 is already tokenized Penn-Treebank style (``it 's`` , ``does n't``), so serving
text must be tokenized the same way before this rule; the rule itself needs no library.

Ids: ``<pad>`` = 0 (right padding; the model reads each sentence's length from it), ``<unk>`` = 1
(any word not in the vocabulary), ``[MASK]`` = 2 (the augmentation's mask token, see
:mod:`edgec.text.augment`), then words by descending training frequency (ties alphabetical),
those seen at least ``min_freq`` times, at most ``max_size`` of them.

Example:
    >>> v = Vocab.build(["a good film", "a bad film"], max_size=10)
    >>> v.encode(["a great film"])
    (array([[3, 1, 4]]), array([3]))
    >>> Vocab.load(v.save("vocab.json")).words == v.words      # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgec.atomic import atomic_write_json
from edgec.errors import DataError

PAD, UNK, MASK = "<pad>", "<unk>", "[MASK]"
SPECIALS = (PAD, UNK, MASK)
PAD_ID, UNK_ID, MASK_ID = 0, 1, 2
TOKENIZER_RULE = "lowercase, then split on whitespace (input tokenized like SST-2: Penn Treebank style)"
FORMAT = "edgec.vocab/1"


def tokenize(sentence: str) -> list[str]:
    """The tokenizer rule: ``"A Good  film" -> ["a", "good", "film"]``. The mask token keeps its case."""
    return [w if w == MASK else w.lower() for w in sentence.split()]


class Vocab:
    """Word <-> id mapping with ``<pad>``, ``<unk>`` and ``[MASK]`` (ids 0, 1, 2)."""

    def __init__(self, words: list[str]):
        if list(words[:len(SPECIALS)]) != list(SPECIALS):
            raise DataError(f"a vocabulary must start with {list(SPECIALS)}, got {list(words[:3])}",
                            hint="rebuild the vocabulary with edgec (Vocab.build)")
        if len(set(words)) != len(words):
            raise DataError("the vocabulary lists a word twice", hint="rebuild the vocabulary with edgec")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, sentences: Iterable[str], *, max_size: int | None = None, min_freq: int = 1) -> Vocab:
        """Vocabulary of the most frequent words of ``sentences`` (``max_size`` words + 3 specials)."""
        counts = Counter(w for s in sentences for w in tokenize(s) if w not in SPECIALS)
        ranked = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls([*SPECIALS, *ranked[:max_size]])

    def ids(self, sentence: str) -> list[int]:
        """Ids of one sentence's tokens (unknown words -> ``<unk>``)."""
        return [self.index.get(w, UNK_ID) for w in tokenize(sentence)]

    def encode(self, sentences: list[str], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (N, T) int64 right-padded with 0, lengths (N,) int64)``; ``T`` = the longest sentence
        (or ``max_len``: longer sentences are cut). An empty sentence is a :class:`DataError`."""
        rows = []
        for i, s in enumerate(sentences):
            row = self.ids(s)
            if not row:
                raise DataError(f"sentence {i} is empty (no tokens after '{TOKENIZER_RULE}')",
                                hint="remove empty sentences; the model needs at least one token")
            rows.append(row[:max_len] if max_len else row)
        if not rows:
            raise DataError("no sentences to encode", hint="pass at least one sentence")
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), PAD_ID, dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, :len(r)] = r
        return ids, np.asarray([len(r) for r in rows], dtype=np.int64)

    def to_dict(self) -> dict:
        return {"format": FORMAT, "tokenizer": TOKENIZER_RULE, "pad": PAD, "unk": UNK, "mask": MASK,
                "pad_id": PAD_ID, "unk_id": UNK_ID, "mask_id": MASK_ID, "words": self.words}

    def save(self, path: str | Path) -> Path:
        """Write ``vocab.json`` atomically (what a server needs besides the ONNX file)."""
        atomic_write_json(Path(path), self.to_dict())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read vocabulary {p}: {exc}", hint="use the vocab.json written by edgec build") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("words"), list):
            raise DataError(f"{p} is not an edgec vocabulary ({FORMAT})", hint="use the vocab.json written by edgec build")
        return cls(data["words"])
