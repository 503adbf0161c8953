"""Task-agnostic data augmentation for distillation, exactly as Tang et al. (arXiv 1903.12136, sec. 3.1).

For a training sentence ``w_1 .. w_n`` (tokens of :func:`edgec.text.vocab.tokenize`) one synthetic
example is made by these rules, in this order:

1. For each word draw ``X_i ~ Uniform[0, 1]`` once:
   - ``X_i < p_mask``: **masking**, the word becomes ``[MASK]`` (the student has its own vocabulary
     entry for it; the teacher sees its tokenizer's mask token);
   - ``p_mask <= X_i < p_mask + p_pos``: **POS-guided replacement**, the word becomes a word with
     the same part-of-speech tag, drawn from the training set's unigram distribution of that tag
     (counts of (word, tag) pairs in the tagged training split, renormalised within the tag);
   - otherwise the word stays. One draw per word makes the two rules mutually exclusive.
2. With probability ``p_ng``: **n-gram sampling**, ``n ~ Uniform{1..ngram_max}`` (capped at the
   sentence length) and a uniformly placed window of ``n`` words is kept, the rest discarded.

The rules run ``n_iter`` times per sentence; duplicates among the copies, and copies equal to the
original sentence (which is in the transfer set already), are discarded. So each sentence yields
*up to* ``n_iter`` unique synthetic examples, as in the paper ("any duplicates discarded").

POS tags come from :class:`PosTagger`: the Brill-style tagger of the Pattern library (lexicon +
morphological and contextual rules, trained on the Penn Treebank) as vendored by the ``textblob``
package, which ships its data inside the wheel, so it works offline. Tags are Penn Treebank tags
(``NN``, ``JJ``, ``VBZ``...). The tagger is a stand-in for whatever tagger the paper used (it does
not say); both produce Penn Treebank tags.

Example:
    >>> aug = Augmenter.fit(["a good film", "a bad movie"], AugmentConfig(n_iter=3))
    >>> aug.augment(["a good film"], seed=0)                  # doctest: +SKIP
    [(0, 'a bad film'), (0, 'a good [MASK]'), (0, 'good film')]
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
import numpy as np

from edgec.configs import AugmentConfig  # the recipe's text.augment section
from edgec.errors import MissingDependencyError
from edgec.text.vocab import MASK, tokenize


class PosTagger:
    """Penn Treebank POS tags for already tokenized words (Pattern's Brill tagger, via textblob).

    Example:
        >>> PosTagger().tag(["a", "good", "film"])           # doctest: +SKIP
        ['DT', 'JJ', 'NN']
    """

    def __init__(self) -> None:
        try:
            from textblob.en import parser
        except ImportError:
            raise MissingDependencyError("textblob", "nlp", "POS-guided word replacement (text augmentation)") from None
        self._parser = parser

    def tag(self, words: Sequence[str]) -> list[str]:
        if not words:
            return []
        return [t for _, t in self._parser.find_tags(list(words))]


class Augmenter:
    """Applies the rules of the module docstring; :meth:`fit` learns the per-tag word distributions."""

    def __init__(self, config: AugmentConfig, by_tag: dict[str, tuple[list[str], np.ndarray]], tagger=None):
        self.config = config
        self.by_tag = by_tag  # tag -> (words, cumulative probabilities)
        self.tagger = tagger

    @classmethod
    def fit(cls, sentences: Sequence[str], config: AugmentConfig, tagger=None) -> Augmenter:
        """Tag the training sentences and count (word, tag) pairs: the replacement distributions."""
        tagger = tagger or PosTagger()
        counts: dict[str, Counter] = defaultdict(Counter)
        for s in sentences:
            words = tokenize(s)
            for w, t in zip(words, tagger.tag(words)):
                counts[t][w] += 1
        by_tag = {}
        for t, c in counts.items():
            words = sorted(c)  # sorted: the same data gives the same distribution in any process
            freq = np.array([c[w] for w in words], dtype=np.float64)
            by_tag[t] = (words, np.cumsum(freq) / freq.sum())
        return cls(config, by_tag, tagger)

    def replace(self, tag: str, rng: np.random.Generator) -> str | None:
        """A word drawn from the training distribution of ``tag`` (None for a tag never seen)."""
        found = self.by_tag.get(tag)
        if found is None:
            return None
        words, cdf = found
        return words[min(int(np.searchsorted(cdf, rng.random(), side="right")), len(words) - 1)]

    def synthesize(self, words: list[str], tags: list[str], rng: np.random.Generator) -> list[str]:
        """One synthetic example from one tagged sentence (rules 1 and 2)."""
        c = self.config
        out = []
        for w, t in zip(words, tags):
            x = rng.random()
            if x < c.p_mask:
                out.append(MASK)
            elif x < c.p_mask + c.p_pos:
                out.append(self.replace(t, rng) or w)
            else:
                out.append(w)
        if out and rng.random() < c.p_ng:
            n = min(int(rng.integers(1, c.ngram_max + 1)), len(out))
            start = int(rng.integers(0, len(out) - n + 1))
            out = out[start:start + n]
        return out

    def augment(self, sentences: Sequence[str], seed: int = 0) -> list[tuple[int, str]]:
        """``[(index of the source sentence, synthetic sentence), ...]``: up to ``n_iter`` unique
        copies per sentence, in order; the same ``seed`` gives the same list."""
        if self.tagger is None:
            self.tagger = PosTagger()
        rng = np.random.default_rng(seed)
        out = []
        for i, s in enumerate(sentences):
            words = tokenize(s)
            if not words:
                continue
            tags = self.tagger.tag(words)
            seen = {" ".join(words)}
            for _ in range(self.config.n_iter):
                text = " ".join(self.synthesize(words, tags, rng))
                if text not in seen:
                    seen.add(text)
                    out.append((i, text))
        return out
