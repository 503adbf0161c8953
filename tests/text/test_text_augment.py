"""Tang et al.'s augmentation rules, each on hand-made sentences with fixed seeds."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.errors import RecipeError
from edgec.text.augment import AugmentConfig, Augmenter
from edgec.text.vocab import MASK

TRAIN = ["a good film", "a bad movie", "the great actor", "an awful plot", "the film is good",
         "a movie was bad", "the actors are great"]


class FixedTagger:
    """Stand-in tagger for unit tests of our rules: a word -> tag table (unknown words: NN)."""

    TAGS = {"a": "DT", "an": "DT", "the": "DT", "good": "JJ", "bad": "JJ", "great": "JJ", "awful": "JJ",
            "film": "NN", "movie": "NN", "actor": "NN", "plot": "NN", "actors": "NNS", "is": "VBZ",
            "was": "VBD", "are": "VBP"}

    def tag(self, words):
        return [self.TAGS.get(w, "NN") for w in words]


def make(**kw) -> Augmenter:
    return Augmenter.fit(TRAIN, AugmentConfig(**kw), tagger=FixedTagger())


def test_masking_rate_matches_p_mask():
    aug = make(p_mask=0.3, p_pos=0.0, p_ng=0.0)
    words = ["w%d" % i for i in range(20000)]
    out = aug.synthesize(words, ["NN"] * len(words), np.random.default_rng(0))
    rate = np.mean([w == MASK for w in out])
    assert abs(rate - 0.3) < 0.015
    assert all(w == MASK or w == o for w, o in zip(out, words))  # masking never replaces by another word


def test_pos_replacement_keeps_the_tag_and_follows_the_training_distribution():
    aug = make(p_mask=0.0, p_pos=1.0, p_ng=0.0)
    rng = np.random.default_rng(1)
    seen = []
    for _ in range(2000):
        out = aug.synthesize(["the", "good", "film"], ["DT", "JJ", "NN"], rng)
        assert [FixedTagger.TAGS[w] for w in out] == ["DT", "JJ", "NN"]
        seen.append(out[1])
    # JJ counts in TRAIN: good 2, bad 2, great 2, awful 1 -> awful drawn ~1/7 of the time
    assert abs(seen.count("awful") / len(seen) - 1 / 7) < 0.03
    assert set(seen) == {"good", "bad", "great", "awful"}


def test_mask_and_pos_are_exclusive_with_one_draw_per_word():
    aug = make(p_mask=0.5, p_pos=0.5, p_ng=0.0)
    words = ["film"] * 4000
    out = aug.synthesize(words, ["NN"] * len(words), np.random.default_rng(2))
    masked = np.mean([w == MASK for w in out])
    assert abs(masked - 0.5) < 0.03
    assert all(w == MASK or FixedTagger.TAGS[w] == "NN" for w in out)  # every other word was POS-replaced
    assert {w for w in out if w != MASK} >= {"movie", "plot"}


def test_ngram_sampling_keeps_a_contiguous_window_of_1_to_ngram_max_words():
    aug = make(p_mask=0.0, p_pos=0.0, p_ng=1.0, ngram_max=3)
    words = "one two three four five six seven".split()
    lengths = set()
    rng = np.random.default_rng(3)
    for _ in range(500):
        out = aug.synthesize(words, ["NN"] * len(words), rng)
        assert 1 <= len(out) <= 3
        start = words.index(out[0])
        assert words[start:start + len(out)] == out
        lengths.add(len(out))
    assert lengths == {1, 2, 3}
    assert aug.synthesize(["short"], ["NN"], rng) == ["short"]  # n is capped at the sentence length


def test_n_iter_copies_are_unique_and_never_the_original():
    aug = make(p_mask=0.3, p_pos=0.3, p_ng=0.25, n_iter=20)
    out = aug.augment(["the good film is great", "a bad movie"], seed=0)
    for i, original in enumerate(["the good film is great", "a bad movie"]):
        copies = [t for j, t in out if j == i]
        assert 1 <= len(copies) <= 20 and len(set(copies)) == len(copies) and original not in copies


def test_n_iter_gives_at_most_that_many_copies():
    aug = make(p_mask=0.5, p_pos=0.0, p_ng=0.0, n_iter=3)
    out = aug.augment(["one two three four five six seven eight"], seed=0)
    assert len(out) == 3  # 2^8 possible masks: three distinct copies at these odds


def test_augmentation_is_deterministic_per_seed():
    aug = make(n_iter=5)
    assert aug.augment(TRAIN, seed=7) == aug.augment(TRAIN, seed=7)
    assert aug.augment(TRAIN, seed=7) != aug.augment(TRAIN, seed=8)


def test_bad_probabilities_are_rejected():
    with pytest.raises(RecipeError, match="p_mask \\+ p_pos"):
        AugmentConfig(p_mask=0.7, p_pos=0.5)
    with pytest.raises(RecipeError):
        AugmentConfig(p_ng=1.5)


def test_real_tagger_tags_penn_treebank_offline():
    pytest.importorskip("textblob", reason="textblob (edgec[nlp]) ships the offline POS tagger")
    from edgec.text.augment import PosTagger

    tags = PosTagger().tag(["the", "film", "is", "good"])
    assert tags == ["DT", "NN", "VBZ", "JJ"]
    aug = Augmenter.fit(TRAIN, AugmentConfig(p_mask=0.0, p_pos=1.0, p_ng=0.0))
    out = aug.augment(["the film is good"], seed=0)
    assert out and all(len(t.split()) == 4 for _, t in out)
